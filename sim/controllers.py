"""One controller interface for everything that can drive the arms, and its non-human implementations."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from flywheel.vocab import ControllerKind
from sim.constants import ACTION_DIM
from sim.env import AlohaSimEnv
from sim.experts import ClosedLoopExpert, make_expert


@runtime_checkable
class Controller(Protocol):
    """Produces a 14-D joint-position action from the observation (and the env, for privileged controllers)."""

    kind: ControllerKind

    def reset(self, env: AlohaSimEnv) -> None: ...

    def act(self, obs: dict[str, Any], env: AlohaSimEnv) -> np.ndarray: ...


@runtime_checkable
class PolicyLike(Protocol):
    """What the learning team's policy runner provides."""

    def reset(self) -> None: ...

    def act(self, obs: dict[str, Any]) -> np.ndarray: ...


class PolicyController:
    """Adapts a `PolicyLike` (observation only, no env access) to the controller interface."""

    kind = ControllerKind.POLICY

    def __init__(self, policy: PolicyLike) -> None:
        self.policy = policy

    def reset(self, env: AlohaSimEnv) -> None:
        self.policy.reset()

    def act(self, obs: dict[str, Any], env: AlohaSimEnv) -> np.ndarray:
        return self.policy.act(obs)


class ExpertController:
    """The task's closed-loop expert. `reset(env)` may be called mid-episode: it takes over from there."""

    kind = ControllerKind.EXPERT

    def __init__(self, task: str, expert: ClosedLoopExpert | None = None) -> None:
        self.expert = expert or make_expert(task)

    def reset(self, env: AlohaSimEnv) -> None:
        self.expert.reset(env)

    def act(self, obs: dict[str, Any], env: AlohaSimEnv) -> np.ndarray:
        return self.expert.act(obs, env)

    def propose(self, obs: dict[str, Any], env: AlohaSimEnv) -> np.ndarray:
        """What the expert would do now while another controller drives (setpoints re-anchored first)."""
        self.expert.resync(env)
        return self.expert.act(obs, env)


class ScriptedReplay:
    """Replays a fixed (T, 14) action sequence; holds the last action once it runs out."""

    def __init__(self, actions: Sequence[np.ndarray] | np.ndarray, kind: ControllerKind = ControllerKind.EXPERT):
        arr = np.asarray(actions, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[1] != ACTION_DIM or arr.shape[0] == 0:
            raise ValueError(f"replay actions must have shape (T>0, {ACTION_DIM}), got {arr.shape}")
        if not np.isfinite(arr).all():
            raise ValueError("replay actions contain NaN/inf")
        self.actions = arr
        self.kind = kind
        self._t = 0

    def reset(self, env: AlohaSimEnv) -> None:
        self._t = 0

    def act(self, obs: dict[str, Any], env: AlohaSimEnv) -> np.ndarray:
        action = self.actions[min(self._t, len(self.actions) - 1)]
        self._t += 1
        return action.copy()


class RandomWalkPolicy:
    """A deliberately bad `PolicyLike`: a smoothed random walk of joint targets around the home pose.

    Used for tests, benchmarks and takeover experiments (the arms wander, sometimes hitting the objects).
    """

    def __init__(self, seed: int = 0, scale: float = 0.04, pull: float = 0.02) -> None:
        from sim.constants import home_action

        self._home = home_action()
        self._seed = seed
        self.scale = scale
        self.pull = pull
        self._rng = np.random.default_rng(seed)
        self._action = self._home.copy()

    def reset(self) -> None:
        self._action = self._home.copy()

    def act(self, obs: dict[str, Any]) -> np.ndarray:
        step = self._rng.normal(0.0, self.scale, ACTION_DIM)
        self._action = self._action + step + self.pull * (self._home - self._action)
        self._action[[6, 13]] = np.clip(self._action[[6, 13]], 0.0, 1.0)
        return self._action.copy()
