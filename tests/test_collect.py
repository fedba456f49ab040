"""Collection through real worker processes and a local Ray instance, writing to a real store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from flywheel.collect import CollectSpec, ProcessPool, collect
from flywheel.collect.seeds import demo_seeds
from flywheel.store import EpisodeFilter, EpisodeStore

SPEC = CollectSpec(task="transfer_cube", operator_mode="expert", operator_name="expert", source_prefix="test-demos")


def test_demos_are_stored_tagged_and_idempotent(store: EpisodeStore) -> None:
    seeds = demo_seeds(3)
    report = collect(store, SPEC, seeds, workers=2, progress=False)
    assert report.collected == 3 and report.successes == 3
    records = store.list_episodes(EpisodeFilter(limit=None), with_segments=True)
    assert {r.tag for r in records} == {"demo"}
    assert sorted(r.env_seed for r in records) == seeds
    assert all(len(r.segments) == 1 and r.segments[0].controller == "expert" for r in records)
    assert {(r.operator, r.segments[0].operator, r.segments[0].trigger) for r in records} == {
        ("expert", "expert", "start")
    }
    again = collect(store, SPEC, seeds, workers=2, progress=False)  # a re-run after a crash
    assert again.collected == 0 and again.skipped_existing == 3
    assert store.count() == 3


def test_dead_worker_loses_only_its_episode_and_the_count_stays_right() -> None:
    pool = ProcessPool(SPEC, workers=2)
    seeds = demo_seeds(6)
    outcomes = []
    killed = None
    for outcome in pool.run(seeds):
        outcomes.append(outcome)
        if killed is None:
            busy = pool.pids()
            killed = busy[0]
            os.kill(killed, signal.SIGKILL)
    assert sorted(o.seed for o in outcomes) == seeds  # every seed exactly once
    assert pool.restarts == 1 and len(pool.discarded) <= 1
    assert all(o.success for o in outcomes)


DISPATCHER = """
import sys
from flywheel.collect import CollectSpec, ProcessPool
spec = CollectSpec(task="transfer_cube", operator_mode="none", policy_checkpoint=sys.argv[1], source_prefix="t",
                   max_steps=10_000, envs_per_worker=64)
pool = ProcessPool(spec, workers=1)
for _ in pool.run(list(range(1, 65)), on_start=lambda seed: print(*pool.pids(), flush=True)):
    pass
"""


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def test_workers_exit_when_their_dispatcher_is_killed(tiny_policy: tuple[Path, str]) -> None:
    # one job of 64 episodes of 10k steps in lockstep keeps the worker busy far longer than the wait below
    command = [sys.executable, "-c", DISPATCHER, str(tiny_policy[0])]
    dispatcher = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        worker = int(dispatcher.stdout.readline().split()[0])  # type: ignore[union-attr]
        assert _running(worker)
    finally:
        dispatcher.kill()  # SIGKILL: no cleanup runs in the dispatcher
        dispatcher.wait()
    deadline = time.monotonic() + 10
    while _running(worker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _running(worker), "the worker outlived its dispatcher"


def test_joint_limit_violations_count_frames_outside_the_actuator_range() -> None:
    from flywheel.collect.runtime import count_joint_limit_violations
    from sim import make_env

    env = make_env("transfer_cube")
    try:
        low, high = np.asarray(env.action_space.low), np.asarray(env.action_space.high)
        actions = np.tile((low + high) / 2, (5, 1))
        actions[1, 3] = high[3] + 0.01  # out of range
        actions[2, 0] = low[0] - 0.01  # out of range
        actions[2, 5] = high[5] + 0.01  # the same frame again: counted once
        actions[3, 6] = high[6] + 5e-4  # within the tolerance
        assert count_joint_limit_violations(actions, env.action_space) == 2
        assert count_joint_limit_violations(actions[3:], env.action_space) == 0
    finally:
        env.close()


def test_unknown_task_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown task 'stack_blocks'"):
        CollectSpec(task="stack_blocks", operator_mode="expert", source_prefix="x")


def test_ray_collection_on_a_local_instance(store: EpisodeStore) -> None:
    ray = pytest.importorskip("ray")
    try:
        report = collect(
            store,
            SPEC.model_copy(update={"source_prefix": "ray"}),
            demo_seeds(3),
            workers=2,
            use_ray=True,
            progress=False,
        )
    finally:
        ray.shutdown()
    assert report.collected == 3 and store.count(EpisodeFilter(tag="demo")) == 3
