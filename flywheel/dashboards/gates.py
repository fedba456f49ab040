"""Eval-gate history: every gated eval run, one row per gate verdict with its reason."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import select

from flywheel.evaluate.gates import EvalNumbers
from flywheel.store.db import Database
from flywheel.store.models import EvalRun, as_utc
from flywheel.store.records import snapshot

COLUMNS = [
    "eval_run_id",
    "policy_version_id",
    "iteration",
    "created_at",
    "run_passed",
    "success_rate",
    "gate",
    "passed",
    "reason",
]


def gate_history(db: Database, task: str | None = None) -> pd.DataFrame:
    """Oldest first. Runs stored only as a champion baseline (no gates) are left out."""
    query = select(EvalRun).where(EvalRun.kind == "gate", EvalRun.passed.is_not(None)).order_by(EvalRun.id)
    if task is not None:
        query = query.where(EvalRun.task == task)
    rows = []
    with db.read() as session:
        for run in session.scalars(query):
            for verdict in run.gates or []:
                rows.append(
                    (
                        run.id,
                        run.policy_version_id,
                        run.iteration,
                        as_utc(run.created_at),
                        bool(run.passed),
                        run.success_rate,
                        str(verdict.get("gate", "?")),
                        bool(verdict.get("passed")),
                        str(verdict.get("reason", "")),
                    )
                )
    return pd.DataFrame(rows, columns=COLUMNS)


@dataclass(frozen=True)
class EvalRunView(EvalNumbers):
    """One eval run of a policy version with its gate verdicts and their evidence."""

    id: int
    created_at: datetime
    iteration: int | None
    passed: bool | None  # None: a champion baseline or a fresh-seed re-measurement, no gates applied
    gates: list[dict[str, Any]]
    kind: str = "gate"  # gate | baseline | fresh (re-measured on seeds never used to gate)
    metrics: dict[str, Any] = field(default_factory=dict)  # throughput, episodes used, looks, lineage reference

    @property
    def successes_per_hour(self) -> float | None:
        return (self.metrics.get("throughput") or {}).get("successes_per_hour")


def eval_runs(db: Database, policy_version_id: int) -> list[EvalRunView]:
    """Every eval run of one version, newest first."""
    query = select(EvalRun).where(EvalRun.policy_version_id == policy_version_id).order_by(EvalRun.id.desc())
    with db.read() as session:
        return [
            snapshot(
                EvalRunView,
                r,
                created_at=as_utc(r.created_at),
                gates=[dict(g) for g in r.gates or []],
                metrics=dict(r.metrics or {}),
            )
            for r in session.scalars(query)
        ]


def champion_numbers(db: Database, policy_version_id: int) -> dict[str, Any]:
    """A version's gate number beside its fresh-seed number, with throughput: the latest run of each kind."""
    out: dict[str, Any] = {"policy_version_id": policy_version_id}
    for run in reversed(eval_runs(db, policy_version_id)):  # oldest first: the latest of each kind wins
        out[run.kind] = {
            "eval_run_id": run.id,
            "success_rate": run.success_rate,
            "ci": [run.ci_low, run.ci_high],
            "episodes": run.episodes,
            "throughput": run.metrics.get("throughput"),
        }
    return out
