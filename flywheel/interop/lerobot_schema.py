"""How flywheel episodes map onto a LeRobotDataset v3.0: feature names, integer codes, the `meta/` sidecar.

LeRobot 0.4.4's writer takes per-frame features only (its episode metadata holds lerobot's own columns), so the
per-episode flywheel facts are written twice: as per-frame int64 features (readable by any lerobot consumer) and
in a JSON sidecar `meta/flywheel.json` (codes, segments, seeds, operators) that lerobot ignores.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from flywheel.errors import FlywheelError
from flywheel.store.models import REVIEW_STATUSES
from flywheel.vocab import CONTROLLER_CODES, Tag

FPS = 50  # sim.constants.CONTROL_DT = 0.02 s
ROBOT_TYPE = "aloha"

STATE = "observation.state"
IMAGE_PREFIX = "observation.images."
ACTION = "action"
REWARD = "next.reward"
DONE = "next.done"
CONTROLLER = "controller"
INTERVENTION = "intervention"
# Not prefixed "action": lerobot classifies every feature starting with "action" as an action input.
POLICY_ACTION = "policy_action"
POLICY_ACTION_VALID = "policy_action_valid"
EPISODE_ID = "flywheel.episode_id"
TAG = "flywheel.tag"
REVIEW = "flywheel.review_status"

SIDECAR = Path("meta") / "flywheel.json"
SIDECAR_FORMAT = "flywheel-lerobot"
SIDECAR_VERSION = 1

CONTROLLER_CODE_MAP: dict[str, int] = {c.value: code for c, code in CONTROLLER_CODES.items()}
TAG_CODE_MAP: dict[str, int] = {t.value: i for i, t in enumerate(Tag)}
REVIEW_CODE_MAP: dict[str, int] = {s: i for i, s in enumerate(REVIEW_STATUSES)}


class InteropError(FlywheelError):
    """A dataset cannot be exported or imported as asked."""


def scalar(dtype: str) -> dict[str, Any]:
    return {"dtype": dtype, "shape": (1,), "names": None}


def vector(dim: int, names: list[str] | None = None) -> dict[str, Any]:
    return {"dtype": "float32", "shape": (dim,), "names": names}


def image(height: int, width: int) -> dict[str, Any]:
    return {"dtype": "image", "shape": (height, width, 3), "names": ["height", "width", "channel"]}


@dataclass(frozen=True)
class SegmentMeta:
    start: int
    end: int
    controller: str
    operator: str | None = None
    trigger: str | None = None


@dataclass(frozen=True)
class EpisodeMeta:
    """What the sidecar keeps about one exported episode (lerobot `episode_index` → flywheel facts)."""

    episode_index: int
    flywheel_episode_id: int | None
    task: str
    tag: str
    review_status: str
    success: bool
    env_seed: int
    policy_version_id: int | None = None
    iteration: int | None = None
    operator: str | None = None
    created_at: str | None = None
    segments: tuple[SegmentMeta, ...] = ()


@dataclass(frozen=True)
class Sidecar:
    episodes: tuple[EpisodeMeta, ...]
    filters: dict[str, Any] = field(default_factory=dict)
    codes: dict[str, dict[str, int]] = field(
        default_factory=lambda: {
            CONTROLLER: dict(CONTROLLER_CODE_MAP),
            TAG: dict(TAG_CODE_MAP),
            REVIEW: dict(REVIEW_CODE_MAP),
        }
    )

    def episode(self, episode_index: int) -> EpisodeMeta | None:
        return next((e for e in self.episodes if e.episode_index == episode_index), None)

    def write(self, root: Path) -> None:
        """Write `meta/flywheel.json` atomically."""
        data = {"format": SIDECAR_FORMAT, "version": SIDECAR_VERSION, **asdict(self)}
        path = root / SIDECAR
        temp = path.with_suffix(".json.tmp")
        temp.write_text(json.dumps(data, indent=1))
        os.replace(temp, path)

    @classmethod
    def read(cls, root: Path) -> Sidecar | None:
        """The sidecar of a dataset, or None for datasets not written by flywheel."""
        path = root / SIDECAR
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_text())
            if data.get("format") != SIDECAR_FORMAT or int(data.get("version", 0)) > SIDECAR_VERSION:
                raise InteropError(
                    f"{path} is not a flywheel sidecar this version can read "
                    f"(format {data.get('format')!r}, version {data.get('version')!r})"
                )
            episodes = tuple(
                EpisodeMeta(**{**e, "segments": tuple(SegmentMeta(**s) for s in e.get("segments", ()))})
                for e in data["episodes"]
            )
            return cls(episodes=episodes, filters=data.get("filters", {}), codes=data["codes"])
        except (ValueError, KeyError, TypeError) as exc:
            raise InteropError(
                f"{path} is malformed ({exc}); delete it to import the dataset as external data"
            ) from None
