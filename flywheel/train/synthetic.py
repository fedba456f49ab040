"""A toy point-reaching task producing real `EpisodeFrames`: smoke tests and trainer benchmarks without a sim.

State: (position xy, goal xy, padding); action: (velocity xy, padding). The expert moves toward the goal;
the "bad" policy moves away from it. Stage reward 0..4 tracks the fraction of the initial distance covered;
success = within 0.1 of the goal at the end.
"""

from __future__ import annotations

import numpy as np

from flywheel.train.data import EpisodeInfo
from flywheel.vocab import CONTROLLER_CODES, ControllerKind, EpisodeFrames, derive_tag

STEP = 0.15


def expert_action(state: np.ndarray) -> np.ndarray:
    delta = state[2:4] - state[0:2]
    norm = float(np.linalg.norm(delta))
    return delta if norm <= STEP else delta / norm * STEP


def toy_episode(
    seed: int,
    controllers: list[str] | str = "expert",
    length: int = 30,
    state_dim: int = 6,
    action_dim: int = 3,
    task: str = "toy_reach",
    images: tuple[str, ...] = (),
    image_hw: tuple[int, int] = (16, 16),
    review_status: str = "accepted",
) -> tuple[EpisodeInfo, EpisodeFrames]:
    """One episode; `controllers` per frame ("policy" frames take the bad action) or one name for all."""
    rng = np.random.default_rng(seed)
    ctrl = [controllers] * length if isinstance(controllers, str) else list(controllers)
    pos, goal = rng.uniform(-1, 1, 2), rng.uniform(-1, 1, 2)
    d0 = max(float(np.linalg.norm(goal - pos)), 1e-3)
    states, actions, rewards = [], [], []
    for t in range(length):
        s = np.zeros(state_dim, np.float32)
        s[:4] = [*pos, *goal]
        a2 = expert_action(s)
        if ctrl[t] == "policy":
            a2 = -a2 if np.linalg.norm(a2) > 1e-6 else rng.normal(0, STEP, 2)
        a = np.zeros(action_dim, np.float32)
        a[:2] = a2
        states.append(s)
        actions.append(a)
        pos = np.clip(pos + a2, -1.5, 1.5)
        dist = float(np.linalg.norm(goal - pos))
        rewards.append(4.0 if dist < 0.1 else float(np.clip(np.floor(4 * (1 - dist / d0)), 0, 3)))
    codes = np.array([CONTROLLER_CODES[ControllerKind(c)] for c in ctrl], np.uint8)
    imgs = {cam: rng.integers(0, 255, (length, *image_hw, 3), dtype=np.uint8) for cam in images}
    frames = EpisodeFrames(
        state=np.stack(states),
        action=np.stack(actions),
        reward=np.array(rewards, np.float32),
        controller=codes,
        images=imgs,
    )
    success = bool(np.linalg.norm(goal - pos) < 0.1)
    meta = EpisodeInfo(f"toy-{seed}", task, derive_tag(codes).value, success, review_status)
    return meta, frames
