"""`flywheel doctor` on a real store: a clean home passes; each broken invariant, injected for real, is reported
with its fix; `--repair` fixes only the safe ones; `--json` for scripts."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from flywheel.cli import app
from flywheel.config import Settings
from flywheel.doctor import IN_FLIGHT_GRACE
from flywheel.policy.checkpoint import write_checkpoint
from flywheel.registry import CHALLENGER, PolicyRegistry
from flywheel.scheduler.jobs import JobBook
from flywheel.scheduler.lock import acquire_lock
from flywheel.store import EpisodeStore, NewEpisode
from flywheel.store import migrate as migrations
from flywheel.store.files import TEMP_PREFIX
from flywheel.store.models import Job, PolicyVersion, utcnow
from tests.conftest import make_frames

ROOT = Path(__file__).resolve().parents[1]
OLD = time.time() - IN_FLIGHT_GRACE.total_seconds() - 60


@dataclass
class Home:
    settings: Settings
    store: EpisodeStore
    episodes: list[int]
    champion: int
    candidate: int

    def path(self, episode_id: int) -> Path:
        return self.store.files.path_for(self.store.get(episode_id, with_segments=False).file_uri)

    def checkpoint(self, version_id: int) -> Path:
        return Path(PolicyRegistry(self.store.db).get(version_id).checkpoint_uri)


def _checkpoint(root: Path, name: str, seed: int) -> tuple[Path, str]:
    directory = root / name
    weights = {"w": torch.full((4, 4), float(seed))}
    return directory, write_checkpoint(directory, {"policy": weights}, {"model": {"seed": seed}})


def populate(store: EpisodeStore, settings: Settings) -> Home:
    """Three episodes, a champion and a candidate with real checkpoints, an iteration whose first job ran."""
    registry = PolicyRegistry(store.db)
    versions = []
    for seed, name in enumerate(("bootstrap", "iteration-0001")):
        directory, sha = _checkpoint(settings.checkpoints_root, name, seed)
        versions.append(
            registry.register_candidate(
                task="transfer_cube",
                checkpoint_uri=str(directory),
                sha256=sha,
                config={},
                data_fingerprint={},
                metrics={},
            ).id
        )
    registry.promote(versions[0], actor="test", reason="bootstrap", force=True)
    episodes = [
        store.add(
            NewEpisode(
                task="transfer_cube",
                frames=make_frames(20, seed=i),
                env_seed=i,
                success=True,
                policy_version_id=versions[0],
            )
        ).id
        for i in range(3)
    ]
    book = JobBook(store.db)
    book.ensure_iteration(1, "transfer_cube", max_attempts=3)
    ref = book.claim(1, "collect")
    assert ref is not None
    book.succeed(ref, {"episodes": 3})
    return Home(settings, store, episodes, champion=versions[0], candidate=versions[1])


@pytest.fixture
def home(sqlite_settings: Settings) -> Iterator[Home]:
    store = EpisodeStore.open(sqlite_settings)
    yield populate(store, sqlite_settings)
    store.db.dispose()


def doctor(settings: Settings, *args: str) -> tuple[int, str]:
    """`flywheel doctor ARGS` in-process (the command the CLI registers), with the settings' home and database."""
    argv = ["--home", str(settings.home), "--db-url", settings.database_url, "doctor", *args]
    result = CliRunner().invoke(app, argv)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def report(settings: Settings, *args: str) -> tuple[int, dict]:
    code, out = doctor(settings, "--json", *args)
    return code, json.loads(out)


def problems(data: dict, check: str) -> list[dict]:
    return [p for p in data["problems"] if p["check"] == check]


def test_clean_store_passes(home: Home) -> None:
    code, data = report(home.settings)
    assert code == 0 and data["ok"] and data["problems"] == [] and data["repaired"] == []
    assert data["checked"] == {
        "schema": 1,
        "episode-file": 3,
        "orphan-file": 3,
        "checkpoint": 2,
        "alias": 1,
        "stale-job": 4,
        "failed-job": 4,
    }
    code, out = doctor(home.settings)
    assert code == 0 and out.strip().startswith("no problems")


def test_broken_episode_files_are_named_with_their_fix(home: Home) -> None:
    missing, corrupt, truncated = home.episodes
    home.path(missing).unlink()
    blob = bytearray(home.path(corrupt).read_bytes())
    blob[-1] ^= 0xFF  # same size, other bytes
    home.path(corrupt).write_bytes(bytes(blob))
    with home.path(truncated).open("r+b") as fh:
        fh.truncate(100)

    code, data = report(home.settings)
    assert code == 1 and not data["ok"]
    found = {p["subject"]: p for p in problems(data, "episode-file")}
    assert set(found) == {f"episode {i}" for i in home.episodes}
    assert "is missing" in found[f"episode {missing}"]["detail"]
    assert "sha256" in found[f"episode {corrupt}"]["detail"]
    assert "is 100 bytes" in found[f"episode {truncated}"]["detail"]
    for episode_id, problem in zip(home.episodes, found.values(), strict=True):
        assert f"`flywheel episodes delete {episode_id}`" in problem["fix"] and not problem["repairable"]

    code, out = doctor(home.settings)
    lines = [line for line in out.splitlines() if line.startswith("episode-file: ")]
    assert code == 1 and len(lines) == 3 and all("fix: restore" in line for line in lines)

    # --quick checks sizes only: the same-size corruption goes unseen, the rest does not.
    code, data = report(home.settings, "--quick")
    assert {p["subject"] for p in problems(data, "episode-file")} == {f"episode {missing}", f"episode {truncated}"}


def test_orphans_are_reported_and_repaired_but_young_files_are_left_alone(home: Home) -> None:
    source = home.path(home.episodes[0])
    shard = source.parent.name  # the store's layout: <shard>/<shard><30 hex>.safetensors
    orphan = source.parent / (shard + "0" * 30 + ".safetensors")
    temp = source.parent / f"{TEMP_PREFIX}{'1' * 32}"
    young = source.parent / (shard + "2" * 30 + ".safetensors")
    for path in (orphan, temp, young):
        path.write_bytes(source.read_bytes())
    for path in (orphan, temp):
        os.utime(path, (OLD, OLD))

    code, data = report(home.settings)
    found = problems(data, "orphan-file")
    assert code == 1 and {p["subject"] for p in found} == {
        f"file {p.relative_to(home.settings.episodes_root).as_posix()}" for p in (orphan, temp)
    }
    assert all(p["repairable"] for p in found)
    assert any("killed" in p["detail"] for p in found)
    assert any("younger than 60 min" in note for note in data["notes"])
    assert orphan.exists() and temp.exists()  # a plain check changes nothing

    code, data = report(home.settings, "--repair")
    assert code == 0 and data["problems"] == []
    assert len(data["repaired"]) == 2
    assert not orphan.exists() and not temp.exists() and young.exists()
    assert all(home.path(i).exists() for i in home.episodes)


def test_a_shared_directory_is_reported_not_marked_or_touched(home: Home) -> None:
    files = home.store.files
    files.marker.unlink()
    stranger = files.root / "notes.safetensors"
    stranger.write_bytes(b"someone else's file")

    code, data = report(home.settings, "--repair")
    (found,) = problems(data, "orphan-file")
    assert code == 1 and "gc --adopt" in found["fix"] and not found["repairable"]
    assert stranger.read_bytes() == b"someone else's file" and not files.marker.exists()


def test_tampered_checkpoint(home: Home) -> None:
    weights = home.checkpoint(home.champion) / "policy.safetensors"
    blob = bytearray(weights.read_bytes())
    blob[-1] ^= 0xFF
    weights.write_bytes(bytes(blob))
    manifest = home.checkpoint(home.candidate) / "manifest.json"
    manifest.write_text(manifest.read_text() + "\n")

    code, data = report(home.settings)
    found = {p["subject"]: p for p in problems(data, "checkpoint")}
    assert code == 1 and set(found) == {
        f"policy version {home.champion} (champion)",
        f"policy version {home.candidate} (candidate)",
    }
    assert "policy.safetensors fails its sha256" in found[f"policy version {home.champion} (champion)"]["detail"]
    assert "flywheel policies rollback" in found[f"policy version {home.champion} (champion)"]["fix"]
    assert "does not match the registered" in found[f"policy version {home.candidate} (candidate)"]["detail"]

    code, data = report(home.settings, "--repair")  # not safely repairable: still reported, nothing changed
    assert code == 1 and len(problems(data, "checkpoint")) == 2 and data["repaired"] == []


def test_dangling_alias_and_status_disagreement(home: Home) -> None:
    registry = PolicyRegistry(home.store.db)
    registry.set_challenger(home.candidate, actor="test", reason="shadow")
    with sqlite3.connect(home.settings.home / "flywheel.db") as conn:  # the FK refuses this; a raw edit does not
        conn.execute("PRAGMA foreign_keys=OFF")
        conn.execute("DELETE FROM policy_version WHERE id = ?", (home.candidate,))
        conn.execute("UPDATE policy_version SET status = 'retired' WHERE id = ?", (home.champion,))

    code, data = report(home.settings)
    found = {p["subject"]: p for p in problems(data, "alias")}
    assert code == 1 and set(found) == {f"alias {CHALLENGER}", "alias champion"}
    assert f"policy version {home.candidate}, which does not exist" in found[f"alias {CHALLENGER}"]["detail"]
    assert "whose status is retired" in found["alias champion"]["detail"]
    assert f"flywheel policies promote {home.champion} --force" in found["alias champion"]["fix"]


def test_second_champion_status_is_reported(home: Home) -> None:
    with home.store.db.write() as session:
        session.get(PolicyVersion, home.candidate).status = "champion"
    code, data = report(home.settings)
    (found,) = problems(data, "alias")
    assert code == 1 and found["subject"] == f"policy version {home.candidate}"
    assert f"points at version {home.champion}" in found["detail"]


def _running(home: Home, kind: str, heartbeat_age: timedelta) -> int:
    ref = JobBook(home.store.db).claim(1, kind)
    assert ref is not None
    with home.store.db.write() as session:
        session.get(Job, ref.id).heartbeat_at = utcnow() - heartbeat_age
    return ref.id


def test_stuck_running_job_is_handed_back_without_another_attempt(home: Home) -> None:
    stuck = _running(home, "train", timedelta(minutes=10))

    code, data = report(home.settings)
    (found,) = problems(data, "stale-job")
    assert code == 1 and found["subject"] == f"job {stuck} (iteration 1 train)" and found["repairable"]
    assert "no live scheduler holds the lock" in found["detail"]

    code, data = report(home.settings, "--repair")
    assert code == 0 and data["repaired"] == [f"job {stuck} (iteration 1 train): running → pending"]
    job = JobBook(home.store.db).job(1, "train")
    assert job.state == "pending" and job.attempts == 1 and "flywheel doctor --repair" in (job.error or "")
    ref = JobBook(home.store.db).claim(1, "train")  # the scheduler resumes it as it would any pending job
    assert ref is not None and ref.attempts == 2


def test_job_at_its_attempt_limit_points_at_retry_failed(home: Home) -> None:
    book = JobBook(home.store.db)
    with home.store.db.write() as session:
        job = session.get(Job, book.job(1, "eval").id)
        job.state, job.attempts, job.max_attempts = "failed", 3, 3
        job.error = "Traceback\nCheckpointError: sha256 differs"

    code, data = report(home.settings, "--repair")
    (found,) = problems(data, "failed-job")
    assert code == 1 and found["subject"].endswith("(iteration 1 eval)") and not found["repairable"]
    assert "CheckpointError: sha256 differs" in found["detail"] and "--retry-failed" in found["fix"]
    assert book.job(1, "eval").state == "failed"  # not a safe repair: a person fixes the cause first


def test_handing_back_a_job_on_its_last_attempt_reports_it_failed(home: Home) -> None:
    stuck = _running(home, "train", timedelta(minutes=10))
    with home.store.db.write() as session:
        session.get(Job, stuck).max_attempts = 1

    code, data = report(home.settings, "--repair")
    assert data["repaired"] == [f"job {stuck} (iteration 1 train): running → failed (its attempt limit is reached)"]
    (found,) = problems(data, "failed-job")  # the re-check sees what the repair made of it
    assert code == 1 and "--retry-failed" in found["fix"]


def test_jobs_of_a_live_scheduler_are_left_alone(home: Home) -> None:
    _running(home, "train", timedelta(minutes=10))
    lock = acquire_lock(home.store.db, "flywheel run (test)")
    try:
        code, data = report(home.settings, "--repair")
        assert code == 0 and data["repaired"] == []
        assert any("live scheduler" in note for note in data["notes"])
        assert JobBook(home.store.db).job(1, "train").state == "running"
    finally:
        lock.release()


def test_fresh_heartbeat_is_not_stuck(home: Home) -> None:
    _running(home, "train", timedelta(seconds=1))
    assert report(home.settings)[0] == 0


def test_schema_behind_head_is_reported_and_nothing_else_runs(home: Home) -> None:
    home.path(home.episodes[0]).unlink()
    migrations.downgrade(home.store.db, "0002")
    code, data = report(home.settings, "--repair")
    (found,) = data["problems"]
    assert code == 1 and found["check"] == "schema" and "revision 0002" in found["detail"]
    assert "`flywheel db upgrade`" in found["fix"]
    assert data["checked"] == {"schema": 1} and migrations.current_revision(home.store.db) == "0002"


def test_repair_fixes_the_safe_problems_and_reports_the_rest(home: Home) -> None:
    home.path(home.episodes[1]).unlink()
    shard = home.path(home.episodes[0]).parent
    orphan = shard / (shard.name + "3" * 30 + ".safetensors")
    orphan.write_bytes(b"left by a writer killed before its commit")
    os.utime(orphan, (OLD, OLD))
    _running(home, "train", timedelta(minutes=5))

    code, out = doctor(home.settings, "--repair")
    assert code == 1
    assert sum(line.startswith("repaired: ") for line in out.splitlines()) == 2
    assert [line.split(":")[0] for line in out.splitlines() if " — fix: " in line] == ["episode-file"]
    assert "1 problem(s)" in out.splitlines()[-1]
    assert not orphan.exists()


def test_postgres_store(postgres_settings: Settings) -> None:
    """The same checks on PostgreSQL: clean, then a corrupt file and a stuck job; the job is repaired."""
    store = EpisodeStore.open(postgres_settings)
    try:
        h = populate(store, postgres_settings)
        assert report(postgres_settings)[0] == 0
        h.path(h.episodes[0]).write_bytes(b"x" * h.path(h.episodes[0]).stat().st_size)
        _running(h, "train", timedelta(minutes=5))
        code, data = report(postgres_settings, "--repair")
        assert code == 1 and [p["check"] for p in data["problems"]] == ["episode-file"]
        assert len(data["repaired"]) == 1
    finally:
        store.db.dispose()


def test_missing_home_is_a_user_error(tmp_path: Path) -> None:
    env = {**os.environ, "FLYWHEEL_HOME": str(tmp_path / "nowhere")}
    env.pop("FLYWHEEL_DB_URL", None)
    proc = subprocess.run(
        [sys.executable, "-m", "flywheel", "doctor"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120
    )
    assert proc.returncode == 2 and "no flywheel database at" in proc.stderr
    assert not (tmp_path / "nowhere").exists()  # nothing created


def test_json_shape(home: Home) -> None:
    home.path(home.episodes[0]).unlink()
    code, data = report(home.settings)
    assert code == 1 and data["ok"] is False
    assert set(data) == {"ok", "problems", "repaired", "checked", "notes"}
    (problem,) = data["problems"]
    assert set(problem) == {"check", "subject", "detail", "fix", "repairable"}
