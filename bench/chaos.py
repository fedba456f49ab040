"""Chaos benchmark: `flywheel run` on PostgreSQL with the server restarted and killed inside each phase.

    python -m bench.chaos [--phases collect train eval promote] [--down-seconds 2]

For each phase, one run of two iterations (the crash test's tiny config): the server is stopped with
`pg_ctl -m fast stop` while that phase's job of iteration 0 runs and started again `--down-seconds` later, then
its postmaster is killed with `kill -9` while the phase's job of iteration 1 runs and started again the same way.
A second `flywheel run` resumes if the first one exited. Records the faults, the outcome (iterations completed,
job attempts, registered checkpoints verified) and the stall each fault cost: from the fault to the first
"database reachable again" line the run printed after it (None: no operation of the run waited on it).
Writes bench/results/chaos.json. The server is a throwaway one under a temp directory (tests/pg_server.py).
"""

from __future__ import annotations

import os

os.environ.setdefault("WANDB_MODE", "offline")

import argparse
import json
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, select
from sqlalchemy.engine import Engine

from bench.report import run_and_report
from flywheel.policy.checkpoint import CheckpointError, verify_checkpoint
from flywheel.scheduler.jobs import PHASES
from flywheel.store.models import Iteration, IterationState, Job, JobState, PolicyVersion
from tests.pg_server import PostgresServer, find_postgres_bin
from tests.test_scheduler_crash import ROOT, TINY

RESULTS = Path(__file__).resolve().parent / "results" / "chaos.json"
FAULTS = ("restart", "kill9")  # in iteration 0 and iteration 1 of each run
ITERATIONS = 1  # `--iterations 1`: iterations 0 (bootstrap) and 1 (collects with the champion)
PAUSE_S = 1.0  # FLYWHEEL_FAILPOINT_PAUSE: holds each job of the phase open (heartbeats beating) this long
RECOVERED = re.compile(r"database reachable again after")


@dataclass
class RunOutput:
    """A `flywheel run` whose output lines are timestamped as they arrive (time.monotonic())."""

    proc: subprocess.Popen[str]
    lines: list[tuple[float, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    def wait(self, timeout: float) -> int:
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return code

    def text(self) -> str:
        return "\n".join(line for _, line in self.lines)


def start_run(home: Path, config: Path, db_url: str, failpoint: str | None) -> RunOutput:
    env = {**os.environ, "FLYWHEEL_HOME": str(home), "FLYWHEEL_DB_URL": db_url}
    env.pop("FLYWHEEL_FAILPOINT_PAUSE", None)
    if failpoint:
        env["FLYWHEEL_FAILPOINT_PAUSE"] = f"{failpoint}:{PAUSE_S}"
    cmd = [sys.executable, "-m", "flywheel", "run", "--iterations", str(ITERATIONS), "--config", str(config)]
    proc = subprocess.Popen(
        [*cmd, "--quiet"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )
    return RunOutput(proc)


def _job_running(engine: Engine, iteration: int, kind: str) -> bool:
    try:
        with engine.connect() as conn:
            query = (
                select(Job.id)
                .join(Iteration)
                .where(Iteration.number == iteration, Job.kind == kind, Job.state == JobState.RUNNING)
            )
            return conn.execute(query).first() is not None
    except Exception:  # the server may be down between faults
        return False


def wait_for_job(engine: Engine, run: RunOutput, iteration: int, kind: str, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if run.proc.poll() is not None:
            raise RuntimeError(f"flywheel run exited before iteration {iteration} {kind} ran:\n{run.text()[-3000:]}")
        if _job_running(engine, iteration, kind):
            return
        time.sleep(0.05)
    raise RuntimeError(f"iteration {iteration} {kind} job never started")


def inject(server: PostgresServer, kind: str, down_s: float) -> None:
    if kind == "kill9":
        server.kill9()
    else:
        server.restart_stop()
    time.sleep(down_s)
    server.start_again()


def doctor_report(home: Path, db_url: str) -> dict[str, Any]:
    """`flywheel doctor --json` on the home: its exit code and report (exit 0 only when the store is clean)."""
    env = {**os.environ, "FLYWHEEL_HOME": str(home), "FLYWHEEL_DB_URL": db_url}
    cmd = [sys.executable, "-m", "flywheel", "doctor", "--json"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        report = None
    return {"returncode": proc.returncode, "report": report, "output": proc.stdout.strip() or proc.stderr.strip()}


def outcome(db_url: str, home: Path) -> dict[str, Any]:
    """What the store holds after the runs: iterations done, each job's attempts, checkpoints verified."""
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            done = list(conn.execute(select(Iteration.number).where(Iteration.state == IterationState.DONE)).scalars())
            jobs = conn.execute(
                select(Iteration.number, Job.kind, Job.state, Job.attempts).join(Iteration).order_by(Job.id)
            ).all()
            versions = conn.execute(select(PolicyVersion.id, PolicyVersion.checkpoint_uri, PolicyVersion.sha256)).all()
    finally:
        engine.dispose()
    bad = []
    for version_id, uri, sha in versions:
        try:
            verify_checkpoint(Path(uri), sha)
        except CheckpointError as exc:
            bad.append(f"v{version_id}: {exc}")
    return {
        "iterations_completed": sorted(done),
        "job_attempts": {f"{n}:{kind}": attempts for n, kind, _, attempts in jobs},
        "job_states": {f"{n}:{kind}": state for n, kind, state, _ in jobs},
        "registered_versions": len(versions),
        "checkpoint_mismatches": bad,
    }


def chaos_case(server: PostgresServer, workdir: Path, phase: str, down_s: float = 2.0) -> dict[str, Any]:
    """One run with a restart in iteration 0's `phase` job and a kill -9 in iteration 1's, then a resume."""
    home = workdir / f"home-{phase}"
    config = workdir / "tiny.yaml"
    config.write_text(TINY)
    db_url = server.create_database(f"chaos_{phase}_{uuid.uuid4().hex[:8]}")
    watcher = create_engine(db_url, pool_pre_ping=True)
    started = time.monotonic()
    run = start_run(home, config, db_url, failpoint=phase)
    faults = []
    try:
        for iteration, kind in enumerate(FAULTS):
            wait_for_job(watcher, run, iteration, phase)
            at = time.monotonic()
            inject(server, kind, down_s)
            faults.append({"phase": phase, "iteration": iteration, "kind": kind, "at_s": round(at - started, 2)})
        first_rc = run.wait(timeout=600)
    finally:
        if run.proc.poll() is None:
            run.proc.kill()
        watcher.dispose()
    for fault in faults:
        at = started + fault["at_s"]
        recovered = [t for t, line in run.lines if t >= at and RECOVERED.search(line)]
        fault["down_s"] = down_s
        fault["stall_s"] = round(recovered[0] - at, 2) if recovered else None
    resume_rc = None
    resume_tail = ""
    if first_rc != 0:
        resume = start_run(home, config, db_url, failpoint=None)
        resume_rc = resume.wait(timeout=600)
        resume_tail = resume.text()[-2000:]
    return {
        "phase": phase,
        "faults": faults,
        "first_run_returncode": first_rc,
        "first_run_tail": "" if first_rc == 0 else run.text()[-2000:],
        "resume_returncode": resume_rc,
        "resume_tail": resume_tail,
        "seconds": round(time.monotonic() - started, 1),
        "outage_lines": [line for _, line in run.lines if "database" in line and "reachable" in line],
        **outcome(db_url, home),
        "doctor": doctor_report(home, db_url),
        "db_url": db_url,
        "home": str(home),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phases", nargs="+", choices=PHASES, default=list(PHASES))
    parser.add_argument("--down-seconds", type=float, default=2.0, help="how long each outage keeps the server down")
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> dict[str, Any]:
    bindir = find_postgres_bin()
    if bindir is None:
        raise SystemExit("PostgreSQL server binaries not found (apt-get install postgresql)")
    load_before = os.getloadavg()[0]
    workdir = Path(tempfile.mkdtemp(prefix="flywheel-chaos-"))
    server = PostgresServer.start(bindir, workdir)
    try:
        cases = [chaos_case(server, workdir, phase, args.down_seconds) for phase in args.phases]
    finally:
        server.stop()
    for case in cases:  # scratch locations, meaningless once removed
        case.pop("db_url"), case.pop("home")
    stalls = [f["stall_s"] for c in cases for f in c["faults"] if f["stall_s"] is not None]
    return {
        "bench": "chaos",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "postgres": bindir.parent.name,
            "loadavg_1min_at_start": load_before,
        },
        "params": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
        | {"iterations": ITERATIONS, "failpoint_pause_s": PAUSE_S},
        "cases": cases,
        "all_resumed": all(c["iterations_completed"] == list(range(ITERATIONS + 1)) for c in cases),
        "attempts_consumed_by_outages": sum(a - 1 for c in cases for a in c["job_attempts"].values() if a > 1),
        "checkpoint_mismatches": sum(len(c["checkpoint_mismatches"]) for c in cases),
        "stall_s_max": max(stalls, default=None),
    }


def _summary(result: dict[str, Any]) -> str:
    return (
        f"chaos: {len(result['cases'])} phase(s), {sum(len(c['faults']) for c in result['cases'])} faults; "
        f"all resumed: {result['all_resumed']}; attempts consumed by outages: "
        f"{result['attempts_consumed_by_outages']}; checkpoint mismatches: {result['checkpoint_mismatches']}; "
        f"max stall {result['stall_s_max']} s"
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    return run_and_report(run, _summary, parse_args(argv))


if __name__ == "__main__":
    main()
