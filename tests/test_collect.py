"""Collection through real worker processes and a local Ray instance, writing to a real store."""

from __future__ import annotations

import os
import signal

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
