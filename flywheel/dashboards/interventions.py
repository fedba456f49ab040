"""Takeovers per policy episode, by iteration and over time (a takeover = one human/expert segment)."""

from __future__ import annotations

import pandas as pd
from sqlalchemy import and_, func, select

from flywheel.store.db import Database
from flywheel.store.models import Episode, Segment, as_utc
from flywheel.vocab import ControllerKind

SUMMARY = ["episodes", "intervention_episodes", "takeovers", "per_episode"]


def policy_episodes(db: Database, task: str | None = None) -> pd.DataFrame:
    """One row per episode a policy acted in: episode_id, iteration, created_at (UTC), takeovers."""
    query = (
        select(Episode.id, Episode.iteration, Episode.created_at, func.count(Segment.id))
        .outerjoin(Segment, and_(Segment.episode_id == Episode.id, Segment.controller != ControllerKind.POLICY.value))
        .where(Episode.policy_version_id.is_not(None))
        .group_by(Episode.id, Episode.iteration, Episode.created_at)
        .order_by(Episode.created_at)
    )
    if task is not None:
        query = query.where(Episode.task == task)
    with db.read() as session:
        rows = [(i, it, as_utc(at), n) for i, it, at, n in session.execute(query)]
    frame = pd.DataFrame(rows, columns=["episode_id", "iteration", "created_at", "takeovers"])
    frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)
    return frame


def _summarise(frame: pd.DataFrame, key: str) -> pd.DataFrame:
    if frame.empty:
        return pd.DataFrame(columns=[key, *SUMMARY])
    grouped = frame.groupby(key).agg(
        episodes=("episode_id", "count"),
        intervention_episodes=("takeovers", lambda t: int((t > 0).sum())),
        takeovers=("takeovers", "sum"),
    )
    grouped["per_episode"] = grouped["takeovers"] / grouped["episodes"]
    return grouped.reset_index()


def interventions_by_iteration(db: Database, task: str | None = None) -> pd.DataFrame:
    """iteration, episodes, intervention_episodes, takeovers, per_episode (policy episodes with an iteration)."""
    frame = policy_episodes(db, task)
    frame = frame[frame["iteration"].notna()].astype({"iteration": int})
    return _summarise(frame, "iteration")


def interventions_over_time(db: Database, task: str | None = None, freq: str | None = None) -> pd.DataFrame:
    """period (start of the bucket, UTC), episodes, intervention_episodes, takeovers, per_episode.

    `freq` is a pandas frequency; by default hourly buckets when the data spans under two days, else daily.
    """
    frame = policy_episodes(db, task)
    if frame.empty:
        return pd.DataFrame(columns=["period", *SUMMARY])
    if freq is None:
        span = frame["created_at"].max() - frame["created_at"].min()
        freq = "h" if span < pd.Timedelta(days=2) else "D"
    frame["period"] = frame["created_at"].dt.floor(freq)
    return _summarise(frame, "period")
