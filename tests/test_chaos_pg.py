"""Chaos on PostgreSQL: `flywheel run` with its server restarted (`pg_ctl -m fast stop` + start) inside one
phase of iteration 0 and killed (`kill -9` of the postmaster) inside the same phase of iteration 1, then a
resume if the run exited. Every iteration finishes, no attempt is spent on the outages, every registered
checkpoint matches its sha256. (The SQLite counterpart, the loop itself killed: tests/test_scheduler_crash.py.)"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.chaos import ITERATIONS, PHASES, chaos_case
from tests.pg_server import PostgresServer, private_server

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def chaos_pg() -> Iterator[tuple[PostgresServer, Path]]:
    """A server of this module's own: the session's shared one is never stopped."""
    with private_server("flywheel-chaos-") as server_and_dir:
        yield server_and_dir


@pytest.mark.parametrize("phase", PHASES)
def test_outages_in_each_phase_cost_a_pause_not_the_loop(chaos_pg: tuple[PostgresServer, Path], phase: str) -> None:
    server, workdir = chaos_pg
    case = chaos_case(server, workdir, phase)
    detail = f"{case['first_run_tail']}\n{case['resume_tail']}\n{case['outage_lines']}"
    assert [f["kind"] for f in case["faults"]] == ["restart", "kill9"]
    assert case["iterations_completed"] == list(range(ITERATIONS + 1)), detail
    assert set(case["job_states"].values()) == {"succeeded"}, case["job_states"]
    assert all(attempts == 1 for attempts in case["job_attempts"].values()), (case["job_attempts"], detail)
    assert case["registered_versions"] == ITERATIONS + 1 and case["checkpoint_mismatches"] == []
    assert case["doctor"]["returncode"] == 0, case["doctor"]["output"]  # `flywheel doctor` finds the store clean
