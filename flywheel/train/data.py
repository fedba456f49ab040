"""Training data: (episode meta, frames) pairs from the store, and the data fingerprint."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from flywheel.errors import StoreError
from flywheel.vocab import EpisodeFrames


class EpisodeMeta(Protocol):
    """What training reads from an episode record."""

    id: Any
    task: str
    tag: Any
    success: bool | None
    review_status: Any


@dataclass(frozen=True)
class EpisodeInfo:
    """An `EpisodeMeta` for episodes held in memory rather than read from the store (fresh rollouts, toy data)."""

    id: str
    task: str
    tag: str
    success: bool
    review_status: str = "accepted"


@dataclass(frozen=True)
class TrainingEpisode:
    meta: EpisodeMeta
    frames: EpisodeFrames


class EmptyDatasetError(StoreError):
    """No usable episode for training."""


def _text(value: Any) -> str:
    return str(getattr(value, "value", value))


def usable_episodes(pairs: Iterable[tuple[EpisodeMeta, EpisodeFrames]], what: str) -> list[TrainingEpisode]:
    """Keep non-rejected episodes; raise a clear error when nothing is left."""
    seen = 0
    kept: list[TrainingEpisode] = []
    for meta, frames in pairs:
        seen += 1
        if _text(meta.review_status) != "rejected":
            kept.append(TrainingEpisode(meta, frames))
    if not kept:
        why = "no episodes" if seen == 0 else f"all {seen} episodes are rejected"
        raise EmptyDatasetError(f"cannot train on {what}: {why}; collect or accept episodes first")
    return kept


def load_training_episodes(
    store: Any, task: str, *, include_unreviewed: bool = True, tags: Iterable[str] | None = None
) -> list[TrainingEpisode]:
    """Episodes of `task` from an EpisodeStore: accepted (and unreviewed unless excluded), never rejected."""
    from flywheel.store import EpisodeFilter  # the store layer's query type

    wanted = {_text(t) for t in tags} if tags is not None else None
    records = []
    for rec in store.list_episodes(EpisodeFilter(task=task, exclude_rejected=True)):
        status = _text(rec.review_status)
        if status == "unreviewed" and not include_unreviewed:
            continue
        if wanted is not None and _text(rec.tag) not in wanted:
            continue
        records.append(rec)
    return usable_episodes(((r, store.open_record_frames(r)) for r in records), f"task {task!r}")


def data_fingerprint(episodes: list[TrainingEpisode]) -> dict[str, Any]:
    """Episode ids, counts by tag, frame count and a hash of the sorted ids."""
    ids = sorted(str(e.meta.id) for e in episodes)
    return {
        "episode_ids": ids,
        "counts_by_tag": dict(sorted(Counter(_text(e.meta.tag) for e in episodes).items())),
        "episodes": len(episodes),
        "frames": int(sum(len(e.frames) for e in episodes)),
        "sha256": hashlib.sha256("\n".join(ids).encode()).hexdigest(),
    }
