"""The reward function used for learning (the one place it is defined) and chunked Bellman quantities.

The simulator stores a per-frame stage reward (0..4; 4 = task solved at that frame) and the episode keeps a
success flag judged on the final state. Learning reward per frame t:

    r_t = -step_cost
          + stage_bonus · (new stage reached at t: max(0, max_{k≤t} s_k - max_{k<t} s_k))
          + success_bonus · 1[t is the last frame and the episode succeeded]

The step cost makes faster solutions better; stage shaping gives dense credit for partial progress; the
success bonus ties the value to the outcome the eval gates measure. The last frame of every episode is
terminal (no bootstrap past it).
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from flywheel.policy.config import Strict


class RewardConfig(Strict):
    step_cost: float = Field(default=0.01, ge=0.0, le=1.0)
    stage_bonus: float = Field(default=0.25, ge=0.0, le=10.0)
    success_bonus: float = Field(default=1.0, ge=0.0, le=100.0)


def frame_rewards(stage_reward: np.ndarray, success: bool, cfg: RewardConfig) -> np.ndarray:
    """Per-frame learning reward (T,) float32 from the stored env reward and the success flag."""
    stage = np.maximum.accumulate(np.asarray(stage_reward, dtype=np.float64))
    progress = np.diff(stage, prepend=0.0).clip(min=0.0)
    r = -cfg.step_cost + cfg.stage_bonus * progress
    if success:
        r[-1] += cfg.success_bonus
    return r.astype(np.float32)


def chunk_targets(rewards: np.ndarray, gamma: float, chunk: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each frame t of one episode: (Σ_{k<H, t+k<T} γ^k r_{t+k}, next index t+H, bootstrap factor).

    bootstrap = γ^H when s_{t+H} exists inside the episode, 0 when the episode ends inside the chunk
    (terminal masking); the next index is then clamped to the last frame (unused).
    """
    r = np.asarray(rewards, dtype=np.float64)
    t_len = r.shape[0]
    padded = np.concatenate([r, np.zeros(chunk)])
    disc = gamma ** np.arange(chunk)
    windows = np.lib.stride_tricks.sliding_window_view(padded, chunk)[:t_len]
    ret = windows @ disc
    nxt = np.arange(t_len) + chunk
    alive = nxt < t_len
    bootstrap = np.where(alive, gamma**chunk, 0.0)
    return ret.astype(np.float32), np.minimum(nxt, t_len - 1), bootstrap.astype(np.float32)
