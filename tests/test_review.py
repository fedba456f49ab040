"""Review service on SQLite and PostgreSQL: queue order, verdicts, conflicts, undo, frames removed, taxonomy."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from flywheel.config import Settings
from flywheel.errors import ConfigError
from flywheel.registry import PolicyRegistry
from flywheel.review import (
    FailureTaxonomy,
    ReviewConflictError,
    ReviewError,
    ReviewService,
    load_taxonomy,
)
from flywheel.store import EpisodeStore, NewEpisode
from flywheel.store.models import Label
from flywheel.vocab import ControllerKind
from tests.conftest import make_frames

P, H, E = ControllerKind.POLICY, ControllerKind.HUMAN, ControllerKind.EXPERT


def _policy(store: EpisodeStore) -> int:
    return (
        PolicyRegistry(store.db)
        .register_candidate(
            task="transfer_cube", checkpoint_uri="ckpt", sha256="0" * 64, config={}, data_fingerprint={}, metrics={}
        )
        .id
    )


def _add(store: EpisodeStore, controllers: list[ControllerKind], policy: int | None, seed: int = 0) -> int:
    frames = make_frames(controllers=controllers, seed=seed)
    episode = NewEpisode(task="transfer_cube", frames=frames, env_seed=seed, success=False, policy_version_id=policy)
    return store.add(episode).id


@pytest.fixture
def review(store: EpisodeStore) -> ReviewService:
    return ReviewService(store)


def test_queue_puts_interventions_first_then_oldest(store: EpisodeStore, review: ReviewService) -> None:
    policy = _policy(store)
    demo = _add(store, [E] * 10, None, 1)
    auto = _add(store, [P] * 10, policy, 2)
    first_intervention = _add(store, [P] * 5 + [H] * 5, policy, 3)
    accepted = _add(store, [P] * 5 + [E] * 5, policy, 4)
    second_intervention = _add(store, [P] * 3 + [E] * 4 + [P] * 3, policy, 5)
    review.accept(accepted, author="alice", expected_version=0)
    queue = review.queue()
    assert [r.id for r in queue] == [first_intervention, second_intervention, demo, auto]
    assert review.queue_size() == 4
    assert [len(r.segments) for r in queue[:2]] == [2, 3]
    assert [r.id for r in review.queue(limit=2, offset=1)] == [second_intervention, demo]
    assert review.queue(task="insertion") == []


def test_accept_reject_and_frames_removed(store: EpisodeStore, review: ReviewService) -> None:
    policy = _policy(store)
    keep = _add(store, [P] * 30, policy, 1)
    drop = _add(store, [P] * 20 + [H] * 20, policy, 2)
    impact = review.rejection_impact(drop)
    assert (impact.episode_frames, impact.frames_removed, impact.training_frames) == (40, 40, 70)
    assert impact.fraction == pytest.approx(40 / 70)

    label = review.accept(keep, author="alice", expected_version=0, note="clean run")
    assert (label.verdict, label.previous_status, label.note) == ("accepted", "unreviewed", "clean run")
    record = store.get(keep)
    assert (record.review_status, record.review_version) == ("accepted", 1)

    segment = store.get(drop).segments[1]
    review.reject(drop, author="bob", expected_version=0, failure_mode="collision", segment_id=segment.id)
    assert store.get(drop).review_status == "rejected"
    after = review.rejection_impact(drop)
    assert (after.frames_removed, after.training_frames) == (0, 30)  # already out of training
    [stored] = review.labels(drop)
    assert (stored.author, stored.failure_mode, stored.segment_id) == ("bob", "collision", segment.id)
    assert review.queue() == []


def test_second_writer_gets_a_conflict_naming_the_first(store: EpisodeStore, review: ReviewService) -> None:
    episode = _add(store, [P] * 10 + [H] * 10, _policy(store))
    seen = store.get(episode).review_version  # both operators opened the episode at this version
    review.accept(episode, author="alice", expected_version=seen)
    with pytest.raises(ReviewConflictError, match=r"changed by alice at .*accept; status now accepted") as info:
        review.label(episode, author="bob", expected_version=seen, failure_mode="stuck", note="froze")
    assert info.value.changed_by == "alice" and info.value.changed_at is not None
    assert [label.author for label in review.labels(episode)] == ["alice"]  # bob's write did not land
    # Bob reloads (new version) and his label goes through.
    review.label(episode, author="bob", expected_version=store.get(episode).review_version, failure_mode="stuck")
    assert [label.author for label in review.labels(episode)] == ["alice", "bob"]
    assert store.get(episode).review_status == "accepted"


def test_simultaneous_writers_exactly_one_wins(store: EpisodeStore, review: ReviewService) -> None:
    episode = _add(store, [P] * 10 + [H] * 10, _policy(store))
    barrier = threading.Barrier(2)
    outcomes: dict[str, str] = {}

    def write(author: str, verdict: str) -> None:
        barrier.wait()
        try:
            review.review(episode, author=author, expected_version=0, verdict=verdict)
            outcomes[author] = "saved"
        except ReviewConflictError:
            outcomes[author] = "conflict"

    threads = [threading.Thread(target=write, args=a) for a in (("alice", "accepted"), ("bob", "rejected"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(outcomes.values()) == ["conflict", "saved"]
    winner = next(a for a, o in outcomes.items() if o == "saved")
    assert [label.author for label in review.labels(episode)] == [winner]
    assert store.get(episode).review_version == 1


def test_a_write_waits_for_a_concurrent_writer_instead_of_failing(store: EpisodeStore, review: ReviewService) -> None:
    """A scheduler holding a write transaction delays a review; it never surfaces "database is locked"."""
    episode = _add(store, [P] * 10 + [H] * 10, _policy(store))
    holding = threading.Event()

    def scheduler_write() -> None:
        with store.db.write() as session:
            session.add(Label(episode_id=episode, author="scheduler", note="busy"))
            holding.set()
            time.sleep(1.0)

    writer = threading.Thread(target=scheduler_write)
    writer.start()
    assert holding.wait(10)
    started = time.perf_counter()
    review.accept(episode, author="alice", expected_version=0)
    writer.join(10)
    assert store.get(episode).review_status == "accepted"
    if store.db.url.startswith("sqlite"):
        assert time.perf_counter() - started > 0.5  # it waited for the lock


def test_undo_restores_status_and_keeps_the_label(store: EpisodeStore, review: ReviewService) -> None:
    policy = _policy(store)
    first = _add(store, [P] * 10 + [H] * 10, policy, 1)
    second = _add(store, [P] * 10, policy, 2)
    review.accept(first, author="alice", expected_version=0)
    review.reject(first, author="alice", expected_version=1)
    review.label(second, author="alice", expected_version=0, failure_mode="missed_grasp")
    assert review.last_label("alice").episode_id == second  # type: ignore[union-attr]

    undone = review.undo_last(author="alice")  # the failure-mode label: status untouched
    assert (undone.episode_id, undone.undone) == (second, True)
    assert store.get(second).review_status == "unreviewed"
    undone = review.undo_last(author="alice")  # the reject: back to accepted
    assert undone.verdict == "rejected" and store.get(first).review_status == "accepted"
    undone = review.undo_last(author="alice")  # the accept: back to unreviewed
    assert store.get(first).review_status == "unreviewed"
    assert [lab.undone for lab in review.labels(first)] == [True, True]  # marked, not deleted
    assert store.get(first).review_version == 4
    with pytest.raises(ReviewError, match="alice has no label to undo"):
        review.undo_last(author="alice")


def test_undo_is_refused_when_someone_labelled_after(store: EpisodeStore, review: ReviewService) -> None:
    episode = _add(store, [P] * 10 + [H] * 10, _policy(store))
    review.accept(episode, author="alice", expected_version=0)
    review.reject(episode, author="bob", expected_version=1, note="gripper slips at the end")
    with pytest.raises(ReviewConflictError, match=r"changed by bob .*reject"):
        review.undo_last(author="alice")
    assert store.get(episode).review_status == "rejected"
    review.undo_last(author="bob", episode_id=episode)
    review.undo_last(author="alice", episode_id=episode)
    assert store.get(episode).review_status == "unreviewed"


def test_bad_input_is_refused(store: EpisodeStore, review: ReviewService) -> None:
    policy = _policy(store)
    episode = _add(store, [P] * 10 + [H] * 10, policy, 1)
    other = _add(store, [P] * 5 + [E] * 5, policy, 2)
    foreign_segment = store.get(other).segments[0].id
    with pytest.raises(ReviewError, match="unknown failure mode 'gremlins': use one of missed_grasp"):
        review.label(episode, author="alice", expected_version=0, failure_mode="gremlins")
    with pytest.raises(ReviewError, match="enter your operator name"):
        review.accept(episode, author="  ", expected_version=0)
    with pytest.raises(ReviewError, match=f"segment {foreign_segment} is not part of episode {episode}"):
        review.label(episode, author="alice", expected_version=0, failure_mode="stuck", segment_id=foreign_segment)
    with pytest.raises(ReviewError, match="nothing to save"):
        review.review(episode, author="alice", expected_version=0, note="   ")
    with pytest.raises(ReviewError, match="unknown verdict"):
        review.review(episode, author="alice", expected_version=0, verdict="maybe")
    assert review.labels(episode) == [] and store.get(episode).review_version == 0


def test_taxonomy_from_yaml(sqlite_settings: Settings, tmp_path: Path) -> None:
    assert load_taxonomy(sqlite_settings).names[:2] == ["missed_grasp", "dropped_object"]
    home = sqlite_settings.home
    home.mkdir(parents=True)
    (home / "taxonomy.yaml").write_text(
        "failure_modes:\n  - {name: slipped, description: lost it while carrying}\n  - wrong_peg\n"
    )
    taxonomy = load_taxonomy(sqlite_settings)
    assert taxonomy.names == ["slipped", "wrong_peg"]
    assert taxonomy.failure_modes[0].description == "lost it while carrying"
    bad = tmp_path / "bad.yaml"
    bad.write_text("failure_modes: [Slipped!]\n")
    with pytest.raises(ConfigError, match=r"invalid taxonomy in .*bad.yaml \(failure_modes.0.name: String should"):
        load_taxonomy(sqlite_settings, bad)
    bad.write_text("failure_modes: [stuck, stuck]\n")
    with pytest.raises(ConfigError, match="duplicate failure modes"):
        load_taxonomy(sqlite_settings, bad)
    bad.write_text("failure_modes: []\n")
    with pytest.raises(ConfigError, match="at least 1"):
        load_taxonomy(sqlite_settings, bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_taxonomy(sqlite_settings, tmp_path / "missing.yaml")


def test_custom_taxonomy_is_enforced(store: EpisodeStore) -> None:
    review = ReviewService(store, FailureTaxonomy(failure_modes=["slipped"]))  # type: ignore[list-item]
    episode = _add(store, [P] * 10 + [H] * 10, _policy(store))
    with pytest.raises(ReviewError, match="use one of slipped"):
        review.label(episode, author="alice", expected_version=0, failure_mode="stuck")
    assert review.label(episode, author="alice", expected_version=0, failure_mode="slipped").failure_mode == "slipped"
