"""Dashboard queries on SQLite and PostgreSQL: success with Wilson intervals, takeovers, data mix, gates,
training curves from a real training run, scheduler state."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from flywheel import dashboards
from flywheel.evaluate.gates import GateConfig, run_gates
from flywheel.evaluate.runner import SeedResult, summarize
from flywheel.evaluate.stats import wilson_interval
from flywheel.registry import PolicyRegistry
from flywheel.review import ReviewService
from flywheel.scheduler.jobs import JobBook
from flywheel.scheduler.lock import acquire_lock
from flywheel.store import EpisodeStore, NewEpisode
from flywheel.store.models import EvalRun, SchedulerLock, utcnow
from flywheel.vocab import ControllerKind
from tests.conftest import make_frames

P, H, E = ControllerKind.POLICY, ControllerKind.HUMAN, ControllerKind.EXPERT


def _policy(registry: PolicyRegistry, iteration: int | None, checkpoint: str = "ckpt") -> int:
    return registry.register_candidate(
        task="transfer_cube",
        checkpoint_uri=checkpoint,
        sha256="0" * 64,
        config={},
        data_fingerprint={},
        metrics={"train/loss": 0.5, "train/policy_loss": 0.25, "timings": {"total_s": 3.0}},
        iteration=iteration,
    ).id


def _episode(
    store: EpisodeStore, ctrl: list[ControllerKind], policy: int | None, iteration: int | None, ok: bool
) -> int:
    frames = make_frames(controllers=ctrl)
    return store.add(
        NewEpisode(
            task="transfer_cube",
            frames=frames,
            env_seed=0,
            success=ok,
            policy_version_id=policy,
            iteration=iteration,
        )
    ).id


def _eval(store: EpisodeStore, policy: int, iteration: int | None, outcomes: list[bool], gated: bool = True) -> int:
    summary = summarize([SeedResult(seed, ok, 50, (2.0, 3.0), False, 0) for seed, ok in enumerate(outcomes)])
    verdicts = run_gates(summary, None, GateConfig(success_floor=0.5)) if gated else []
    with store.db.write() as session:
        row = EvalRun(
            policy_version_id=policy,
            task="transfer_cube",
            seeds=summary.seeds,
            outcomes=outcomes,
            **summary.numbers(),
            gates=[v.as_dict() for v in verdicts],
            passed=all(v.passed for v in verdicts) if gated else None,
            iteration=iteration,
        )
        session.add(row)
        session.flush()
        return row.id


@pytest.fixture
def filled(store: EpisodeStore) -> dict[str, int]:
    """Two iterations: demos, then policy episodes with and without takeovers, and their evals."""
    registry = PolicyRegistry(store.db)
    first, second = _policy(registry, 0), _policy(registry, 1)
    for _ in range(2):
        _episode(store, [E] * 20, None, None, True)
    _episode(store, [P] * 10 + [H] * 10, first, 1, True)  # 1 takeover
    _episode(store, [P] * 5 + [E] * 5 + [P] * 5 + [H] * 5, first, 1, False)  # 2 takeovers
    _episode(store, [P] * 20, first, 1, False)
    rejected = _episode(store, [P] * 20, second, 2, True)
    _episode(store, [P] * 10 + [E] * 10, second, 2, True)  # 1 takeover
    ReviewService(store).reject(rejected, author="alice", expected_version=0)
    _eval(store, first, 0, [True] * 6 + [False] * 4)
    _eval(store, first, None, [True] * 7 + [False] * 3, gated=False)  # champion baseline rerun: latest for v1
    _eval(store, second, 1, [True] * 2 + [False] * 8)
    return {"first": first, "second": second}


def test_success_rates_carry_wilson_intervals(store: EpisodeStore, filled: dict[str, int]) -> None:
    by_policy = dashboards.eval_success_by_policy(store.db)
    assert by_policy["policy_version_id"].tolist() == [filled["first"], filled["second"]]
    assert by_policy["successes"].tolist() == [7, 2] and by_policy["n"].tolist() == [10, 10]
    low, high = wilson_interval(2, 10)
    assert by_policy.iloc[1][["rate", "ci_low", "ci_high"]].tolist() == pytest.approx([0.2, low, high])
    assert by_policy.iloc[1]["passed"] is False or not by_policy.iloc[1]["passed"]

    collected = dashboards.collection_success_by_policy(store.db)
    assert collected[["n", "successes"]].values.tolist() == [[3, 1], [2, 2]]

    per_iteration = dashboards.success_by_iteration(store.db)
    evals = per_iteration[per_iteration["source"] == "eval"]
    assert evals[["iteration", "successes", "n"]].values.tolist() == [[0, 6, 10], [1, 2, 10]]  # gated runs only
    collection = per_iteration[per_iteration["source"] != "eval"]
    assert collection[["iteration", "successes", "n"]].values.tolist() == [[1, 1, 3], [2, 2, 2]]
    assert (per_iteration["ci_low"] <= per_iteration["rate"]).all()
    assert (per_iteration["rate"] <= per_iteration["ci_high"]).all()
    assert dashboards.eval_success_by_policy(store.db, task="insertion").empty


def test_interventions_per_episode(store: EpisodeStore, filled: dict[str, int]) -> None:
    by_iteration = dashboards.interventions_by_iteration(store.db)
    assert by_iteration[["iteration", "episodes", "intervention_episodes", "takeovers"]].values.tolist() == [
        [1, 3, 2, 3],
        [2, 2, 1, 1],
    ]
    assert by_iteration["per_episode"].tolist() == pytest.approx([1.0, 0.5])
    over_time = dashboards.interventions_over_time(store.db)
    assert over_time["episodes"].sum() == 5 and over_time["takeovers"].sum() == 4  # demos are not counted
    daily = dashboards.interventions_over_time(store.db, freq="D")
    assert len(daily) == 1 and daily["per_episode"].iloc[0] == pytest.approx(0.8)
    assert dashboards.interventions_over_time(store.db, task="insertion").empty


def test_data_mix_by_tag(store: EpisodeStore, filled: dict[str, int]) -> None:
    mix = dashboards.data_mix(store.db)
    demos = mix[mix["tag"] == "demo"]
    assert demos[["episodes", "frames"]].values.tolist() == [[2, 40]] and demos["iteration"].isna().all()
    totals = dashboards.mix_by_tag(store.db).set_index("tag")
    assert totals.loc["intervention", "episodes"] == 3 and totals.loc["autonomous", "frames"] == 40
    training = dashboards.mix_by_tag(store.db, training_only=True).set_index("tag")
    assert training.loc["autonomous", "episodes"] == 1  # the rejected one is out


def test_gate_history(store: EpisodeStore, filled: dict[str, int]) -> None:
    history = dashboards.gate_history(store.db)
    assert history["eval_run_id"].nunique() == 2  # the ungated champion baseline is left out
    assert set(history["gate"]) >= {"success_floor", "non_inferiority", "latency"}
    floor = history[history["gate"] == "success_floor"]
    assert floor["passed"].tolist() == [True, False]
    assert floor["reason"].iloc[1].startswith("success 20%")
    assert history.groupby("eval_run_id")["run_passed"].first().tolist() == [True, False]


def test_overview_counts(store: EpisodeStore, filled: dict[str, int]) -> None:
    view = dashboards.overview(store)
    assert (view.episodes, view.frames, view.takeovers, view.labels) == (7, 140, 4, 1)
    assert view.by_tag == {"demo": 2, "autonomous": 2, "intervention": 3}
    assert view.by_review == {"unreviewed": 6, "accepted": 0, "rejected": 1} and view.reviewed == 1


def test_training_curves_from_a_real_run(store: EpisodeStore, tmp_path: Path, torch_one_thread: None) -> None:
    from flywheel.presets import train_config
    from flywheel.train import run_training
    from flywheel.train.synthetic import toy_episode

    cfg = train_config("tiny", {"method": "bc", "steps": 3, "batch_size": 4, "log_every": 1})
    result = run_training(cfg, [toy_episode(i, length=6) for i in range(2)], tmp_path / "run", progress=False)
    registry = PolicyRegistry(store.db)
    version = registry.get(_policy(registry, 1, str(result.checkpoint_dir)))
    curves = dashboards.training_curves(version)
    assert curves.source == tmp_path / "run" / "metrics.jsonl" and curves.note.startswith("from ")
    loss = curves.curves[curves.curves["metric"] == "train/loss"]
    assert loss["step"].tolist() == [1, 2, 3] and loss["value"].notna().all()
    assert set(curves.final["metric"]) == {"train/loss", "train/policy_loss"}  # nested timings skipped

    with (tmp_path / "run" / "metrics.jsonl").open("a") as fh:
        fh.write('{"step": 4, "train/lo')  # a torn last line from a killed run is skipped
    assert dashboards.training_curves(version).curves["step"].max() == 3
    (tmp_path / "run" / "metrics.jsonl").unlink()
    fallback = dashboards.training_curves(version)
    assert fallback.source is None and fallback.curves.empty and "only the final metrics" in fallback.note
    assert len(fallback.final) == 2
    trend = dashboards.final_metrics_by_version(registry.list_versions())
    assert trend[trend["metric"] == "train/loss"]["value"].tolist() == [0.5]


def test_scheduler_status(store: EpisodeStore) -> None:
    empty = dashboards.scheduler_status(store.db)
    assert empty.lock is None and empty.current is None and not empty.running
    book = JobBook(store.db)
    book.ensure_iteration(1, "transfer_cube", max_attempts=3)
    for kind in ("collect", "train"):
        ref = book.claim(1, kind)
        assert ref is not None
        book.succeed(ref, {})
    book.ensure_iteration(2, "transfer_cube", max_attempts=3)
    ref = book.claim(2, "collect")
    assert ref is not None
    book.fail(ref, "RuntimeError: worker died\nTraceback ...")
    book.claim(2, "collect")  # retried: running, attempt 2
    handle = acquire_lock(store.db, "flywheel run (test)")

    status = dashboards.scheduler_status(store.db)
    assert status.running and status.lock is not None and status.lock.holder == "flywheel run (test)"
    assert status.current is not None and status.current.number == 2 and status.current.phase == "collect"
    collect_job = next(j for j in status.current.jobs if j.kind == "collect")
    assert (collect_job.state, collect_job.attempts) == ("running", 2)
    assert collect_job.heartbeat_age_s is not None and collect_job.heartbeat_age_s < 60
    assert status.iterations[1].phase == "eval"  # iteration 1 stopped after train
    assert status.errors == ()  # a re-claimed job's error is cleared by the scheduler
    ref2 = book.claim(1, "eval")
    assert ref2 is not None
    book.fail(ref2, "ValueError: gates config broken\nTraceback ...")
    [error] = dashboards.scheduler_status(store.db).errors
    assert (error.iteration, error.kind, error.error_line) == (1, "eval", "ValueError: gates config broken")

    handle.release()
    with store.db.write() as session:
        session.add(
            SchedulerLock(name="scheduler", holder="old", pid=1, host="x", heartbeat_at=utcnow() - timedelta(minutes=5))
        )
    stale = dashboards.scheduler_status(store.db)
    assert stale.lock is not None and stale.lock.stale and not stale.running
