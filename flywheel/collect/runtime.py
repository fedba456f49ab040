"""Per-worker state: envs, one policy copy and simulated operators, reused across episodes.

With `envs_per_worker > 1` a worker steps several episodes in lockstep and re-plans every policy that needs a new
chunk in one batched forward pass: per episode, the default policy's chunk costs 5 ms alone on one CPU core (fp32),
1.8 ms in a batch of 8 and 1.4 ms in a batch of 32 (fp32), 0.7 ms in a batch of 32 in bf16 on AMX, so the policy's
share of a collection step shrinks with the batch.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from flywheel.collect.outcome import EpisodeOutcome
from flywheel.collect.spec import CollectSpec


class WorkerRuntime:
    """Builds the env, policy and simulated operator once per process (or Ray actor) and runs seeds."""

    def __init__(self, spec: CollectSpec) -> None:
        from sim import make_env

        self.spec = spec
        self.env = make_env(
            spec.task,
            obs_mode=spec.obs_mode,
            cameras=spec.cameras,
            image_size=spec.image_size,
            max_steps=spec.max_steps,
        )
        policy = self._load_policy(spec)
        if policy is not None:  # refuse before the first episode when the env does not render what it reads
            rendered = spec.cameras if spec.obs_mode == "pixels" else ()
            policy.loaded.input_spec.check_env(self.env.layout, rendered, spec.image_size)
        self.policy = None if policy is None else TimedPolicy(policy)
        self.sim_operator = self._make_sim_operator(spec)
        self.attendant = self._make_attendant(spec)
        self.policy_seconds = 0.0  # wall time spent in policy inference, all episodes (the bench's breakdown)
        self._slots: list[_Slot] = []

    @staticmethod
    def _load_policy(spec: CollectSpec) -> Any:
        if spec.operator_mode == "expert":
            return None
        import torch

        from flywheel.policy.runner import PolicyRunner

        if spec.policy_device != "cpu":
            index, seen = int(spec.policy_device.partition(":")[2] or 0), torch.cuda.device_count()
            if index >= seen:
                raise RuntimeError(f"policy_device {spec.policy_device!r}: this worker's PyTorch sees {seen} GPU(s)")
        # Several workers share the cores: more intra-op threads per worker only oversubscribe them.
        torch.set_num_threads(spec.policy_threads)
        return PolicyRunner.load(
            spec.policy_checkpoint,  # type: ignore[arg-type]
            expected_sha256=spec.policy_sha256,
            **spec.runner_settings(),
        )

    @staticmethod
    def _make_sim_operator(spec: CollectSpec) -> Any:
        """The simulated operator; none for policy-only runs, and for demos (the expert drives throughout)."""
        if spec.operator_mode not in ("simulated", "console"):
            return None
        from sim.operator import SimOperatorConfig, SimulatedOperator

        return SimulatedOperator(SimOperatorConfig(**spec.sim_operator))

    @staticmethod
    def _make_attendant(spec: CollectSpec) -> Any:
        """Console mode: asks a person at the simulated operator's first trigger (flywheel/collect/attended.py)."""
        if spec.attended is None:
            return None
        from flywheel.collect.attended import Attendant

        return Attendant(spec, spec.attended)

    def run(self, seed: int) -> EpisodeOutcome:
        if self.policy is not None:
            self.policy.latencies_ms.clear()
        runner = self._runner(self.env, seed, self.policy, self.sim_operator)
        if self.policy is not None:
            # The sampling noise follows the episode seed, not the worker's history: an eval seed gives the same
            # episode whichever worker runs it, so paired comparisons across policies see the same noise.
            self.policy.reset(seed=seed)
        if self.attendant is not None:
            stored = self.attendant.attend(runner, seed)
            if stored is not None:  # a console operator finished and stored it: report that one
                return EpisodeOutcome(seed, None, stored.success, stored_episode_id=stored.episode_id)
        result = runner.run()
        latencies = self.policy.latencies_ms if self.policy is not None else []
        self.policy_seconds += sum(latencies) / 1000.0
        return self._outcome(seed, result, latencies)

    def _runner(self, env: Any, seed: int, policy: Any, sim_operator: Any) -> Any:
        """An episode of `seed`; the expert's segments (demos, simulated takeovers) are recorded under the spec's
        operator name."""
        from sim.rollout import EpisodeRunner

        return EpisodeRunner(env, seed, policy, sim_operator, self.spec.max_steps, operator=self.spec.operator_name)

    def _outcome(self, seed: int, result: Any, latencies_ms: Sequence[float]) -> EpisodeOutcome:
        return EpisodeOutcome(
            seed=seed,
            frames=result.frames,
            success=bool(result.success),
            error=result.error,
            segments=tuple(result.segments),
            act_latency_ms=tuple(latencies_ms),
            joint_limit_violations=0
            if result.frames is None
            else count_joint_limit_violations(result.frames.action, self.env.action_space),
        )

    @property
    def vectorised(self) -> bool:
        """Lockstep episodes with batched re-planning: a policy acts, nobody is attended, and the spec asks for it."""
        return self.spec.envs_per_worker > 1 and self.policy is not None and self.attendant is None

    def run_many(self, seeds: Sequence[int]) -> Iterator[EpisodeOutcome]:
        """Outcomes of `seeds` in completion order: one by one, or `envs_per_worker` at a time in lockstep."""
        if not self.vectorised or len(seeds) < 2:
            for seed in seeds:
                yield self.run(seed)
            return
        yield from self._run_lockstep(deque(seeds))

    def prepare_lanes(self) -> None:
        """Build every lockstep lane now (its env and operator) instead of on first use."""
        if self.vectorised:
            self._lanes(self.spec.envs_per_worker)

    def _lanes(self, width: int) -> list[_Slot]:
        """The first `width` lanes, built on first use and reused by later jobs (lane 0 uses `self.env`)."""
        from flywheel.policy.runner import PolicyRunner

        assert self.policy is not None
        while len(self._slots) < width:
            env = self.env if not self._slots else self.env.sibling()  # one renderer for every lane
            loaded = self.policy.policy.loaded
            runner = PolicyRunner(loaded, **self.spec.runner_settings())
            self._slots.append(_Slot(env, runner, self._make_sim_operator(self.spec)))
        return self._slots[:width]

    def _run_lockstep(self, pending: deque[int]) -> Iterator[EpisodeOutcome]:
        from flywheel.policy.runner import plan_chunks

        free = self._lanes(min(self.spec.envs_per_worker, len(pending)))
        active: list[_Active] = []
        while pending or active:
            # Every running lane stopped at its next re-plan (below), so free lanes start their episodes now and
            # every re-plan is one full batch rather than lanes drifting out of phase into small ones.
            while pending and free:
                slot = free.pop()
                seed = pending.popleft()
                runner = self._runner(slot.env, seed, slot.policy, slot.sim_operator)
                slot.policy.reset(seed=seed)  # the noise follows the episode seed, as in `run`
                active.append(_Active(seed, slot, runner))
            replan = [a for a in active if a.slot.policy.needs_chunk]  # a fresh runner needs its first chunk
            start = time.perf_counter()
            plan_chunks([a.slot.policy for a in replan], [a.runner.obs for a in replan])
            waited_ms = (time.perf_counter() - start) * 1000.0
            self.policy_seconds += waited_ms / 1000.0
            for a in replan:
                a.latencies_ms.append(waited_ms)
            # Lane by lane, each up to its next re-plan: one episode's simulation state stays in the cache for
            # `execute_steps` steps instead of all lanes' state cycling through it every step.
            for a in list(active):
                a.runner.step()
                while not a.runner.done and not a.slot.policy.needs_chunk:
                    a.runner.step()
                if a.runner.done:
                    active.remove(a)
                    free.append(a.slot)
                    yield self._outcome(a.seed, a.runner.result(), a.latencies_ms)

    def close(self) -> None:
        for slot in self._slots:
            if slot.env is not self.env:
                slot.env.close()
        self.env.close()
        if self.attendant is not None:
            self.attendant.close()


@dataclass
class _Slot:
    """One lane of a lockstep worker: its env, its policy runner (own chunk and noise) and its simulated operator."""

    env: Any
    policy: Any
    sim_operator: Any


@dataclass
class _Active:
    """An episode running in a lane; `latencies_ms` are the batched re-plans it waited for."""

    seed: int
    slot: _Slot
    runner: Any
    latencies_ms: list[float] = field(default_factory=list)


class TimedPolicy:
    """Wraps a policy runner and records the wall time of every `act` call (for the latency gate)."""

    def __init__(self, policy: Any) -> None:
        self.policy = policy
        self.latencies_ms: list[float] = []

    def reset(self, *args: Any, **kwargs: Any) -> None:
        self.policy.reset(*args, **kwargs)

    def act(self, obs: dict[str, Any]) -> np.ndarray:
        start = time.perf_counter()
        action = self.policy.act(obs)
        self.latencies_ms.append((time.perf_counter() - start) * 1000)
        return action


def count_joint_limit_violations(actions: np.ndarray, space: Any, tolerance: float = 1e-3) -> int:
    """Frames whose executed action leaves the actuators' range on any joint."""
    low = np.asarray(space.low) - tolerance
    high = np.asarray(space.high) + tolerance
    return int(np.any((actions < low) | (actions > high), axis=1).sum())
