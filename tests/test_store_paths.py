"""A shared database cannot point the store at other files: row paths, gc ownership, private files (SQLite)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import update

from flywheel.config import Settings
from flywheel.errors import EpisodeFileError, StoreError
from flywheel.store import EpisodeStore, NewEpisode
from flywheel.store.files import MARKER
from flywheel.store.models import Episode
from flywheel.vocab import ControllerKind
from tests.conftest import make_frames

E = ControllerKind.EXPERT
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def sqlite_store(sqlite_settings: Settings) -> Iterator[EpisodeStore]:
    store = EpisodeStore.open(sqlite_settings)
    yield store
    store.db.dispose()


def _add(store: EpisodeStore, seed: int = 0) -> int:
    frames = make_frames(controllers=[E] * 6, seed=seed)
    return store.add(NewEpisode(task="transfer_cube", frames=frames, env_seed=seed, success=True)).id


def _point_at(store: EpisodeStore, episode_id: int, uri: str) -> None:
    with store.db.write() as session:
        session.execute(update(Episode).where(Episode.id == episode_id).values(file_uri=uri))


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "FLYWHEEL_HOME": str(settings.home)}
    return subprocess.run(
        [sys.executable, "-m", "flywheel", *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=120
    )


@pytest.mark.parametrize("kind", ["absolute", "dotdot", "not_layout"])
def test_row_paths_outside_the_layout_are_never_read_or_deleted(
    sqlite_store: EpisodeStore, sqlite_settings: Settings, tmp_path: Path, kind: str
) -> None:
    victim = tmp_path / "victim.safetensors"
    victim.write_bytes(b"operator's file")
    episode_id = _add(sqlite_store)
    uri = {
        "absolute": str(victim),
        "dotdot": "../../victim.safetensors",
        "not_layout": "ab/victim.safetensors",
    }[kind]
    _point_at(sqlite_store, episode_id, uri)
    with pytest.raises(EpisodeFileError, match=f"episode {episode_id} names file .* not a store file"):
        sqlite_store.read_frames(episode_id)
    with pytest.raises(EpisodeFileError, match=f"episode {episode_id}"):
        sqlite_store.delete(episode_id)
    assert sqlite_store.get(episode_id).id == episode_id  # refused before anything was removed

    shown = _cli(sqlite_settings, "episodes", "show", str(episode_id))
    deleted = _cli(sqlite_settings, "episodes", "delete", str(episode_id), "--yes")
    for result in (shown, deleted):
        assert result.returncode == 2, result.stderr
        assert f"episode {episode_id} names file" in result.stderr and "refusing" in result.stderr
    assert victim.read_bytes() == b"operator's file"


def test_symlinked_episode_file_is_refused(sqlite_store: EpisodeStore, tmp_path: Path) -> None:
    episode_id = _add(sqlite_store)
    uri = sqlite_store.get(episode_id).file_uri
    victim = tmp_path / "victim.bin"
    victim.write_bytes(b"keep me")
    path = sqlite_store.files.root / uri
    path.unlink()
    path.symlink_to(victim)
    with pytest.raises(EpisodeFileError, match="outside the episodes directory"):
        sqlite_store.delete(episode_id)
    assert victim.read_bytes() == b"keep me"


def test_store_marks_its_directory_and_gc_keeps_foreign_files(sqlite_store: EpisodeStore) -> None:
    kept = _add(sqlite_store)
    root = sqlite_store.files.root
    assert sqlite_store.files.marked_owner() == sqlite_store.db.safe_url
    orphan = sqlite_store.files.write(make_frames(controllers=[E] * 4))
    foreign = root / "ab" / "model.safetensors"
    foreign.parent.mkdir(exist_ok=True)
    foreign.write_bytes(b"someone's weights")
    report = sqlite_store.gc()
    assert report.removed == (orphan.uri,)
    assert foreign.read_bytes() == b"someone's weights"
    sqlite_store.read_frames(kept)


def test_gc_refuses_an_unmarked_shared_directory_until_adopted(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "notes.txt").write_text("not flywheel's")
    (shared / "weights.safetensors").write_bytes(b"not flywheel's either")
    store = EpisodeStore.open(Settings(home=tmp_path / "home", episodes_dir=shared))
    _add(store)
    assert not (shared / MARKER).exists()  # a write does not claim a directory holding other files
    with pytest.raises(StoreError, match=r"not marked as a flywheel episodes directory.*gc --adopt"):
        store.gc()
    orphan = store.files.write(make_frames(controllers=[E] * 4))
    assert store.gc(adopt=True).removed == (orphan.uri,)
    assert (shared / "weights.safetensors").exists() and (shared / "notes.txt").exists()
    assert store.files.marked_owner() == store.db.safe_url


def test_gc_adopts_a_pre_marker_directory_holding_only_store_files(sqlite_store: EpisodeStore) -> None:
    kept = _add(sqlite_store)
    (sqlite_store.files.root / MARKER).unlink()  # a home created before the marker existed
    assert sqlite_store.gc().removed == ()
    assert sqlite_store.files.marked_owner() == sqlite_store.db.safe_url
    sqlite_store.read_frames(kept)


def test_gc_refuses_a_directory_another_store_marked(sqlite_store: EpisodeStore, tmp_path: Path) -> None:
    _add(sqlite_store)
    other = EpisodeStore.open(Settings(home=tmp_path / "other", episodes_dir=sqlite_store.files.root))
    with pytest.raises(StoreError, match="belongs to the store at"):
        other.gc()
    other.db.dispose()


def test_home_database_and_episode_files_are_private(sqlite_store: EpisodeStore, sqlite_settings: Settings) -> None:
    episode_id = _add(sqlite_store)
    home = sqlite_settings.home
    path = sqlite_store.files.path_for(sqlite_store.get(episode_id).file_uri)
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE((home / "flywheel.db").stat().st_mode) == 0o600
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(sqlite_store.files.root.stat().st_mode) == 0o700


def test_checkpoints_are_private(tmp_path: Path) -> None:
    import torch

    from flywheel.policy.checkpoint import write_checkpoint

    directory = tmp_path / "policies" / "v1"
    write_checkpoint(directory, {"model": {"w": torch.zeros(2)}}, {"config": {"a": 1}})
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert {stat.S_IMODE(p.stat().st_mode) for p in directory.iterdir()} == {0o600}
