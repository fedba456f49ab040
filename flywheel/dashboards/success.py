"""Success rates with 95% Wilson intervals: per policy version and per iteration, from eval runs and collection."""

from __future__ import annotations

import pandas as pd
from sqlalchemy import Integer, cast, func, select

from flywheel.evaluate.stats import wilson_interval
from flywheel.store.db import Database
from flywheel.store.models import Episode, EvalRun, PolicyVersion

COLUMNS = ["source", "n", "successes", "rate", "ci_low", "ci_high"]
EVAL = "eval"
COLLECTION = "collection (with takeovers)"


def _with_interval(frame: pd.DataFrame) -> pd.DataFrame:
    """Add rate, ci_low, ci_high (Wilson, 95%) from `successes` and `n`."""
    frame = frame.copy()
    intervals = [wilson_interval(int(s), int(n)) for s, n in zip(frame["successes"], frame["n"], strict=True)]
    frame["rate"] = [s / n if n else 0.0 for s, n in zip(frame["successes"], frame["n"], strict=True)]
    frame["ci_low"] = [lo for lo, _ in intervals]
    frame["ci_high"] = [hi for _, hi in intervals]
    return frame


def eval_success_by_policy(db: Database, task: str | None = None) -> pd.DataFrame:
    """The latest gated eval run of each policy version: policy_version_id, status, iteration, eval_run_id,
    passed, n, successes, rate, ci_low, ci_high."""
    latest = select(func.max(EvalRun.id).label("id")).where(EvalRun.kind == "gate").group_by(EvalRun.policy_version_id)
    query = (
        select(
            EvalRun.policy_version_id,
            PolicyVersion.status,
            PolicyVersion.iteration,
            EvalRun.id.label("eval_run_id"),
            EvalRun.passed,
            EvalRun.episodes.label("n"),
            EvalRun.successes,
        )
        .join(PolicyVersion, PolicyVersion.id == EvalRun.policy_version_id)
        .where(EvalRun.id.in_(latest))
        .order_by(EvalRun.policy_version_id)
    )
    if task is not None:
        query = query.where(EvalRun.task == task)
    with db.read() as session:
        rows = session.execute(query).all()
    columns = ["policy_version_id", "status", "iteration", "eval_run_id", "passed", "n", "successes"]
    frame = pd.DataFrame(rows, columns=columns)
    frame["source"] = EVAL
    return _with_interval(frame)[[*columns[:5], *COLUMNS]]


def collection_success_by_policy(db: Database, task: str | None = None) -> pd.DataFrame:
    """Collected episodes per acting policy version (takeovers included): policy_version_id, n, successes, ..."""
    query = (
        select(Episode.policy_version_id, func.count(Episode.id), func.sum(cast(Episode.success, Integer)))
        .where(Episode.policy_version_id.is_not(None))
        .group_by(Episode.policy_version_id)
        .order_by(Episode.policy_version_id)
    )
    if task is not None:
        query = query.where(Episode.task == task)
    with db.read() as session:
        rows = session.execute(query).all()
    frame = pd.DataFrame(rows, columns=["policy_version_id", "n", "successes"]).fillna({"successes": 0})
    frame["source"] = COLLECTION
    return _with_interval(frame)[["policy_version_id", *COLUMNS]]


def success_by_iteration(db: Database, task: str | None = None) -> pd.DataFrame:
    """Per iteration: the candidate's gated eval (source `eval`) and the champion's collection episodes
    (source `collection (with takeovers)`). Columns: iteration, source, n, successes, rate, ci_low, ci_high."""
    latest = (
        select(func.max(EvalRun.id))
        .where(EvalRun.iteration.is_not(None), EvalRun.passed.is_not(None))
        .group_by(EvalRun.iteration)
    )
    evals = select(EvalRun.iteration, EvalRun.episodes, EvalRun.successes).where(EvalRun.id.in_(latest))
    collected = (
        select(Episode.iteration, func.count(Episode.id), func.sum(cast(Episode.success, Integer)))
        .where(Episode.iteration.is_not(None), Episode.policy_version_id.is_not(None))
        .group_by(Episode.iteration)
    )
    if task is not None:
        evals = evals.where(EvalRun.task == task)
        collected = collected.where(Episode.task == task)
    with db.read() as session:
        rows = [(it, EVAL, n, s) for it, n, s in session.execute(evals)]
        rows += [(it, COLLECTION, n, s or 0) for it, n, s in session.execute(collected)]
    frame = pd.DataFrame(rows, columns=["iteration", "source", "n", "successes"])
    frame = _with_interval(frame)[["iteration", *COLUMNS]]
    return frame.sort_values(["source", "iteration"], ignore_index=True)
