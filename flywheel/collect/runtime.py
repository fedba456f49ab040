"""Per-worker state: one env, one policy copy and one operator, reused across episodes."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from flywheel.collect.outcome import EpisodeOutcome
from flywheel.collect.spec import CollectSpec


class WorkerRuntime:
    """Builds the env, policy and operator once per process (or Ray actor) and runs seeds."""

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
        self.policy = None if policy is None else TimedPolicy(policy)
        self.operator = self._make_operator(spec)
        self.attendant = self._make_attendant(spec)

    @staticmethod
    def _load_policy(spec: CollectSpec) -> Any:
        if spec.operator == "expert":
            return None
        import torch

        from flywheel.policy.runner import PolicyRunner

        # Several workers share the cores: more intra-op threads per worker only oversubscribe them.
        torch.set_num_threads(spec.policy_threads)
        return PolicyRunner.load(spec.policy_checkpoint, expected_sha256=spec.policy_sha256)  # type: ignore[arg-type]

    @staticmethod
    def _make_operator(spec: CollectSpec) -> Any:
        """The simulated operator; none for policy-only runs, and for demos (the expert drives throughout)."""
        if spec.operator not in ("simulated", "console"):
            return None
        from sim.operator import OperatorConfig, SimulatedOperator

        return SimulatedOperator(OperatorConfig(**spec.operator_config))

    @staticmethod
    def _make_attendant(spec: CollectSpec) -> Any:
        """Console mode: asks a person at the simulated operator's first trigger (flywheel/collect/attended.py)."""
        if spec.attended is None:
            return None
        from flywheel.collect.attended import Attendant

        return Attendant(spec, spec.attended)

    def run(self, seed: int) -> EpisodeOutcome:
        from sim.rollout import EpisodeRunner

        if self.policy is not None:
            self.policy.latencies_ms.clear()
        runner = EpisodeRunner(self.env, seed, self.policy, self.operator, self.spec.max_steps)
        if self.policy is not None:
            # The sampling noise follows the episode seed, not the worker's history: an eval seed gives the same
            # episode whichever worker runs it, so paired comparisons across policies see the same noise.
            self.policy.reset(seed=seed)
        if self.attendant is not None:
            stored = self.attendant.attend(runner, seed)
            if stored is not None:  # a console operator finished and stored it: report that one
                return EpisodeOutcome(seed, None, stored.success, stored_episode_id=stored.episode_id)
        result = runner.run()
        triggers = {s.start: s.trigger for s in result.segments if s.trigger}
        operators = {s.start: self.spec.operator_name for s in result.segments if s.controller.value != "policy"}
        return EpisodeOutcome(
            seed=seed,
            frames=result.frames,
            success=bool(result.success),
            error=result.error,
            triggers=triggers,
            segment_operators=operators,
            act_latency_ms=tuple(self.policy.latencies_ms) if self.policy is not None else (),
            joint_limit_violations=0
            if result.frames is None
            else count_joint_limit_violations(result.frames.action, self.env.action_space),
        )

    def close(self) -> None:
        self.env.close()
        if self.attendant is not None:
            self.attendant.close()


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
