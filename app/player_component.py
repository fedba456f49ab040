"""The episode player component: plain HTML/JS/CSS from `app/components/` (no build step), registered once per
process, and the data it plays.

The browser fetches the episode's cached video file (`flywheel.live.episode_video`) from the console's guarded
route (`flywheel.live.video_route`) and plays it client-side; the page passes the file's URL, the controller
segments, the takeover marks, the reward and the plotted series.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.charts import CONTROLLER_COLORS
from app.packaged_component import packaged_component
from flywheel.live.episode_video import EpisodeVideo
from flywheel.live.video_route import video_url
from flywheel.store import EpisodeRecord, SegmentRecord

_episode_player = packaged_component("flywheel_episode_player", "episode_player", '<div class="fw-player-mount"></div>')


@dataclass(frozen=True)
class Series:
    """One plotted line: a name and a value per step (NaN: no value, a gap in the line)."""

    name: str
    values: np.ndarray
    dashed: bool = False


def takeover_marks(segments: Sequence[SegmentRecord], has_policy: bool, length: int) -> list[dict[str, Any]]:
    """The start and end of each segment a person or the expert drove in a policy's episode, in step order."""
    if not has_policy or length <= 1:
        return []
    last = length - 1
    marks = []
    for s in segments:
        if s.controller == "policy":
            continue
        who = f"{s.controller} by {s.operator}" if s.operator else s.controller
        marks.append({"kind": "start", "step": min(s.start, last), "label": f"{who}: start {min(s.start, last)}"})
        marks.append({"kind": "end", "step": min(s.end, last), "label": f"{who}: end {min(s.end, last)}"})
    return sorted(marks, key=lambda m: m["step"])


def _values(values: np.ndarray) -> list[float | None]:
    return [None if not math.isfinite(v) else round(float(v), 4) for v in values]


def player_data(
    player_id: str,
    record: EpisodeRecord,
    length: int,
    fps: float,
    video: EpisodeVideo | None,
    reward: np.ndarray,
    plots: Sequence[tuple[str, Sequence[Series]]],
) -> dict[str, Any]:
    """What the player plays (JSON): the video's URL (None: no pictures), steps, rate, segments, marks, plots."""
    return {
        "id": player_id,
        "episode": record.id,
        "video": None if video is None else video_url(video.name),
        "length": length,
        "fps": fps,
        "segments": [
            {"start": s.start, "end": s.end, "controller": s.controller, "operator": s.operator, "trigger": s.trigger}
            for s in record.segments
        ],
        "colors": CONTROLLER_COLORS,
        "marks": takeover_marks(record.segments, record.policy_version_id is not None, length),
        "reward": _values(np.asarray(reward, dtype=np.float64)),
        "plots": [
            {
                "title": title,
                "series": [
                    {"name": s.name, "values": _values(np.asarray(s.values, np.float64)), "dashed": s.dashed}
                    for s in series
                ],
            }
            for title, series in plots
        ],
    }


def episode_player(data: dict[str, Any], key: str) -> None:
    """Mount the player on `data` (from `player_data`)."""
    _episode_player(data=data, key=key)
