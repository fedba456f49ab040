"""Console pages under streamlit.testing.v1.AppTest, on a real SQLite store filled by real collection:
expert demos with camera images, a tiny trained policy, a real eval run with gates, episodes where the
simulated operator took over, and scheduler rows written by the scheduler's own JobBook."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from flywheel.config import Settings
from flywheel.live.episode_video import unpack_video, views_dir
from flywheel.live.video_route import video_url
from flywheel.registry import PolicyRegistry
from flywheel.review import ReviewService
from flywheel.scheduler.lock import SchedulerLockHandle
from flywheel.store import EpisodeStore, NewEpisode

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "app"
TIMEOUT = 60
TINY_MODEL = {
    "encoder": {"hidden_dim": 32},
    "expert": {"chunk": 4, "dim": 32, "layers": 1, "heads": 2},
    "critic": {"hidden_dim": 32},
    "inference": {"execute_steps": 4, "num_steps": 2},
}


@dataclass(frozen=True)
class Console:
    settings: Settings
    store: EpisodeStore
    demos: list[int]
    interventions: list[int]
    policy_id: int
    scheduler: SchedulerLockHandle  # the lock a running scheduler would hold


def _fill(settings: Settings) -> Console:
    import torch

    from flywheel.collect import CollectSpec, collect
    from flywheel.collect.seeds import collection_seeds, demo_seeds
    from flywheel.evaluate.gates import GateConfig
    from flywheel.evaluate.runner import EvalConfig, Evaluator
    from flywheel.scheduler.jobs import JobBook
    from flywheel.scheduler.lock import acquire_lock
    from flywheel.train import load_training_episodes, run_training
    from flywheel.train.config import parse_config
    from tests.live_support import random_takeover_spec

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        store = EpisodeStore.open(settings)
        demos = CollectSpec.for_demos("transfer_cube", obs_mode="pixels", image_size=(48, 64), max_steps=60)
        demo_ids = collect(store, demos, demo_seeds(2), workers=1, progress=False).episode_ids
        cfg = parse_config(
            {
                "method": "recap",
                "steps": 3,
                "critic_steps": 3,
                "batch_size": 8,
                "wandb": False,
                "cpu_threads": 1,
                "log_every": 1,
                "warmup_steps": 1,
                "model": TINY_MODEL,
            }
        )
        result = run_training(
            cfg, load_training_episodes(store, "transfer_cube"), settings.checkpoints_root / "v1", progress=False
        )
        registry = PolicyRegistry(store.db)
        policy = registry.register_candidate(
            task="transfer_cube",
            checkpoint_uri=str(result.checkpoint_dir),
            sha256=result.sha256,
            config={**cfg.model_dump(mode="json"), "obs_mode": "state"},
            data_fingerprint=result.data_fingerprint,
            metrics=dict(result.metrics),
            iteration=0,
        )
        gates = GateConfig(success_floor=0.0, latency_p95_budget_ms=10_000)
        Evaluator(store, EvalConfig(episodes=2, workers=1, max_steps=20, gates=gates), progress=False).evaluate(
            policy.id, iteration=0
        )
        registry.promote(policy.id, actor="ci", reason="first policy")
        spec = random_takeover_spec(policy, 1, max_steps=60, probability=0.1, min_policy_steps=5, handback=15)
        report = collect(store, spec, collection_seeds(1, 2), workers=1, progress=False)
        book = JobBook(store.db)
        book.ensure_iteration(1, "transfer_cube", max_attempts=3)
        ref = book.claim(1, "collect")
        assert ref is not None
        book.succeed(ref, {"episodes": 2})
        ref = book.claim(1, "train")
        assert ref is not None
        book.fail(ref, "RuntimeError: trainer ran out of memory\nTraceback (most recent call last): ...")
        scheduler = acquire_lock(store.db, "flywheel run (console test)")
    finally:
        torch.set_num_threads(threads)
    interventions = [i for i in report.episode_ids if store.get(i).tag == "intervention"]
    assert len(demo_ids) == 2 and interventions, "collection should yield demos and at least one takeover"
    return Console(settings, store, demo_ids, interventions, policy.id, scheduler)


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    home = tmp_path_factory.mktemp("console") / "home"
    with pytest.MonkeyPatch.context() as mp:
        for name in ("FLYWHEEL_DB_URL", "FLYWHEEL_CONFIG", "FLYWHEEL_OPERATOR", "FLYWHEEL_CONSOLE_PASSWORD"):
            mp.delenv(name, raising=False)
        mp.setenv("FLYWHEEL_HOME", str(home))
        filled = _fill(Settings(home=home))
        yield filled
        filled.store.db.dispose()


def page(name: str, operator: str | None = "alice", **query: str) -> AppTest:
    at = AppTest.from_file(str(APP / "views" / f"{name}.py"), default_timeout=TIMEOUT)
    if operator is not None:
        at.session_state["operator"] = operator
    for key, value in query.items():
        at.query_params[key] = value
    return at.run()


def texts(elements: object) -> str:
    return "\n".join(str(e.value) for e in elements)  # type: ignore[attr-defined]


def charts(at: AppTest) -> int:
    return len(at.get("vega_lite_chart"))


def player(at: AppTest) -> dict:
    """The data the page gave the episode player (app/player_component.py)."""
    [mounted] = [e for e in at.get("bidi_component") if "episode_player" in e.proto.component_name]
    return json.loads(mounted.proto.json)


def button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


def test_console_shell_lists_pages_and_asks_who_is_operating(console: Console) -> None:
    at = AppTest.from_file(str(APP / "console.py"), default_timeout=TIMEOUT).run()
    assert not at.exception
    name = at.sidebar.text_input[0]
    assert (name.label, name.value) == ("Operator name", "")
    assert "Enter your name" in texts(at.sidebar.caption) and "sqlite" in texts(at.sidebar.caption)
    # Switching shows each page renders under the shell; identity is checked below with the helper itself.
    for path, title in (("views/review.py", "Review & label"), ("views/jobs.py", "Jobs")):
        at.switch_page(path).run()
        assert not at.exception and [t.value for t in at.title] == [title]


IDENTITY_SCRIPT = """
import streamlit as st
from app.common import current_operator, operator_sidebar
operator_sidebar()
st.markdown(f"operator={current_operator()}")
"""


def test_operator_name_is_kept_for_the_session(console: Console, monkeypatch: pytest.MonkeyPatch) -> None:
    at = AppTest.from_string(IDENTITY_SCRIPT, default_timeout=TIMEOUT).run()
    assert "operator=None" in texts(at.markdown)
    at.sidebar.text_input[0].input("  carol ").run()
    assert "operator=carol" in texts(at.markdown)
    at.run()
    assert "operator=carol" in texts(at.markdown) and at.session_state["operator"] == "carol"
    monkeypatch.setenv("FLYWHEEL_OPERATOR", "dave")
    prefilled = AppTest.from_string(IDENTITY_SCRIPT, default_timeout=TIMEOUT).run()
    assert "operator=dave" in texts(prefilled.markdown)


def test_password_gate(console: Console, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the session cookie the guard signs (a script run outside `flywheel console`), nothing renders and
    there is no password form to guess at: the only way in is the guard's throttled sign-in."""
    monkeypatch.setenv("FLYWHEEL_CONSOLE_PASSWORD", "correct horse battery")
    at = AppTest.from_file(str(APP / "console.py"), default_timeout=TIMEOUT).run()
    assert [t.value for t in at.title] == ["flywheel console"] and not at.sidebar.text_input and not at.text_input
    assert "Sign in first" in texts(at.error)
    # A page file run on its own is gated too.
    direct = page("review")
    assert [t.value for t in direct.title] == ["flywheel console"] and not direct.dataframe


def test_episodes_page_filters_and_shows_an_episode(console: Console) -> None:
    at = page("episodes")
    assert not at.exception
    total = console.store.count()
    assert f"{total} of {total} matching episodes" in texts(at.caption)
    # The newest episode is a state-only policy rollout with takeovers: re-rendered into a cached video file the
    # player fetches from the console's route, with its segments, takeover marks and plots.
    assert "No camera images were recorded" in texts(at.caption)
    newest = console.store.get(at.selectbox(key="ep_selected").value)
    data = player(at)
    assert data["episode"] == newest.id and data["length"] == newest.length and data["fps"] == 50
    cached = views_dir(console.settings.home) / data["video"].rsplit("/", 1)[1]
    assert data["video"] == video_url(cached.name)
    assert set(unpack_video(cached.read_bytes())) == {"top", "left_wrist", "right_wrist"}
    assert [(s["start"], s["end"], s["controller"]) for s in data["segments"]] == [
        (s.start, s.end, s.controller) for s in newest.segments
    ]
    takeovers = [s for s in newest.segments if s.controller != "policy"]
    assert takeovers and sorted(m["step"] for m in data["marks"] if m["kind"] == "start") == [
        s.start for s in takeovers
    ]
    assert [p["title"] for p in data["plots"]] == ["state", "executed action"]
    assert [len(p["series"]) for p in data["plots"]] == [7, 7]
    assert len(data["plots"][0]["series"][0]["values"]) == newest.length
    at.multiselect(key="episodes_state_dims").set_value(["box_pose:z"]).run()
    assert [s["name"] for s in player(at)["plots"][0]["series"]] == ["box_pose:z"]
    at.selectbox(key="ep_tag").select("demo").run()
    assert f"{len(console.demos)} of {len(console.demos)} matching episodes" in texts(at.caption)
    demo = console.store.get(at.selectbox(key="ep_selected").value)
    assert demo.id in console.demos
    data = player(at)  # recorded cameras: encoded as they are, nothing to mark
    assert unpack_video((views_dir(console.settings.home) / data["video"].rsplit("/", 1)[1]).read_bytes()).keys() == {
        "top"
    }
    assert data["marks"] == [] and data["length"] == demo.length
    assert "No camera images were recorded" not in texts(at.caption)
    at.selectbox(key="ep_tag").select("any")
    at.selectbox(key="ep_review").select("rejected").run()
    assert "No episode matches these filters" in texts(at.info)
    at.selectbox(key="ep_review").select("any")
    today = datetime.now(UTC).date()
    at.date_input(key="ep_since").set_value(today).run()
    assert f"{total} of {total} matching episodes" in texts(at.caption)
    at.date_input(key="ep_since").set_value(today + timedelta(days=2)).run()
    assert "No episode matches these filters" in texts(at.info)


def test_review_page_labels_accepts_and_undoes(console: Console) -> None:
    review = ReviewService(console.store)
    at = page("review")
    assert not at.exception
    first = at.selectbox(key="review_pick").value
    assert first in console.interventions  # interventions first
    impact = review.rejection_impact(first)
    assert f"Rejecting removes **{impact.frames_removed} frames**" in texts(at.info)

    at.selectbox(key="review_failure_mode").select("stuck")
    at.text_area(key="review_note").input("froze above the cube")
    button(at, "Save label").click().run()
    assert not at.exception and "Labelled episode" in texts(at.success)
    [label] = review.labels(first)
    assert (label.author, label.failure_mode, label.note) == ("alice", "stuck", "froze above the cube")

    button(at, "Accept episode").click().run()
    assert console.store.get(first).review_status == "accepted"
    assert f"Episode {first} accepted by alice" in texts(at.success)
    assert at.selectbox(key="review_pick").value != first  # the queue moved on

    button(at, "Undo my last label").click().run()
    assert "Undid your accept" in texts(at.success)
    assert console.store.get(first).review_status == "unreviewed"
    assert [lab.undone for lab in review.labels(first)] == [False, True]


def test_review_page_reports_a_conflict(console: Console) -> None:
    review = ReviewService(console.store)
    at = page("review", operator="alice")
    shown = at.selectbox(key="review_pick").value
    version = console.store.get(shown).review_version
    review.accept(shown, author="bob", expected_version=version)  # another operator, same episode, meanwhile
    button(at, "Reject episode").click().run()
    assert not at.exception
    assert f"Conflict: episode {shown} was changed by bob" in texts(at.error)
    assert console.store.get(shown).review_status == "accepted"  # bob's verdict stands
    assert [lab.author for lab in review.labels(shown) if not lab.undone][-1] == "bob"
    review.undo_last(author="bob")


def test_review_page_refuses_writes_without_a_name(console: Console) -> None:
    at = page("review", operator=None)
    assert "Enter your operator name in the sidebar to review and label" in texts(at.warning)
    assert button(at, "Accept episode").disabled and button(at, "Save label").disabled


def test_missing_episode_file_is_an_error_not_a_crash(console: Console) -> None:
    source = console.store.get(console.demos[0])
    frames = console.store.read_record_frames(source)
    broken = console.store.add(NewEpisode(task="transfer_cube", frames=frames, env_seed=source.env_seed, success=True))
    console.store.files.path_for(broken.file_uri).unlink()
    try:
        for name in ("episodes", "review"):
            at = page(name, episode=str(broken.id))
            assert not at.exception
            assert f"Cannot show the frames of episode {broken.id}" in texts(at.error)
            assert "is missing" in texts(at.error)
    finally:
        console.store.delete(broken.id)


def test_dashboards_page_draws_charts_and_counts_reviews(console: Console) -> None:
    at = page("dashboards")
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Episodes"] == str(console.store.count())
    reviewed = int(metrics["Reviewed episodes"])
    assert charts(at) >= 7  # success ×2, takeovers ×2, data mix ×2, gates, training curve
    assert "from " in texts(at.caption) and "metrics.jsonl" in texts(at.caption)

    episode = ReviewService(console.store).queue()[0]
    ReviewService(console.store).reject(episode.id, author="alice", expected_version=episode.review_version)
    at.run()
    assert int({m.label: m.value for m in at.metric}["Reviewed episodes"]) == reviewed + 1
    ReviewService(console.store).undo_last(author="alice")


def test_policies_page_shows_lineage_evidence_and_audits_promotion(console: Console) -> None:
    registry = PolicyRegistry(console.store.db)
    parent = registry.get(console.policy_id)
    child = registry.register_candidate(
        task="transfer_cube",
        checkpoint_uri=parent.checkpoint_uri,
        sha256=parent.sha256,
        config=parent.config,
        data_fingerprint=parent.data_fingerprint,
        metrics={},
        parent_id=parent.id,
        iteration=1,
    )
    at = page("policies")
    assert not at.exception
    [dot] = at.get("graphviz_chart")
    assert f"v{parent.id} -> v{child.id}" in dot.proto.spec  # type: ignore[attr-defined]
    assert any("eval run" in e.label and "passed" in e.label for e in at.expander)
    gate_tables = [df.value for df in at.dataframe if "gate" in df.value.columns]
    assert gate_tables and "success_floor" in set(gate_tables[0]["gate"])

    at.selectbox(key="pol_version").select(child.id).run()
    button(at, "Promote to champion").click().run()
    assert "needs a reason" in texts(at.error)
    at.text_input(key="promote_reason").input("try it")
    button(at, "Promote to champion").click().run()
    assert f"policy {child.id} cannot be promoted: no eval run" in texts(at.error)
    at.text_input(key="promote_reason").input("operator override for the console test")
    at.checkbox(key="promote_force").check()
    button(at, "Promote to champion").click().run()
    assert f"v{child.id} is now champion (by alice, forced)" in texts(at.success)
    last = registry.history("champion")[-1]
    assert (last.actor, last.forced, last.to_version_id) == ("alice", True, child.id)

    at.text_input(key="rollback_reason").input("regressed on the cube")
    button(at, "Roll back champion").click().run()
    assert f"v{parent.id} is champion again" in texts(at.success)
    assert registry.history("champion")[-1].reason == "rollback: regressed on the cube"


def test_jobs_page_shows_lock_phase_and_errors(console: Console) -> None:
    console.scheduler.heartbeat()  # as the running scheduler does; the module's earlier tests may outlast a minute
    at = page("jobs", operator=None)
    assert not at.exception
    assert "Scheduler running: **flywheel run (console test)**" in texts(at.success)
    metrics = {m.label: m.value for m in at.metric}
    assert (metrics["Iteration"], metrics["Phase"]) == ("1", "train")
    assert any("RuntimeError: trainer ran out of memory" in e.label for e in at.expander)
