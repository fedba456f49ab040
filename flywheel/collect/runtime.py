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

    @staticmethod
    def _load_policy(spec: CollectSpec) -> Any:
        if spec.operator == "expert":
            return None
        from flywheel.policy.runner import PolicyRunner

        return PolicyRunner.load(spec.policy_checkpoint, expected_sha256=spec.policy_sha256)  # type: ignore[arg-type]

    @staticmethod
    def _make_operator(spec: CollectSpec) -> Any:
        """The simulated operator; none for policy-only runs, and for demos (the expert drives throughout)."""
        if spec.operator != "simulated":
            return None
        from sim.operator import OperatorConfig, SimulatedOperator

        return SimulatedOperator(OperatorConfig(**spec.operator_config))

    def run(self, seed: int) -> EpisodeOutcome:
        from sim.rollout import run_episode

        if self.policy is not None:
            self.policy.latencies_ms.clear()
        result = run_episode(
            self.env, seed=seed, policy=self.policy, operator=self.operator, max_steps=self.spec.max_steps
        )
        triggers = {s.start: s.trigger for s in result.segments if s.trigger}
        operators = {s.start: self.spec.operator_name for s in result.segments if s.controller.value != "policy"}
        return EpisodeOutcome(
            seed=seed,
            frames=result.frames,
            success=bool(result.success),
            error=result.error,
            triggers=triggers,
            segment_operators=operators,
        )

    def close(self) -> None:
        self.env.close()


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
