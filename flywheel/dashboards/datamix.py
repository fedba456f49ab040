"""The data mix: episodes and frames by tag (and iteration, and review status)."""

from __future__ import annotations

import pandas as pd
from sqlalchemy import func, select

from flywheel.store.db import Database
from flywheel.store.models import Episode

COLUMNS = ["iteration", "tag", "review_status", "episodes", "frames"]


def data_mix(db: Database, task: str | None = None) -> pd.DataFrame:
    """iteration (None for episodes outside the loop, e.g. demos), tag, review_status, episodes, frames."""
    query = select(
        Episode.iteration, Episode.tag, Episode.review_status, func.count(Episode.id), func.sum(Episode.length)
    ).group_by(Episode.iteration, Episode.tag, Episode.review_status)
    if task is not None:
        query = query.where(Episode.task == task)
    with db.read() as session:
        rows = [tuple(r) for r in session.execute(query)]
    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame["frames"] = frame["frames"].fillna(0).astype(int)
    return frame.sort_values(["iteration", "tag", "review_status"], na_position="first", ignore_index=True)


def mix_by_tag(db: Database, task: str | None = None, training_only: bool = False) -> pd.DataFrame:
    """tag, episodes, frames — `training_only` leaves out rejected episodes (what training sees)."""
    frame = data_mix(db, task)
    if training_only:
        frame = frame[frame["review_status"] != "rejected"]
    return frame.groupby("tag", as_index=False)[["episodes", "frames"]].sum()
