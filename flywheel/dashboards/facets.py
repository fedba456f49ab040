"""The values the episode filters can take (distinct tasks, policies, iterations), for pickers."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import distinct, select

from flywheel.store.db import Database
from flywheel.store.models import Episode


@dataclass(frozen=True)
class EpisodeFacets:
    tasks: list[str]
    policy_ids: list[int]
    iterations: list[int]


def episode_facets(db: Database) -> EpisodeFacets:
    with db.read() as session:
        tasks = sorted(session.scalars(select(distinct(Episode.task))))
        policies = sorted(p for p in session.scalars(select(distinct(Episode.policy_version_id))) if p is not None)
        iterations = sorted(i for i in session.scalars(select(distinct(Episode.iteration))) if i is not None)
    return EpisodeFacets(tasks, policies, iterations)
