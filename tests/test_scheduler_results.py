"""Typed job results and iteration summaries: what older versions stored as plain JSON still loads."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from sqlalchemy import select

from flywheel.dashboards.jobs import scheduler_status
from flywheel.scheduler.jobs import JobBook
from flywheel.scheduler.results import (
    CollectResult,
    EvalPhaseResult,
    IterationSummary,
    PromoteResult,
    TrainPhaseResult,
)
from flywheel.store import EpisodeStore
from flywheel.store.models import Iteration

# an iteration summary exactly as `flywheel run` stored it before the models (a dict built in loop._summary)
OLD_SUMMARY = {
    "iteration": 3,
    "episodes_by_tag": {"autonomous": 12, "intervention": 8},
    "episodes": 20,
    "interventions_per_episode": 0.55,
    "collect_success_rate": 0.6,
    "candidate": 4,
    "candidate_success": 0.81,
    "candidate_ci": [0.72, 0.87],
    "eval_episodes_used": 100,
    "eval_rollouts": 60,
    "champion": 4,
    "champion_success": 0.81,
    "champion_ci": [0.72, 0.87],
    "champion_eval_episodes": 100,
    "champion_successes_per_hour": 512.3,
    "champion_successes_per_hour_ci": [480.0, 540.1],
    "champion_mean_seconds_to_success": 5.2,
    "champion_fresh_success": 0.79,
    "champion_fresh_ci": [0.7, 0.86],
    "champion_fresh_episodes": 100,
    "lineage_drift": 0.0,
    "lineage_best": 4,
    "lineage_drift_seeds": 100,
    "verdict": "promoted",
    "reason": None,
    "passed_because": ["improvement: +6 points"],
}


def test_old_shaped_results_load_into_the_models() -> None:
    summary = IterationSummary.model_validate(OLD_SUMMARY)
    assert (summary.iteration, summary.candidate, summary.verdict) == (3, 4, "promoted")
    assert summary.to_json() == OLD_SUMMARY  # re-stored unchanged
    skipped = CollectResult.model_validate(
        {"skipped": "no champion yet: this iteration trains on demos only", "episodes": 0}
    )
    assert skipped.episodes == 0 and skipped.episodes_by_tag == {}
    train = TrainPhaseResult.model_validate({"policy_version_id": 2, "steps": 1000, "metrics": {"train/loss": 0.1}})
    assert train.policy_version_id == 2
    old_eval = {"eval_run_id": 7, "passed": False, "success_rate": 0.5, "ci_low": 0.4, "ci_high": 0.6}
    assert EvalPhaseResult.model_validate({**old_eval, "latency_p95_ms": 3.0}).failed_gates == []
    rejected = PromoteResult.model_validate({"verdict": "rejected", "policy_version_id": 2, "reason": "worse"})
    assert rejected.fresh is None
    # a key a later version adds, read by this one, is kept when re-stored
    assert IterationSummary.model_validate({**OLD_SUMMARY, "new_key": 1}).to_json()["new_key"] == 1
    with pytest.raises(ValidationError, match="verdict"):
        IterationSummary.model_validate({**OLD_SUMMARY, "verdict": "maybe"})


def test_a_stored_old_summary_reads_back_typed(store: EpisodeStore) -> None:
    book = JobBook(store.db)
    book.ensure_iteration(3, "transfer_cube", 3)
    book.ensure_iteration(4, "transfer_cube", 3)

    def write_raw(session) -> None:  # as an older flywheel wrote it: plain JSON in the row
        row = session.scalars(select(Iteration).where(Iteration.number == 3)).one()
        row.state, row.summary = "done", OLD_SUMMARY

    store.db.transaction(write_raw)
    (summary,) = book.summaries()
    assert isinstance(summary, IterationSummary) and summary.champion_fresh_success == 0.79
    by_number = {it.number: it for it in scheduler_status(store.db).iterations}
    assert by_number[3].summary == summary and by_number[4].summary is None  # unfinished: no summary yet
    book.finish_iteration(4, summary.model_copy(update={"iteration": 4}))
    assert [s.iteration for s in book.summaries()] == [3, 4]


def test_the_run_table_shows_the_champion_on_fresh_seeds_beside_the_gate() -> None:
    from rich.console import Console

    from flywheel.cli.loop import _row_table

    measured = IterationSummary.model_validate(OLD_SUMMARY)
    unmeasured = measured.model_copy(update={"iteration": 4, "champion_fresh_success": None})
    console = Console(record=True, width=250)
    console.print(_row_table([measured, unmeasured]))
    text = console.export_text()
    lines = [line for line in text.splitlines() if line.startswith("│ ")]
    assert "champion on fresh seeds" in text
    assert "79% [70%, 86%] of 100" in lines[0] and "81% (v4)" in lines[0]
    assert len(lines) == 2 and "79%" not in lines[1]
