"""A policy controller that first replays recorded actions, then hands over to the real policy."""

from __future__ import annotations

from typing import Any

import numpy as np

from flywheel.vocab import ControllerKind
from sim.controllers import Controller
from sim.env import AlohaSimEnv


class ReplayThenPolicy:
    """Acts as the policy: returns `actions[t]` for the first len(actions) steps (what the policy did in the
    worker), then asks `policy`. Its kind is `policy`, so the replayed frames are recorded as policy frames."""

    kind = ControllerKind.POLICY

    def __init__(self, actions: np.ndarray, policy: Controller | None) -> None:
        self.actions = np.asarray(actions, dtype=np.float64).reshape(len(actions), -1)
        self.policy = policy
        self._t = 0

    @property
    def replaying(self) -> bool:
        return self._t < len(self.actions)

    def reset(self, env: AlohaSimEnv) -> None:
        self._t = 0
        if self.policy is not None:
            self.policy.reset(env)

    def act(self, obs: dict[str, Any], env: AlohaSimEnv) -> np.ndarray:
        if self._t < len(self.actions):
            action = self.actions[self._t].copy()
            self._t += 1
            return action
        if self.policy is None:
            raise RuntimeError("no policy to continue with after the replay")
        return self.policy.act(obs, env)
