"""Headline counts for the dashboards (episodes, frames, review progress, takeovers, labels)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select

from flywheel.store import EpisodeFilter, EpisodeStore
from flywheel.store.models import REVIEW_STATUSES, Episode, Label


@dataclass(frozen=True)
class Overview:
    episodes: int
    frames: int
    by_tag: dict[str, int]
    by_review: dict[str, int]
    takeovers: int
    labels: int  # labels not undone

    @property
    def reviewed(self) -> int:
        return self.episodes - self.by_review.get("unreviewed", 0)


def overview(store: EpisodeStore, task: str | None = None) -> Overview:
    reviews = select(Episode.review_status, func.count(Episode.id), func.sum(Episode.length)).group_by(
        Episode.review_status
    )
    labels = select(func.count(Label.id)).join(Episode, Episode.id == Label.episode_id).where(Label.undone.is_(False))
    if task is not None:
        reviews = reviews.where(Episode.task == task)
        labels = labels.where(Episode.task == task)
    with store.db.read() as session:
        rows = session.execute(reviews).all()
        label_count = int(session.scalar(labels) or 0)
    by_review = {status: 0 for status in REVIEW_STATUSES} | {status: int(n) for status, n, _ in rows}
    filters = EpisodeFilter(task=task)
    return Overview(
        episodes=sum(by_review.values()),
        frames=int(sum(int(f or 0) for *_, f in rows)),
        by_tag=store.count_by_tag(filters),
        by_review=by_review,
        takeovers=store.takeover_count(filters),
        labels=label_count,
    )
