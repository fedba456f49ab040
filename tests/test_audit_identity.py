"""The audit trail names real people and what the machine saw; undo reaches only your own session's labels."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from flywheel.config import Settings, load_settings
from flywheel.errors import ConfigError
from flywheel.identity import process_identity
from flywheel.registry import CHAMPION, PolicyRegistry, RegistryError
from flywheel.review import ReviewService
from flywheel.review.errors import ReviewError
from flywheel.store import EpisodeStore, NewEpisode
from flywheel.vocab import ControllerKind
from tests.conftest import make_frames
from tests.test_registry import _candidate

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("actor", ["unknown", "", "   ", "al ice", "![x](https://e.example/x.png)"])
def test_forced_promotion_and_rollback_need_a_real_actor(store: EpisodeStore, actor: str) -> None:
    registry = PolicyRegistry(store.db)
    version = _candidate(registry)
    with pytest.raises(RegistryError, match="audited"):
        registry.promote(version, actor=actor, reason="hotfix", force=True)
    with pytest.raises(RegistryError, match="audited"):
        registry.rollback(actor=actor, reason="regressed")
    assert registry.history() == []


def test_rollback_needs_a_reason_and_moves_record_the_machine_identity(store: EpisodeStore) -> None:
    registry = PolicyRegistry(store.db)
    first, second = _candidate(registry), _candidate(registry)
    registry.promote(first, actor="alice", reason="first", force=True)
    registry.promote(second, actor="alice", reason="second", force=True, recorded_by="console:abc root@host")
    with pytest.raises(RegistryError, match="rollback needs a reason"):
        registry.rollback(actor="bob", reason="  ")
    registry.rollback(actor="bob", reason="regressed")
    moves = [(m.actor, m.recorded_by) for m in registry.history(CHAMPION)]
    assert moves == [
        ("alice", process_identity()),
        ("alice", "console:abc root@host"),
        ("bob", process_identity()),
    ]


def test_cli_promotion_refuses_the_unknown_operator(sqlite_settings: Settings) -> None:
    store = EpisodeStore.open(sqlite_settings)
    version = _candidate(PolicyRegistry(store.db))
    env = {**os.environ, "PYTHONPATH": str(REPO), "FLYWHEEL_HOME": str(sqlite_settings.home)}
    env.pop("FLYWHEEL_OPERATOR", None)
    args = [sys.executable, "-m", "flywheel"]
    promote = ["policies", "promote", str(version), "--reason", "hotfix", "--force"]
    anonymous = subprocess.run([*args, *promote], capture_output=True, text=True, env=env, timeout=120, cwd=REPO)
    assert anonymous.returncode == 2 and "real operator name is required" in anonymous.stderr
    named = subprocess.run(
        [*args, "--operator-name", "alice", *promote], capture_output=True, text=True, env=env, timeout=120, cwd=REPO
    )
    assert named.returncode == 0, named.stderr
    (move,) = PolicyRegistry(store.db).history(CHAMPION)
    assert (move.actor, move.recorded_by) == ("alice", process_identity())


def test_operator_names_are_validated_in_settings(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="operator"):
        load_settings({"home": tmp_path, "operator": "**bold** [link](https://e.example)"}, environ={})
    assert load_settings({"home": tmp_path, "operator": "ann_2"}, environ={}).operator == "ann_2"


def test_undo_reaches_only_the_labels_of_your_own_session(store: EpisodeStore) -> None:
    review = ReviewService(store)
    episode = store.add(NewEpisode("transfer_cube", make_frames(controllers=[ControllerKind.EXPERT] * 4), 0, True))
    review.accept(episode.id, author="alice", expected_version=0, recorded_by="console:session-a")
    # Bob, in another session, types alice's name: her label is out of his reach.
    with pytest.raises(ReviewError, match="alice has no label to undo from this session"):
        review.undo_last(author="alice", recorded_by="console:session-b")
    assert review.last_label("alice", "console:session-b") is None
    assert store.get(episode.id).review_status == "accepted"
    undone = review.undo_last(author="alice", recorded_by="console:session-a")
    assert undone.undone and undone.recorded_by == "console:session-a"
    assert store.get(episode.id).review_status == "unreviewed"


@pytest.mark.parametrize("author", ["unknown", " ", "a" * 65, "[x](https://e.example)"])
def test_review_refuses_placeholder_and_markup_authors(store: EpisodeStore, author: str) -> None:
    review = ReviewService(store)
    episode = store.add(NewEpisode("transfer_cube", make_frames(controllers=[ControllerKind.EXPERT] * 4), 0, True))
    with pytest.raises(ReviewError):
        review.accept(episode.id, author=author, expected_version=0)
    assert review.labels(episode.id) == []
