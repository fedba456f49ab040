"""A loop whose first policy fails the gates stops with a clear error instead of retraining it forever."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from flywheel.config import Settings
from flywheel.errors import StalledLoopError
from flywheel.presets import flywheel_config
from flywheel.registry import CHAMPION
from flywheel.scheduler import FlywheelLoop, PhaseContext
from flywheel.scheduler.jobs import JobBook
from flywheel.store import EpisodeStore
from flywheel.store.models import PolicyVersion

UNREACHABLE_FLOOR = {"eval": {"gates": {"success_floor": 1.0}}}  # a tiny policy never solves every eval seed


def _loop(home: Path, overrides: dict) -> tuple[FlywheelLoop, EpisodeStore]:
    settings = Settings(home=home)
    store = EpisodeStore.open(settings)
    ctx = PhaseContext(store, settings, flywheel_config("tiny", overrides), progress=False)
    return FlywheelLoop(ctx, Console(quiet=True)), store


def _versions(store: EpisodeStore) -> list[PolicyVersion]:
    with store.db.read() as session:
        return list(session.query(PolicyVersion).order_by(PolicyVersion.id))


def test_a_rejected_bootstrap_is_not_trained_again_on_the_same_data(tmp_path: Path) -> None:
    loop, store = _loop(tmp_path, UNREACHABLE_FLOOR)
    with pytest.raises(StalledLoopError, match=r"iteration 1: no champion yet, and policy 1 \(iteration 0\)"):
        loop.run(3)
    (rejected,) = _versions(store)
    assert rejected.status == "rejected" and loop.ctx.registry.alias(CHAMPION) is None
    train = JobBook(store.db).job(1, "train")
    assert (train.state, train.attempts) == ("pending", 0)  # the refusal used no attempt: nothing failed

    # Something changed (here: a longer bootstrap): the same iteration trains its candidate.
    longer = {**UNREACHABLE_FLOOR, "bootstrap_steps": 30}
    loop, store = _loop(tmp_path, longer)
    with pytest.raises(StalledLoopError, match=r"iteration 2: no champion yet, and policy 2 \(iteration 1\)"):
        loop.run(3)
    assert [v.iteration for v in _versions(store)] == [0, 1]
    assert _versions(store)[1].config["steps"] == 30


def test_a_setting_added_since_the_rejection_does_not_hide_the_repeat(tmp_path: Path) -> None:
    loop, store = _loop(tmp_path, UNREACHABLE_FLOOR)
    with pytest.raises(StalledLoopError, match=r"policy 1 \(iteration 0\)"):
        loop.run(3)
    # As an older release stored it: without a setting added since (whose default keeps the old behaviour).
    with store.db.write() as session:
        (rejected,) = session.query(PolicyVersion).all()
        config = {**rejected.config, "reward": dict(rejected.config["reward"])}
        del config["reward"]["failed_episode_end"]
        rejected.config = config
    loop, store = _loop(tmp_path, UNREACHABLE_FLOOR)
    with pytest.raises(StalledLoopError, match=r"policy 1 \(iteration 0\)"):
        loop.run(3)
    assert len(_versions(store)) == 1  # not trained again
