"""The per-frame arrays of one episode, validated before anything touches disk."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from flywheel.errors import InvalidFramesError
from flywheel.vocab.controllers import check_codes
from flywheel.vocab.tags import Tag, derive_tag


@dataclass(frozen=True)
class EpisodeFrames:
    """All frames of one episode, time-major.

    state:          (T, S) float32 observation state vector (joint positions, velocities, object poses)
    action:         (T, A) float32 executed action
    policy_action:  (T, A) float32 what the policy proposed (zeros where it was not consulted)
    policy_action_valid: (T,) bool, True where `policy_action` holds a real proposal
    reward:         (T,) float32
    controller:     (T,) uint8 controller codes (see `flywheel.vocab.CONTROLLER_CODES`)
    images:         camera name → (T, H, W, 3) uint8
    """

    state: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    controller: np.ndarray
    policy_action: np.ndarray | None = None
    policy_action_valid: np.ndarray | None = None
    images: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        t = _length(self.state, "state")
        fix = object.__setattr__
        fix(self, "state", _float_matrix(self.state, "state", t))
        fix(self, "action", _float_matrix(self.action, "action", t))
        fix(self, "reward", _vector(self.reward, "reward", t, np.float32))
        fix(self, "controller", _vector(self.controller, "controller", t, np.uint8))
        check_codes(self.controller)
        if self.policy_action is None:
            fix(self, "policy_action", np.zeros_like(self.action))
            fix(self, "policy_action_valid", np.zeros(t, dtype=bool))
        else:
            fix(self, "policy_action", _float_matrix(self.policy_action, "policy_action", t))
            if self.policy_action.shape != self.action.shape:
                raise InvalidFramesError(
                    f"frames: policy_action shape {self.policy_action.shape} != action shape {self.action.shape}"
                )
            valid = self.policy_action_valid
            if valid is None:
                valid = np.ones(t, dtype=bool)
            fix(self, "policy_action_valid", _vector(valid, "policy_action_valid", t, np.bool_))
        images = {}
        for name, frames in self.images.items():
            arr = np.asarray(frames)
            if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[0] != t or arr.shape[-1] != 3:
                raise InvalidFramesError(
                    f"frames: camera {name!r} must be uint8 (T={t}, H, W, 3), got {arr.dtype} {arr.shape}"
                )
            images[name] = np.ascontiguousarray(arr)
        fix(self, "images", images)

    def __len__(self) -> int:
        return int(self.state.shape[0])

    @property
    def tag(self) -> Tag:
        return derive_tag(self.controller)

    @property
    def nbytes(self) -> int:
        arrays = [
            self.state,
            self.action,
            self.policy_action,
            self.reward,
            self.controller,
            *self.images.values(),
        ]
        return int(sum(a.nbytes for a in arrays))


def _length(state: np.ndarray, name: str) -> int:
    arr = np.asarray(state)
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise InvalidFramesError(f"frames: {name} must be a non-empty (T, D) array, got shape {arr.shape}")
    return int(arr.shape[0])


def _float_matrix(value: np.ndarray, name: str, t: int) -> np.ndarray:
    arr = np.ascontiguousarray(np.asarray(value, dtype=np.float32))
    if arr.ndim != 2 or arr.shape[0] != t:
        raise InvalidFramesError(f"frames: {name} must have shape (T={t}, D), got {arr.shape}")
    _check_finite(arr, name)
    return arr


def _vector(value: np.ndarray, name: str, t: int, dtype: type) -> np.ndarray:
    arr = np.ascontiguousarray(np.asarray(value, dtype=dtype))
    if arr.shape != (t,):
        raise InvalidFramesError(f"frames: {name} must have shape ({t},), got {arr.shape}")
    if np.issubdtype(arr.dtype, np.floating):
        _check_finite(arr, name)
    return arr


def _check_finite(arr: np.ndarray, name: str) -> None:
    bad = ~np.isfinite(arr)
    if bad.any():
        first = int(np.argwhere(bad)[0][0])
        raise InvalidFramesError(
            f"frames: {name} has {int(bad.sum())} NaN/inf values (first at frame {first}); "
            "fix the producer or truncate the episode before that frame"
        )


def gather_rows(per_episode: Sequence[np.ndarray], offsets: np.ndarray, frame_indices: np.ndarray) -> np.ndarray:
    """Rows of several per-episode arrays (memory maps or in RAM) by global frame index, episode `e`'s frames being
    `offsets[e]:offsets[e + 1]`; only the pages of the asked-for rows are touched."""
    idx = np.asarray(frame_indices, dtype=np.int64)
    episodes = np.searchsorted(offsets, idx, side="right") - 1
    local = idx - offsets[episodes]
    first = per_episode[0]
    out = np.empty((len(idx), *first.shape[1:]), dtype=first.dtype)
    for episode in np.unique(episodes):
        rows = episodes == episode
        out[rows] = per_episode[episode][local[rows]]
    return out
