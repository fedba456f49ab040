"""Lockstep collection: several episodes per worker, their policies re-planned in one batched forward pass."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

from flywheel.collect import CollectSpec, ProcessPool
from flywheel.collect.pool import CollectionError
from flywheel.collect.runtime import WorkerRuntime
from flywheel.policy.runner import PolicyRunner, plan_chunks
from tests.live_support import random_observations


def _spec(
    policy: tuple[Path, str],
    envs: int,
    operator: str = "simulated",
    max_steps: int = 120,
    obs_mode: str = "state",
    precision: str | None = None,
    cfg_beta: float | None = None,
    execute_steps: int | None = None,
) -> CollectSpec:
    checkpoint, sha256 = policy
    return CollectSpec(
        task="transfer_cube",
        obs_mode=obs_mode,  # type: ignore[arg-type]
        operator_mode=operator,  # type: ignore[arg-type]
        sim_operator={"no_progress_steps": 25, "handback_after_steps": 20},
        policy_checkpoint=str(checkpoint),
        policy_sha256=sha256,
        max_steps=max_steps,
        source_prefix="lockstep",
        envs_per_worker=envs,
        precision=precision,  # type: ignore[arg-type]
        cfg_beta=cfg_beta,
        execute_steps=execute_steps,
    )


def test_batched_planning_matches_one_by_one(tiny_policy: tuple[Path, str]) -> None:
    loaded = PolicyRunner.load(tiny_policy[0]).loaded
    observations = random_observations(loaded.spec.state_dim, 5)
    batched = [PolicyRunner(loaded, seed=s, precision="fp32") for s in range(5)]
    single = [PolicyRunner(loaded, seed=s, precision="fp32") for s in range(5)]
    assert all(r.needs_chunk for r in batched)
    plan_chunks(batched, observations)
    assert not any(r.needs_chunk for r in batched)
    for runner, alone, obs in zip(batched, single, observations, strict=True):
        np.testing.assert_allclose(runner.act(obs), alone.act(obs), atol=1e-5)
    with pytest.raises(ValueError, match="2 runners but 1 observations"):
        plan_chunks(batched[:2], observations[:1])


def test_lockstep_worker_runs_every_seed_like_the_one_by_one_worker(tiny_policy: tuple[Path, str]) -> None:
    seeds = [11, 12, 13, 14, 15]
    # fp32 throughout: with `auto`, a batched re-plan may round in bf16 where one episode alone rounds in fp32.
    lockstep = WorkerRuntime(_spec(tiny_policy, envs=3, precision="fp32"))
    one_by_one = WorkerRuntime(_spec(tiny_policy, envs=1, precision="fp32"))
    try:
        assert lockstep.vectorised and not one_by_one.vectorised
        batched = {o.seed: o for o in lockstep.run_many(seeds)}
        alone = {o.seed: one_by_one.run(s) for s, o in batched.items()}
    finally:
        lockstep.close()
        one_by_one.close()
    assert sorted(batched) == seeds  # every seed once, five episodes through three lanes
    for seed in seeds:
        a, b = batched[seed], alone[seed]
        assert a.frames is not None and b.frames is not None and a.error is None
        assert a.act_latency_ms  # the batched re-plans this episode waited for
        # Same env seed, same noise stream: the episodes start identically and, rounding aside, stay together.
        np.testing.assert_array_equal(a.frames.state[0], b.frames.state[0])
        steps = min(len(a.frames), len(b.frames), 20)
        np.testing.assert_allclose(a.frames.action[:steps], b.frames.action[:steps], atol=1e-4)
        assert a.frames.tag.value in ("autonomous", "intervention")


def test_pixel_lanes_render_through_one_renderer(tmp_path: Path) -> None:
    from tests.live_support import train_tiny_policy

    pixel_policy = train_tiny_policy(tmp_path / "pixels", pixels=True)
    runtime = WorkerRuntime(_spec(pixel_policy, envs=3, operator="none", max_steps=12, obs_mode="pixels"))
    try:
        runtime.prepare_lanes()
        outcomes = {o.seed: o for o in runtime.run_many([1, 2, 3, 4])}
        assert len({id(slot.env._renderer) for slot in runtime._slots}) == 1
        assert runtime.policy_seconds > 0
    finally:
        runtime.close()
    assert sorted(outcomes) == [1, 2, 3, 4]
    for outcome in outcomes.values():
        assert outcome.error is None and outcome.frames is not None
        images = outcome.frames.images["top"]
        assert images.shape == (12, 96, 128, 3) and images.std() > 0
    # Different seeds place the cube differently: each lane rendered its own scene.
    assert not np.array_equal(outcomes[1].frames.images["top"][0], outcomes[2].frames.images["top"][0])


def test_spec_guidance_overrides_the_checkpoints_in_every_lane(tmp_path: Path) -> None:
    from tests.live_support import train_tiny_policy

    recap_policy = train_tiny_policy(tmp_path / "recap", method="recap")
    actions: dict[float | None, list[np.ndarray]] = {}
    for beta in (None, 1.0, 3.0):
        runtime = WorkerRuntime(
            _spec(recap_policy, envs=2, operator="none", max_steps=12, precision="fp32", cfg_beta=beta)
        )
        try:
            outcomes = sorted(runtime.run_many([21, 22, 23]), key=lambda o: o.seed)
            assert all(slot.policy.cfg_beta == (3.0 if beta == 3.0 else None) for slot in runtime._slots)
        finally:
            runtime.close()
        actions[beta] = [o.frames.action for o in outcomes if o.frames is not None]
        assert len(actions[beta]) == 3
    # β = 1 (the checkpoint's own) samples as no override does; β = 3 extrapolates away from it in every episode.
    for plain, same, guided in zip(actions[None], actions[1.0], actions[3.0], strict=True):
        np.testing.assert_allclose(plain, same, atol=1e-6)
        assert not np.allclose(plain[:8], guided[:8], atol=1e-4)


def test_the_spec_bounds_guidance_as_the_inference_config_does() -> None:
    from flywheel.policy.config import InferenceConfig

    for field in ("cfg_beta", "execute_steps"):
        spec_bounds = CollectSpec.model_fields[field].metadata
        assert spec_bounds and spec_bounds == InferenceConfig.model_fields[field].metadata


def test_spec_horizon_overrides_the_checkpoints_in_every_lane(tiny_policy: tuple[Path, str]) -> None:
    own = PolicyRunner.load(tiny_policy[0]).execute_steps
    assert own > 2
    actions: dict[int | None, list[np.ndarray]] = {}
    for horizon in (None, own, 2):
        runtime = WorkerRuntime(
            _spec(tiny_policy, envs=2, operator="none", max_steps=12, precision="fp32", execute_steps=horizon)
        )
        try:
            outcomes = sorted(runtime.run_many([31, 32, 33]), key=lambda o: o.seed)
            assert all(slot.policy.execute_steps == (horizon or own) for slot in runtime._slots)
        finally:
            runtime.close()
        actions[horizon] = [o.frames.action for o in outcomes if o.frames is not None]
        assert len(actions[horizon]) == 3
    # The checkpoint's own horizon acts as no override does; re-planning after 2 actions keeps the first chunk's
    # first 2 actions and then acts on a fresh chunk.
    for plain, same, short in zip(actions[None], actions[own], actions[2], strict=True):
        np.testing.assert_allclose(plain, same, atol=1e-6)
        np.testing.assert_allclose(plain[:2], short[:2], atol=1e-6)
        assert not np.allclose(plain[2:own], short[2:own], atol=1e-4)
    with pytest.raises(ValueError, match="execute_steps"):
        _spec(tiny_policy, envs=1, execute_steps=0)


def test_lockstep_job_survives_a_dead_worker(tiny_policy: tuple[Path, str]) -> None:
    pool = ProcessPool(_spec(tiny_policy, envs=3, operator="none", max_steps=60), workers=2)
    seeds = list(range(100, 108))
    outcomes, killed = [], None
    for outcome in pool.run(seeds):
        outcomes.append(outcome)
        if killed is None:
            killed = pool.pids()[0]
            os.kill(killed, signal.SIGKILL)
    assert sorted(o.seed for o in outcomes) == seeds  # every seed exactly once, the dead job's ones re-collected
    assert pool.restarts == 1 and len(pool.discarded) <= 3


def test_a_lane_freed_mid_chunk_joins_the_next_full_re_plan(
    tiny_policy: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import flywheel.policy.runner as runner_module
    import sim.rollout as rollout_module

    short_seed, seeds = 11, [11, 12, 13, 14]
    batch_sizes: list[int] = []
    real_plan, real_runner = runner_module.plan_chunks, rollout_module.EpisodeRunner

    def recording_plan(runners: list, observations: list) -> None:
        batch_sizes.append(len(runners))
        real_plan(runners, observations)

    class ShortFirstEpisode(real_runner):  # type: ignore[misc, valid-type]
        """Ends `short_seed` after 13 steps, mid-chunk, as an early success or failure would."""

        def __init__(self, env, seed, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
            super().__init__(env, seed, *args, **kwargs)
            if seed == short_seed:
                self.max_steps = 13

    monkeypatch.setattr(runner_module, "plan_chunks", recording_plan)
    monkeypatch.setattr(rollout_module, "EpisodeRunner", ShortFirstEpisode)
    runtime = WorkerRuntime(_spec(tiny_policy, envs=3, operator="none", max_steps=40))
    try:
        outcomes = {o.seed: o for o in runtime.run_many(seeds)}
    finally:
        runtime.close()
    assert sorted(outcomes) == seeds
    assert len(outcomes[short_seed].frames) == 13 and len(outcomes[14].frames) == 40  # type: ignore[arg-type]
    # Seed 14 waited for the other two lanes' next re-plan instead of re-planning alone: every batch is full
    # until the two long episodes end, then the last lane re-plans by itself.
    first_single = batch_sizes.index(1)
    assert first_single >= 4 and batch_sizes == [3] * first_single + [1] * (len(batch_sizes) - first_single)


def _on_device(spec: CollectSpec, device: str) -> CollectSpec:
    return CollectSpec(**{**spec.model_dump(), "policy_device": device})


def test_policy_device_is_validated_in_the_spec(tiny_policy: tuple[Path, str]) -> None:
    spec = _spec(tiny_policy, envs=2)
    assert spec.policy_device == "cpu"
    assert _on_device(spec, "cuda:1").policy_device == "cuda:1"
    with pytest.raises(ValueError, match="policy_device"):
        _on_device(spec, "gpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_a_cuda_policy_without_a_gpu_stops_collection_with_a_clear_error(tiny_policy: tuple[Path, str]) -> None:
    spec = _on_device(_spec(tiny_policy, envs=2), "cuda")
    with pytest.raises(CollectionError, match=r"could not start: RuntimeError: policy_device 'cuda'.*sees 0 GPU"):
        list(ProcessPool(spec, workers=1).run([1, 2]))


def test_ray_refuses_a_cuda_policy_on_a_cluster_without_gpus(tiny_policy: tuple[Path, str]) -> None:
    ray = pytest.importorskip("ray")
    from flywheel.collect.ray_pool import RayPool

    spec = _spec(tiny_policy, envs=2)
    with pytest.raises(CollectionError, match="use policy device 'cuda'"):
        RayPool(_on_device(spec, "cuda:1"), workers=1)  # refused before Ray starts
    assert not ray.is_initialized()
    ray.init(num_cpus=1, num_gpus=0, include_dashboard=False, log_to_driver=False)
    try:
        with pytest.raises(CollectionError, match="Ray cluster has no GPUs"):
            RayPool(_on_device(spec, "cuda"), workers=1)
    finally:
        ray.shutdown()


@pytest.mark.parametrize(("workers", "gpus"), [(1, 1), (2, 1), (3, 2), (5, 2), (6, 1), (6, 4), (4, 8)])
def test_ray_actors_gpu_shares_fit_whole_actors_on_each_gpu(workers: int, gpus: int) -> None:
    from flywheel.collect.ray_pool import actor_gpu_share

    share = actor_gpu_share(workers, gpus)
    per_gpu = int(1.0 // share + 1e-9)  # actors that fit on one GPU
    assert 0 < share <= 1.0 and per_gpu * gpus >= workers
