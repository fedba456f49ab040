"""Two stores pointed at one checkpoints folder: the second loop (or `flywheel train`) refuses before writing,
so neither deletes the other's checkpoints; `gc --adopt` hands the folder over."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from flywheel.config import Settings
from flywheel.errors import ForeignFolderError
from flywheel.ownership import checkpoints_marker, claim_checkpoints_folder
from flywheel.presets import flywheel_config
from flywheel.scheduler import FlywheelLoop, PhaseContext
from flywheel.scheduler import loop as scheduler_loop
from flywheel.scheduler.jobs import JobBook
from flywheel.store import EpisodeFilter, EpisodeStore, NewEpisode
from flywheel.store.files import MARKER
from flywheel.vocab import ControllerKind
from tests.conftest import make_frames

REPO = Path(__file__).resolve().parents[1]
E = ControllerKind.EXPERT


def _store(home: Path, checkpoints: Path | None = None) -> tuple[EpisodeStore, Settings]:
    settings = Settings(home=home, checkpoints_dir=checkpoints)
    return EpisodeStore.open(settings), settings


def _flywheel(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """The command, with no FLYWHEEL_* setting from the calling shell (it could name another database)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLYWHEEL_")} | {"PYTHONPATH": str(REPO)} | env
    return subprocess.run(
        [sys.executable, "-m", "flywheel", *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=120
    )


def _attempt(root: Path, iteration: int = 1) -> Path:
    attempt = root / f"iteration-{iteration:04d}" / "attempt-1"
    attempt.mkdir(parents=True)
    (attempt / "model.safetensors").write_bytes(b"another store's candidate")
    return attempt


def test_a_loop_refuses_a_checkpoints_folder_another_store_marked(tmp_path: Path) -> None:
    shared = tmp_path / "shared-policies"
    first, first_settings = _store(tmp_path / "first", shared)
    claim_checkpoints_folder(first_settings, first.owner)  # as the first store's loop does when it starts
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
    settings = Settings(home=tmp_path)  # the home's own folder, tmp_path/policies
    root = settings.checkpoints_root
    _attempt(root)  # a home from before the marker existed
    claim_checkpoints_folder(settings, "sqlite:///a.db")
    assert checkpoints_marker(root).owner() == "sqlite:///a.db"
    claim_checkpoints_folder(settings, "sqlite:///a.db")  # the owner again: nothing to do
    with pytest.raises(ForeignFolderError, match=r"home was probably moved or copied.*flywheel gc --adopt"):
        claim_checkpoints_folder(settings, "sqlite:///b.db")
    claim_checkpoints_folder(settings, "sqlite:///b.db", adopt=True)
    assert checkpoints_marker(root).owner() == "sqlite:///b.db"
    assert (root / "iteration-0001" / "attempt-1" / "model.safetensors").is_file()


def test_a_corrupt_marker_counts_as_no_marker(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    root = settings.checkpoints_root
    root.mkdir()
    checkpoints_marker(root).path.write_text("{not json")
    claim_checkpoints_folder(settings, "sqlite:///a.db")
    assert checkpoints_marker(root).owner() == "sqlite:///a.db"


def test_gc_adopt_hands_the_checkpoints_folder_to_this_store(tmp_path: Path) -> None:
    shared = tmp_path / "shared-policies"
    first, first_settings = _store(tmp_path / "first", shared)
    claim_checkpoints_folder(first_settings, first.owner)
    second, _ = _store(tmp_path / "second", shared)
    env = {"FLYWHEEL_HOME": str(tmp_path / "second"), "FLYWHEEL_CHECKPOINTS_DIR": str(shared)}
    for dry_run, owner in ((True, first.owner), (False, second.owner)):
        done = _flywheel(env, "gc", "--adopt", *(["--dry-run"] if dry_run else []))
        assert done.returncode == 0, done.stderr
        assert checkpoints_marker(shared).owner() == owner  # a dry run changes nothing


def _claim_at_once(root: Path, owner: str, start: Any) -> str:
    start.wait()
    return checkpoints_marker(root).claim_if_unmarked(owner)


def test_of_stores_claiming_an_unmarked_folder_at_once_exactly_one_wins(tmp_path: Path) -> None:
    root = tmp_path / "policies"
    owners = [f"sqlite:///store-{i}.db" for i in range(8)]
    context = multiprocessing.get_context("fork")
    start = context.Manager().Barrier(len(owners))
    with context.Pool(len(owners)) as pool:
        seen = pool.starmap(_claim_at_once, [(root, owner, start) for owner in owners])
    assert len(set(seen)) == 1 and seen[0] in owners  # every claimant sees the one winner
    assert checkpoints_marker(root).owner() == seen[0]
    assert sorted(p.name for p in root.iterdir()) == [".flywheel-checkpoints"]  # no temp file left


def test_a_marker_that_cannot_be_read_is_refused_not_replaced(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    root = settings.checkpoints_root
    checkpoints_marker(root).path.mkdir(parents=True)  # reading it fails (as another user's 0600 file would)
    with pytest.raises(ForeignFolderError, match="cannot read or write the checkpoints folder's marker"):
        claim_checkpoints_folder(settings, "sqlite:///a.db")
    assert checkpoints_marker(root).path.is_dir()


def test_a_killed_claims_temp_file_does_not_make_the_episodes_folder_foreign(tmp_path: Path) -> None:
    store, _ = _store(tmp_path / "home")
    root = store.files.root
    root.mkdir(parents=True)
    (root / f"{MARKER}.0123abcd.tmp").write_text("{")  # a claim killed before its link
    assert store.files.foreign_files() == []
    store.add(NewEpisode(task="transfer_cube", frames=make_frames(controllers=[E] * 4), env_seed=0, success=True))
    assert store.files.marked_owner() == store.owner  # the first write still marks the folder


def test_a_refusal_at_training_is_not_a_failed_attempt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The train phase checks the folder again right before clearing attempts: another store may have marked it
    since the loop started. The refusal leaves the job pending, with its attempts as they were."""
    store, settings = _store(tmp_path / "home")
    ctx = PhaseContext(store, settings, flywheel_config("tiny"), progress=False)
    loop = FlywheelLoop(ctx, Console(quiet=True))
    monkeypatch.setattr(scheduler_loop, "claim_checkpoints_folder", lambda *a, **k: None)  # marked after the start
    claim_checkpoints_folder(settings, "postgresql://db.lab/another")
    attempt = _attempt(settings.checkpoints_root, iteration=0)  # the other store's, where this one would train
    with pytest.raises(ForeignFolderError, match="another store"):
        loop.run(0)
    train = JobBook(store.db).job(0, "train")
    assert (train.state, train.attempts) == ("pending", 0)
    assert (attempt / "model.safetensors").read_bytes() == b"another store's candidate"


def test_flywheel_train_refuses_another_stores_folder(tmp_path: Path) -> None:
    shared = tmp_path / "shared-policies"
    first, first_settings = _store(tmp_path / "first", shared)
    claim_checkpoints_folder(first_settings, first.owner)
    env = {"FLYWHEEL_CHECKPOINTS_DIR": str(shared)}
    done = _flywheel(env, "--home", str(tmp_path / "second"), "train", "--task", "transfer_cube")
    assert done.returncode != 0 and "belongs to another store" in done.stdout + done.stderr
    assert sorted(p.name for p in shared.iterdir()) == [".flywheel-checkpoints"]
