"""`flywheel fork`: a new home holding a store as it stood when one loop iteration finished."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select, text

from flywheel.config import Settings
from flywheel.fork import ForkError, fork_store
from flywheel.ownership import checkpoints_marker
from flywheel.redact import database_identity
from flywheel.registry import PolicyRegistry
from flywheel.review.service import ReviewService
from flywheel.store import EpisodeStore, NewEpisode
from flywheel.store.models import Base, Iteration, utcnow
from flywheel.train.synthetic import toy_episode


def _add_episode(store: EpisodeStore, seed: int, version: int | None, iteration: int | None) -> int:
    controllers = "expert" if version is None else ["policy"] * 5 + ["expert"] * 3
    _, frames = toy_episode(seed, controllers, length=8)
    return store.add(
        NewEpisode("toy_reach", frames, env_seed=seed, success=True, policy_version_id=version, iteration=iteration)
    ).id


def _add_version(store: EpisodeStore, registry: PolicyRegistry, iteration: int) -> int:
    folder = store_home(store) / "policies" / f"iteration-{iteration:04d}" / "attempt-1"
    folder.mkdir(parents=True)
    (folder / "policy.safetensors").write_bytes(b"weights of iteration %d" % iteration)
    return registry.register_candidate(
        task="toy_reach",
        checkpoint_uri=str(folder),
        sha256="0" * 64,
        config={},
        data_fingerprint={},
        metrics={},
        iteration=iteration,
    ).id


def store_home(store: EpisodeStore) -> Path:
    return store.files.root.parent


def _finish(store: EpisodeStore, number: int, done: bool = True) -> None:
    with store.db.write() as session:
        session.add(
            Iteration(
                number=number,
                task="toy_reach",
                state="done" if done else "running",
                finished_at=utcnow() if done else None,
            )
        )


def _finish_iteration(store: EpisodeStore, number: int) -> None:
    with store.db.write() as session:
        row = session.scalars(select(Iteration).where(Iteration.number == number)).one()
        row.state, row.finished_at = "done", utcnow()


@pytest.fixture()
def source(settings: Settings) -> Settings:
    """Iteration 0: two demos and v1, champion. Iteration 1: an episode of v1, then v2 promoted. Iteration 2:
    an episode of v2, v3 promoted; then a demo rejected in review, and iteration 3 still running. A PostgreSQL
    source answers in a zone other than UTC."""
    if settings.db_url:
        engine = create_engine(settings.db_url)
        with engine.begin() as conn:
            name = conn.execute(text("SELECT current_database()")).scalar_one()
            conn.execute(text(f"ALTER DATABASE \"{name}\" SET timezone TO 'Asia/Kolkata'"))
        engine.dispose()
    store = EpisodeStore.open(settings)
    registry = PolicyRegistry(store.db)
    demo = _add_episode(store, 0, None, None)
    _add_episode(store, 1, None, None)
    v1 = _add_version(store, registry, 0)
    registry.promote(v1, actor="scheduler", reason="iteration 0", force=True)
    _finish(store, 0)
    _add_episode(store, 2, v1, 1)
    v2 = _add_version(store, registry, 1)
    registry.promote(v2, actor="scheduler", reason="iteration 1", force=True)
    _finish(store, 1)
    _add_episode(store, 3, v2, 2)
    v3 = _add_version(store, registry, 2)
    registry.promote(v3, actor="scheduler", reason="iteration 2", force=True)
    _finish(store, 2)
    ReviewService(store).reject(demo, author="reviewer", expected_version=0, note="drops the cube")
    _add_episode(store, 4, v3, 3)
    _finish(store, 3, done=False)
    store.db.dispose()
    return settings


def _counts(settings: Settings) -> dict[str, int]:
    store = EpisodeStore.open(settings, migrate=False)
    try:
        with store.db.read() as session:
            return {t.name: session.scalar(select(func.count()).select_from(t)) for t in Base.metadata.sorted_tables}
    finally:
        store.db.dispose()


def test_every_file_of_a_fork_is_synced_before_it_appears(
    source: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: set[tuple[int, int]] = set()
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        info = os.fstat(fd)
        synced.add((info.st_dev, info.st_ino))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    fork_store(source, tmp_path / "arm", iteration=0)
    paths = [tmp_path / "arm", *(tmp_path / "arm").rglob("*"), tmp_path]
    unsynced = [p for p in paths if (p.stat().st_dev, p.stat().st_ino) not in synced]
    assert not unsynced  # copied checkpoints, episode files, the database and the folders, the rename's parent


def test_a_fork_at_the_bootstrap_holds_only_what_existed_then(source: Settings, tmp_path: Path) -> None:
    before = _counts(source)
    report = fork_store(source, tmp_path / "arm", iteration=0)
    assert _counts(source) == before  # the source is only read
    assert report.iteration == 0 and report.champion == 1
    fork = Settings(home=tmp_path / "arm", db_url=None)
    store = EpisodeStore.open(fork, migrate=False)
    try:
        assert sorted(e.env_seed for e in store.list_episodes()) == [0, 1]
        versions = PolicyRegistry(store.db).list_versions()
        assert [(v.id, v.status) for v in versions] == [(1, "champion")]
        checkpoint = Path(versions[0].checkpoint_uri)
        assert checkpoint == fork.checkpoints_root / "iteration-0000" / "attempt-1"
        assert (checkpoint / "policy.safetensors").read_bytes() == b"weights of iteration 0"
        owner = database_identity(fork.database_url)
        assert checkpoints_marker(fork.checkpoints_root).owner() == owner  # the fork's loop trains there
        assert store.files.marked_owner() == owner
        assert PolicyRegistry(store.db).alias("champion") == 1
        for record in store.list_episodes():
            store.read_frames(record.id)  # present, sha256 verified
        assert not store.gc(dry_run=True).removed  # the fork's episodes folder is marked as the fork's own
    finally:
        store.db.dispose()
    counts = _counts(fork)
    assert counts["iteration"] == 1 and counts["label"] == 0 and counts["scheduler_lock"] == 0
    assert _alias_times(fork) == _alias_times(source)[:1]  # the same instants, whatever zone the source uses


def _alias_times(settings: Settings) -> list[datetime]:
    store = EpisodeStore.open(settings, migrate=False)
    try:
        moves = PolicyRegistry(store.db).history("champion")
    finally:
        store.db.dispose()
    return [m.created_at.replace(tzinfo=UTC) if m.created_at.tzinfo is None else m.created_at for m in moves]


def test_statuses_and_aliases_are_those_of_the_fork_point(source: Settings, tmp_path: Path) -> None:
    fork_store(source, tmp_path / "at1", iteration=1)
    store = EpisodeStore.open(Settings(home=tmp_path / "at1", db_url=None), migrate=False)
    try:
        registry = PolicyRegistry(store.db)
        # in the source v2 is retired by now; as iteration 1 finished it was the champion
        assert [(v.id, v.status) for v in registry.list_versions()] == [(1, "retired"), (2, "champion")]
        assert registry.alias("champion") == 2
        assert [m.to_version_id for m in registry.history("champion")] == [1, 2]
        assert sorted(e.env_seed for e in store.list_episodes()) == [0, 1, 2]
    finally:
        store.db.dispose()


def test_by_default_the_last_finished_iteration_and_later_labels_stay_behind(source: Settings, tmp_path: Path) -> None:
    report = fork_store(source, tmp_path / "latest")
    assert report.iteration == 2 and report.champion == 3
    fork = Settings(home=tmp_path / "latest", db_url=None)
    counts = _counts(fork)
    assert counts["episode"] == 4 and counts["policy_version"] == 3
    assert counts["label"] == 0  # written after iteration 2 finished
    store = EpisodeStore.open(fork, migrate=False)
    try:  # the source's later rejection is undone: the demo is back in the fork's training data
        assert {e.review_status for e in store.list_episodes()} == {"unreviewed"}
    finally:
        store.db.dispose()
    source_store = EpisodeStore.open(source, migrate=False)
    try:
        assert "rejected" in {e.review_status for e in source_store.list_episodes()}
    finally:
        source_store.db.dispose()


def test_a_challenger_is_not_mistaken_for_a_former_champion(source: Settings, tmp_path: Path) -> None:
    store = EpisodeStore.open(source, migrate=False)
    try:
        registry = PolicyRegistry(store.db)
        v4 = _add_version(store, registry, 3)
        registry.set_challenger(v4, actor="researcher", reason="shadow it")
        _finish_iteration(store, 3)
    finally:
        store.db.dispose()
    fork_store(source, tmp_path / "arm", iteration=3)
    fork = EpisodeStore.open(Settings(home=tmp_path / "arm", db_url=None), migrate=False)
    try:
        registry = PolicyRegistry(fork.db)
        assert registry.get(v4).status == "candidate" and registry.alias("challenger") == v4
        assert registry.alias("champion") == 3
    finally:
        fork.db.dispose()


def test_episode_files_are_shared_not_duplicated(source: Settings, tmp_path: Path) -> None:
    report = fork_store(source, tmp_path / "arm", iteration=0)
    assert report.linked_files + report.copied_files == 2
    store = EpisodeStore.open(Settings(home=tmp_path / "arm", db_url=None), migrate=False)
    try:
        record = store.list_episodes()[0]
        forked = store.files.path_for(record.file_uri)
        original = source.episodes_root / record.file_uri
        if report.linked_files:
            assert os.path.samefile(forked, original)
        assert forked.read_bytes() == original.read_bytes()
    finally:
        store.db.dispose()


@pytest.mark.parametrize(
    ("iteration", "message"),
    [(3, "iteration 3 has not finished"), (7, "no iteration 7; finished iterations: 0, 1, 2")],
)
def test_an_unfinished_or_unknown_iteration_is_refused(
    source: Settings, tmp_path: Path, iteration: int, message: str
) -> None:
    with pytest.raises(ForkError, match=message):
        fork_store(source, tmp_path / "arm", iteration=iteration)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]


def test_an_existing_destination_is_refused(source: Settings, tmp_path: Path) -> None:
    (tmp_path / "arm").mkdir()
    (tmp_path / "arm" / "notes.txt").write_text("mine")
    with pytest.raises(ForkError, match="already exists"):
        fork_store(source, tmp_path / "arm")
    assert (tmp_path / "arm" / "notes.txt").read_text() == "mine"


def test_a_store_without_a_finished_iteration_is_refused(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "empty", db_url=None)
    EpisodeStore.open(settings).db.dispose()
    with pytest.raises(ForkError, match="no finished loop iteration"):
        fork_store(settings, tmp_path / "arm")


def test_a_missing_checkpoint_leaves_nothing_behind(source: Settings, tmp_path: Path) -> None:
    folder = source.checkpoints_root / "iteration-0001" / "attempt-1"
    (folder / "policy.safetensors").unlink()
    folder.rmdir()
    with pytest.raises(ForkError, match=r"v2's checkpoint .* is missing"):
        fork_store(source, tmp_path / "arm", iteration=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]


def test_the_command_forks_and_refuses_in_one_line(source: Settings, tmp_path: Path) -> None:
    database = ["--db-url", source.db_url] if source.db_url else []

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "flywheel", "--home", str(source.home), *database, "fork", *args],
            capture_output=True,
            text=True,
            timeout=120,
        )

    done = cli(str(tmp_path / "arm"), "--iteration", "1")
    assert done.returncode == 0, done.stderr
    assert "forked at iteration 1" in done.stdout and "champion v2" in done.stdout
    assert "note:" not in done.stdout or source.db_url is not None
    refused = cli(str(tmp_path / "arm"))
    assert refused.returncode == 2
    assert "already exists" in refused.stderr and "Traceback" not in refused.stderr


def test_the_command_warns_when_the_environment_would_override_the_fork_home(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    store = EpisodeStore.open(settings)
    _finish(store, 0)
    store.db.dispose()
    env = {**os.environ, "FLYWHEEL_CHECKPOINTS_DIR": str(settings.checkpoints_root)}
    done = subprocess.run(
        [sys.executable, "-m", "flywheel", "--home", str(settings.home), "fork", str(tmp_path / "arm")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert "FLYWHEEL_CHECKPOINTS_DIR" in done.stdout and "env -u FLYWHEEL_CHECKPOINTS_DIR" in done.stdout


def test_a_missing_episode_file_is_named_and_leaves_nothing_behind(source: Settings, tmp_path: Path) -> None:
    store = EpisodeStore.open(source, migrate=False)
    try:
        demo = next(e for e in store.list_episodes() if e.env_seed == 0)
        store.files.path_for(demo.file_uri).unlink()
    finally:
        store.db.dispose()
    with pytest.raises(ForkError, match=r"episode \d+'s file .* is missing"):
        fork_store(source, tmp_path / "arm")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]
