"""Simulation throughput (and optionally expert success): writes bench/results/sim.json, prints one line.

Per core: one process, single-threaded MuJoCo, Mesa's llvmpipe limited to one thread (LP_NUM_THREADS=1).
Collection with a policy is measured in `state` and `pixels` mode, against the bare env stepping the home pose
and against the bare env replaying the collected episodes' actions (the same motions, without policy or recording).
    python -m bench.sim                 # throughput only (~1 min)
    python -m bench.sim --experts 100   # plus expert success over 100 seeds per task and takeover rate
    python -m bench.sim --policy DIR    # plus `state` collection with a trained transfer_cube checkpoint
"""

from __future__ import annotations

import os
from pathlib import Path

from flywheel.headless import HEADLESS_ENV

os.environ.update({name: os.environ.get(name, value) for name, value in HEADLESS_ENV.items()})  # before MuJoCo loads
os.environ.setdefault("LP_NUM_THREADS", "1")

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import mujoco
import numpy as np

from flywheel.vocab import DEFAULT_IMAGE_SIZE
from sim import AlohaSimEnv, EpisodeRunner, RandomWalkPolicy, make_env, run_episode
from sim.constants import ASSETS_DIR, N_SUBSTEPS, START_ARM_QPOS, home_action
from sim.tasks import TASKS

if TYPE_CHECKING:
    from flywheel.collect.spec import CollectSpec

RESULTS = Path(__file__).parent / "results" / "sim.json"


def _rate(steps: int, fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    return steps / (time.perf_counter() - start)


def gym_aloha_pixels(steps: int) -> float:
    import gym_aloha  # noqa: F401  (registers the envs)
    import gymnasium as gym

    env = gym.make("gym_aloha/AlohaTransferCube-v0", obs_type="pixels")
    env.reset(seed=0)
    action = home_action().astype(np.float32)
    env.step(action)
    rate = _rate(steps, lambda: env.step(action))
    env.close()
    return rate


def our_env(obs_mode: str, steps: int) -> float:
    env = make_env("transfer_cube", obs_mode=obs_mode, image_size=DEFAULT_IMAGE_SIZE, max_steps=10**9)  # type: ignore[arg-type]
    env.reset(seed=0)
    action = home_action()
    env.step(action)
    rate = _rate(steps, lambda: env.step(action))
    env.close()
    return rate


def physics_limit(steps: int) -> float:
    model = mujoco.MjModel.from_xml_path(str(ASSETS_DIR / "bimanual_viperx_transfer_cube.xml"))
    data = mujoco.MjData(model)
    data.qpos[:16] = START_ARM_QPOS
    data.qpos[16:19] = (0.1, 0.5, 0.05)
    data.qpos[19] = 1.0
    ctrl = START_ARM_QPOS.copy()
    mujoco.mj_forward(model, data)

    def step() -> None:
        data.ctrl[:] = ctrl
        mujoco.mj_step(model, data, N_SUBSTEPS)

    step()
    return _rate(steps, step)


def _bench_policy(obs_mode: str, workdir: Path) -> tuple[str, str]:
    """A default-config policy (plus a small CNN for `pixels`) trained for a few steps on three expert demos: its
    speed, not its skill, is measured. Returns (checkpoint dir, sha256)."""
    from flywheel.presets import train_config
    from flywheel.train import run_training
    from flywheel.train.data import EpisodeInfo, TrainingEpisode

    env = make_env("transfer_cube", obs_mode=obs_mode, image_size=DEFAULT_IMAGE_SIZE)  # type: ignore[arg-type]
    demos = [run_episode(env, seed) for seed in range(3)]
    env.close()
    data = [
        TrainingEpisode(EpisodeInfo(f"demo-{i}", "transfer_cube", "demo", True), d.frames) for i, d in enumerate(demos)
    ]
    overrides: dict = {"model": {"encoder": {"vision": "cnn"}}} if obs_mode == "pixels" else {}
    config = train_config("quickstart", {"method": "bc", "steps": 5, "warmup_steps": 1, "wandb": False, **overrides})
    trained = run_training(config, data, workdir / f"policy-{obs_mode}", progress=False)
    return str(trained.checkpoint_dir), trained.sha256


def _lockstep(spec: CollectSpec, seeds: list[int], replay: bool) -> dict[str, float | int | str]:
    """Env steps/s of a worker collecting `seeds` (lanes built and warmed up before the clock starts), the policy's
    share of that time, success, the sampling settings its lanes used and, with `replay`, the bare env's rate
    replaying the same episodes."""
    import torch

    from flywheel.collect.runtime import WorkerRuntime
    from flywheel.policy.packed_bf16 import resolve_precision

    torch.set_num_threads(1)

    runtime = WorkerRuntime(spec)
    runtime.prepare_lanes()  # every lane's env is built before the clock starts
    list(runtime.run_many([0] * min(runtime.spec.envs_per_worker, 2)))  # warm-up
    runtime.policy_seconds = 0.0
    start = time.perf_counter()
    outcomes = list(runtime.run_many(seeds))
    wall = time.perf_counter() - start
    collected = [(o.seed, o.frames.action) for o in outcomes if o.frames is not None]
    runner = runtime.policy.policy  # type: ignore[union-attr]
    figures: dict[str, float | int | str] = {
        "steps_per_s": sum(len(actions) for _, actions in collected) / wall,
        "episodes": len(seeds),
        "policy_share": runtime.policy_seconds / wall,
        "success": sum(bool(o.success) for o in outcomes) / len(seeds),
        "precision": resolve_precision(runner.precision, runner.device, rows=spec.envs_per_worker),
        "execute_steps": runner.execute_steps,
        "num_steps": runner.num_steps,
    }
    if replay:
        figures["replay_steps_per_s"] = _replay_rate(runtime.env, collected)
    runtime.close()
    return figures


def collect_with_policy(
    obs_mode: str, episodes: int, envs_per_worker: int, workdir: Path
) -> dict[str, float | int | str]:
    """Env steps/s of the real collection worker with a default-config policy acting: one episode at a time, and
    `envs_per_worker` episodes in lockstep with batched re-planning (what `flywheel collect` does), plus the share
    of the lockstep run's wall time spent in policy inference.
    """
    from flywheel.collect.spec import CollectSpec

    checkpoint, sha256 = _bench_policy(obs_mode, workdir)
    prefix = "collect_with_policy" if obs_mode == "state" else "collect_pixels_with_policy"
    out: dict[str, float | int | str] = {}
    runs = [("one_by_one", 1, episodes, None), ("lockstep", envs_per_worker, 2 * envs_per_worker, None)]
    if obs_mode == "state":  # what the default precision buys, in the same run
        runs.append(("lockstep_fp32", envs_per_worker, 2 * envs_per_worker, "fp32"))
    for key, envs, n, precision in runs:
        spec = CollectSpec(
            task="transfer_cube",
            obs_mode=obs_mode,  # type: ignore[arg-type]
            image_size=DEFAULT_IMAGE_SIZE,
            operator_mode="none",
            policy_checkpoint=checkpoint,
            policy_sha256=sha256,
            source_prefix="bench",
            envs_per_worker=envs,
            precision=precision,
        )
        figures = _lockstep(spec, list(range(1, n + 1)), replay=key == "lockstep")
        for name in ("steps_per_s", "episodes", "policy_share"):
            out[f"{prefix}_{key}_{name}"] = figures[name]
        if key == "lockstep":
            out[f"{prefix}_replay_steps_per_s"] = figures["replay_steps_per_s"]
            out[f"{prefix}_lockstep_precision"] = figures["precision"]
    out[f"{prefix}_steps_per_s"] = out[f"{prefix}_lockstep_steps_per_s"]
    return out


def collect_with_trained_policy(checkpoint: Path, envs_per_worker: int) -> dict[str, float | str | int]:
    """The same lockstep measurement in `state` mode with a trained checkpoint (`--policy`) on held-out seeds: a
    competent policy's motions cost the physics less than the bench policy's flailing, so the policy's share is
    larger. Keys `collect_trained_policy_*`."""
    from flywheel.collect.seeds import eval_seeds
    from flywheel.collect.spec import CollectSpec
    from flywheel.policy.checkpoint import checkpoint_sha256

    spec = CollectSpec(
        task="transfer_cube",
        operator_mode="none",
        policy_checkpoint=str(checkpoint),
        policy_sha256=checkpoint_sha256(checkpoint),
        source_prefix="bench",
        envs_per_worker=envs_per_worker,
    )
    figures = _lockstep(spec, eval_seeds(2 * envs_per_worker), replay=True)
    out = {f"collect_trained_policy_{k}": v for k, v in figures.items()}
    out["collect_trained_policy_fraction_of_replay"] = float(figures["steps_per_s"]) / float(
        figures["replay_steps_per_s"]
    )
    out["collect_trained_policy_checkpoint"] = checkpoint.name if checkpoint.name != "final" else checkpoint.parent.name
    return out


def _replay_rate(env: AlohaSimEnv, episodes: list[tuple[int, np.ndarray]]) -> float:
    """Env steps/s of the bare env replaying the collected episodes' actions from their seeds: the env's own cost
    for the same motions (with pixels, arms raised towards the camera cost the renderer more than the home pose)."""
    steps = sum(len(actions) for _, actions in episodes)
    start = time.perf_counter()
    for seed, actions in episodes:
        env.reset(seed=seed)
        for action in actions:
            env.step(action)
    return steps / (time.perf_counter() - start)


def expert_rates(n: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for task in TASKS:
        env = make_env(task)
        out[f"expert_success_{task}"] = sum(run_episode(env, s).success for s in range(n)) / n
    env = make_env("transfer_cube")
    ok = 0
    for seed in range(n):
        k = int(np.random.default_rng(1000 + seed).integers(1, 200))
        runner = EpisodeRunner(env, seed, policy=RandomWalkPolicy(seed=seed, scale=0.1))
        for _ in range(k):
            runner.step()
        runner.take_over(runner.expert, "bench")
        ok += runner.run().success
    out["expert_takeover_success_transfer_cube"] = ok / n
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--gym-aloha-steps", type=int, default=20)
    parser.add_argument("--pixels-steps", type=int, default=400)
    parser.add_argument("--state-steps", type=int, default=3000)
    parser.add_argument("--policy-episodes", type=int, default=5, help="episodes for one-by-one collection")
    parser.add_argument("--envs-per-worker", type=int, default=32, help="lockstep lanes (twice as many episodes)")
    parser.add_argument("--experts", type=int, default=0, help="seeds per task for expert success (0: skip)")
    parser.add_argument(
        "--policy",
        type=Path,
        default=None,
        help="a trained transfer_cube `state` checkpoint (e.g. bench/learn.py's recap/final or a champion's): "
        "also measure `state` collection with it on held-out seeds",
    )
    args = parser.parse_args()

    result: dict[str, float | int | str] = {
        "gym_aloha_pixels_steps_per_s": gym_aloha_pixels(args.gym_aloha_steps),
        "pixels_steps_per_s": our_env("pixels", args.pixels_steps),
        "state_steps_per_s": our_env("state", args.state_steps),
        "physics_limit_env_steps_per_s": physics_limit(args.state_steps),
    }
    with tempfile.TemporaryDirectory(prefix="flywheel-bench-sim-") as tmp:
        for mode in ("state", "pixels"):
            result.update(collect_with_policy(mode, args.policy_episodes, args.envs_per_worker, Path(tmp)))
    if args.policy is not None:
        result.update(collect_with_trained_policy(args.policy, args.envs_per_worker))
    result["collect_envs_per_worker"] = args.envs_per_worker
    with_policy = result["collect_with_policy_steps_per_s"]
    fp32_lanes = result["collect_with_policy_lockstep_fp32_steps_per_s"]
    result["collect_with_policy_lockstep_speedup_vs_fp32"] = with_policy / fp32_lanes
    result["collect_with_policy_fraction_of_state"] = with_policy / result["state_steps_per_s"]
    result["collect_one_by_one_fraction_of_state"] = (
        result["collect_with_policy_one_by_one_steps_per_s"] / result["state_steps_per_s"]
    )
    result["collect_pixels_with_policy_fraction_of_pixels"] = (
        result["collect_pixels_with_policy_steps_per_s"] / result["pixels_steps_per_s"]
    )
    for prefix in ("collect_with_policy", "collect_pixels_with_policy"):
        result[f"{prefix}_fraction_of_replay"] = (
            result[f"{prefix}_steps_per_s"] / result[f"{prefix}_replay_steps_per_s"]
        )
    result["pixels_speedup_vs_gym_aloha"] = result["pixels_steps_per_s"] / result["gym_aloha_pixels_steps_per_s"]
    result["state_fraction_of_physics_limit"] = result["state_steps_per_s"] / result["physics_limit_env_steps_per_s"]
    result["notes"] = (
        "per core: 1 process, LP_NUM_THREADS=1; pixels = one 96x128 'top' camera, no shadows/MSAA; collection = "
        "transfer_cube, a default-config policy (a small CNN added for pixels), no operator, lanes built before "
        "timing, default precision (auto: bf16 re-plans on a CPU with native bf16 units; lockstep_fp32 forces fp32)"
    )
    if args.experts:
        result.update(expert_rates(args.experts))
        result["expert_seeds"] = args.experts
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    line = (
        f"sim: gym-aloha pixels {result['gym_aloha_pixels_steps_per_s']:.1f}/s | ours pixels "
        f"{result['pixels_steps_per_s']:.0f}/s ({result['pixels_speedup_vs_gym_aloha']:.0f}x) | state "
        f"{result['state_steps_per_s']:.0f}/s ({result['state_fraction_of_physics_limit']:.0%} of physics limit "
        f"{result['physics_limit_env_steps_per_s']:.0f}/s) | collect with policy "
        f"{with_policy:.0f}/s ({result['collect_with_policy_fraction_of_state']:.0%} of state, "
        f"{result['collect_with_policy_fraction_of_replay']:.0%} of replaying its episodes; one by one "
        f"{result['collect_one_by_one_fraction_of_state']:.0%}; policy "
        f"{result['collect_with_policy_lockstep_policy_share']:.0%} of the time; "
        f"{result['collect_with_policy_lockstep_precision']} lanes {with_policy / fp32_lanes:.2f}x fp32 lanes) "
        f"| pixels collect with policy "
        f"{result['collect_pixels_with_policy_steps_per_s']:.0f}/s "
        f"({result['collect_pixels_with_policy_fraction_of_pixels']:.0%} of pixels, "
        f"{result['collect_pixels_with_policy_fraction_of_replay']:.0%} of replaying its episodes)"
    )
    if args.policy is not None:
        line += (
            f" | trained policy ({result['collect_trained_policy_checkpoint']}, success "
            f"{result['collect_trained_policy_success']:.0%}) collects "
            f"{result['collect_trained_policy_steps_per_s']:.0f}/s "
            f"({result['collect_trained_policy_fraction_of_replay']:.0%} of replaying its episodes; policy "
            f"{result['collect_trained_policy_policy_share']:.0%} of the time)"
        )
    if args.experts:
        line += (
            f" | expert success transfer_cube {result['expert_success_transfer_cube']:.0%}, insertion "
            f"{result['expert_success_insertion']:.0%}, takeover {result['expert_takeover_success_transfer_cube']:.0%}"
        )
    print(line)


if __name__ == "__main__":
    main()
