"""`kill -9` of `flywheel run` inside each phase, then a re-run: nothing lost, duplicated or wrongly promoted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select

from flywheel.config import Settings
from flywheel.registry import CHAMPION, PolicyRegistry
from flywheel.store import EpisodeFilter, EpisodeStore
from flywheel.store.models import EvalRun, Iteration, Job, PolicyVersion

ROOT = Path(__file__).resolve().parents[1]
TINY = "preset: tiny\n"  # flywheel/presets.py: a tiny model and loop with lenient gates


def _run(home: Path, config: Path, failpoint: str | None = None) -> subprocess.Popen[bytes]:
    env = {**os.environ, "FLYWHEEL_HOME": str(home)}
    env.pop("FLYWHEEL_FAILPOINT_PAUSE", None)
    if failpoint:
        env["FLYWHEEL_FAILPOINT_PAUSE"] = f"{failpoint}:60"
    return subprocess.Popen(
        [sys.executable, "-m", "flywheel", "run", "--iterations", "1", "--config", str(config), "--quiet"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _wait_for_running(store: EpisodeStore, kind: str, proc: subprocess.Popen[bytes], timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
        with store.db.read() as session:
            if session.scalars(select(Job).where(Job.kind == kind, Job.state == "running")).first():
                return
        time.sleep(0.2)
    raise AssertionError(f"{kind} job never started")


@pytest.mark.parametrize("phase", ["collect", "train", "eval", "promote"])
def test_kill_during_phase_then_resume(tmp_path: Path, phase: str) -> None:
    home = tmp_path / "home"
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY)
    store = EpisodeStore.open(Settings(home=home))
    proc = _run(home, config, failpoint=phase)
    _wait_for_running(store, phase, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)

    resumed = _run(home, config)
    out, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, out.decode()[-3000:]

    with store.db.read() as session:
        assert list(session.scalars(select(Iteration.number).where(Iteration.state == "done"))) == [0, 1]
        killed = session.scalars(select(Job).where(Job.kind == phase, Job.attempts > 1)).all()
        assert len(killed) == 1 and killed[0].state == "succeeded"
        versions = Counter(session.scalars(select(PolicyVersion.iteration)))
        assert versions == Counter({0: 1, 1: 1})  # one candidate per iteration, none duplicated
        passed = {r.policy_version_id for r in session.scalars(select(EvalRun).where(EvalRun.passed.is_(True)))}
    moves = PolicyRegistry(store.db).history(CHAMPION)
    assert moves and all(m.to_version_id in passed for m in moves)  # promoted only on a stored pass
    assert store.count(EpisodeFilter(tag="demo")) == 3
    collected = store.list_episodes(EpisodeFilter(iteration=1))
    assert len(collected) == 2 and len({r.env_seed for r in collected}) == 2
