"""Two stores pointed at one checkpoints folder: the second loop (or `flywheel train`) refuses before writing,
so neither deletes the other's checkpoints; `gc --adopt` hands the folder over."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from flywheel.config import Settings
from flywheel.errors import ForeignFolderError
from flywheel.ownership import checkpoints_marker, claim_checkpoints_folder
from flywheel.presets import flywheel_config
from flywheel.scheduler import FlywheelLoop, PhaseContext
from flywheel.scheduler.jobs import JobBook
from flywheel.store import EpisodeFilter, EpisodeStore

REPO = Path(__file__).resolve().parents[1]


def _store(home: Path, checkpoints: Path | None = None) -> tuple[EpisodeStore, Settings]:
    settings = Settings(home=home, checkpoints_dir=checkpoints)
    return EpisodeStore.open(settings), settings


def _flywheel(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flywheel", *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=120
    )


def _attempt(root: Path, name: str = "attempt-1") -> Path:
    attempt = root / "iteration-0001" / name
    attempt.mkdir(parents=True)
    (attempt / "model.safetensors").write_bytes(b"another store's candidate")
    return attempt


def test_a_loop_refuses_a_checkpoints_folder_another_store_marked(tmp_path: Path) -> None:
    shared = tmp_path / "shared-policies"
    first, _ = _store(tmp_path / "first", shared)
    claim_checkpoints_folder(shared, first.owner)  # as the first store's loop does when it starts
    attempt = _attempt(shared)

    second, settings = _store(tmp_path / "second", shared)
    loop = FlywheelLoop(PhaseContext(second, settings, flywheel_config("tiny"), progress=False), Console(quiet=True))
    with pytest.raises(
        ForeignFolderError, match=r"shared-policies belongs to another store \(sqlite:///.*FLYWHEEL_CHECK"
    ):
        loop.run(1)
    assert second.count(EpisodeFilter()) == 0  # refused before seeding or collecting anything
    assert (attempt / "model.safetensors").read_bytes() == b"another store's candidate"
    assert checkpoints_marker(shared).owner() == first.owner


def test_an_unmarked_folder_is_claimed_and_a_marked_one_only_by_adopting(tmp_path: Path) -> None:
    root = tmp_path / "policies"
    _attempt(root)  # a home from before the marker existed
    claim_checkpoints_folder(root, "sqlite:///a.db")
    assert checkpoints_marker(root).owner() == "sqlite:///a.db"
    claim_checkpoints_folder(root, "sqlite:///a.db")  # the owner again: nothing to do
    with pytest.raises(ForeignFolderError, match=r"home was probably moved or copied.*flywheel gc --adopt"):
        claim_checkpoints_folder(root, "sqlite:///b.db")
    claim_checkpoints_folder(root, "sqlite:///b.db", adopt=True)
    assert checkpoints_marker(root).owner() == "sqlite:///b.db"
    assert (root / "iteration-0001" / "attempt-1" / "model.safetensors").is_file()


def test_a_corrupt_marker_counts_as_no_marker(tmp_path: Path) -> None:
    root = tmp_path / "policies"
    root.mkdir()
    checkpoints_marker(root).path.write_text("{not json")
    claim_checkpoints_folder(root, "sqlite:///a.db")
    assert checkpoints_marker(root).owner() == "sqlite:///a.db"


def test_gc_adopt_hands_the_checkpoints_folder_to_this_store(tmp_path: Path) -> None:
    shared = tmp_path / "shared-policies"
    first, _ = _store(tmp_path / "first", shared)
    claim_checkpoints_folder(shared, first.owner)
    second, _ = _store(tmp_path / "second", shared)
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "FLYWHEEL_HOME": str(tmp_path / "second"),
        "FLYWHEEL_CHECKPOINTS_DIR": str(shared),
    }
    for dry_run, owner in ((True, first.owner), (False, second.owner)):
        done = _flywheel(env, "gc", "--adopt", *(["--dry-run"] if dry_run else []))
        assert done.returncode == 0, done.stderr
        assert checkpoints_marker(shared).owner() == owner  # a dry run changes nothing


def test_of_two_stores_claiming_an_unmarked_folder_at_once_one_wins(tmp_path: Path) -> None:
    marker = checkpoints_marker(tmp_path / "policies")
    assert marker.claim_if_unmarked("sqlite:///a.db") == "sqlite:///a.db"
    assert marker.claim_if_unmarked("sqlite:///b.db") == "sqlite:///a.db"  # the second sees the first's claim
    assert sorted(p.name for p in marker.root.iterdir()) == [".flywheel-checkpoints"]  # no temp file left


def test_a_refusal_at_training_is_not_a_failed_attempt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The train phase checks the folder again right before clearing attempts: another store may have marked it
    since the loop started. The refusal leaves the job pending, with its attempts as they were."""
    store, settings = _store(tmp_path / "home")
    ctx = PhaseContext(store, settings, flywheel_config("tiny"), progress=False)
    loop = FlywheelLoop(ctx, Console(quiet=True))
    monkeypatch.setattr(FlywheelLoop, "_claim_checkpoints_folder", lambda self: None)  # marked after the start
    claim_checkpoints_folder(settings.checkpoints_root, "postgresql://db.lab/another")
    attempt = _attempt(settings.checkpoints_root, "attempt-1")
    with pytest.raises(ForeignFolderError, match="another store"):
        loop.run(0)
    train = JobBook(store.db).job(0, "train")
    assert (train.state, train.attempts) == ("pending", 0)
    assert attempt.is_dir() and not (settings.checkpoints_root / "iteration-0000").exists()


def test_flywheel_train_refuses_another_stores_folder(tmp_path: Path) -> None:
    shared = tmp_path / "shared-policies"
    first, _ = _store(tmp_path / "first", shared)
    claim_checkpoints_folder(shared, first.owner)
    env = {**os.environ, "PYTHONPATH": str(REPO), "FLYWHEEL_CHECKPOINTS_DIR": str(shared)}
    done = _flywheel(env, "--home", str(tmp_path / "second"), "train", "--task", "transfer_cube")
    assert done.returncode != 0 and "belongs to another store" in done.stdout + done.stderr
    assert sorted(p.name for p in shared.iterdir()) == [".flywheel-checkpoints"]
