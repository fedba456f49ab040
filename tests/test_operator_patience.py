"""The simulated operator's default patience follows the task: it never takes over from the expert's own pace."""

from __future__ import annotations

import pytest

from sim.controllers import ExpertController
from sim.env import make_env
from sim.operator import ProgressClock, SimOperatorConfig, SimulatedOperator
from sim.rollout import run_episode
from sim.tasks import TASKS

SEEDS = range(900_000, 900_012)


def _takeovers_on_expert_pace(task: str, config: SimOperatorConfig) -> list[int]:
    """Takeovers per episode when the 'policy' being watched is the scripted expert itself."""
    env = make_env(task)
    operator = SimulatedOperator(config)
    return [run_episode(env, seed, ExpertController(task), operator).takeovers for seed in SEEDS]


@pytest.mark.parametrize("task", sorted(TASKS))
def test_task_patience_never_interrupts_the_expert(task: str) -> None:
    assert _takeovers_on_expert_pace(task, SimOperatorConfig()) == [0] * len(SEEDS)


def test_a_flat_30_step_patience_interrupts_the_expert_on_insertion() -> None:
    """The check above can fail: lifting both parts, the expert goes over 30 steps without visible progress."""
    takeovers = _takeovers_on_expert_pace("insertion", SimOperatorConfig(no_progress_steps=30))
    assert sum(1 for n in takeovers if n > 0) >= len(SEEDS) - 1


def _watch(distances: list[float], stage: int = 2) -> list[bool]:
    """Whether the operator (patience 20 at `stage`) takes over after each step of parts at `distances`."""
    operator = SimulatedOperator(SimOperatorConfig(min_policy_steps=0))
    operator.reset(0, stage_patience=(20, 20, 20, 20))
    operator.observe(stage, distances[0])
    decisions = []
    for distance in distances[1:]:
        operator.observe(stage, distance)
        decisions.append(operator.decide(None, None).switch)
        if decisions[-1]:
            break
    return decisions


def test_parts_closing_steadily_are_progress() -> None:
    """A slow approach (1 mm a step) never looks stuck, however long it takes to raise the stage."""
    assert not any(_watch([0.2 - 0.001 * t for t in range(100)]))


def test_parts_held_still_or_jittering_are_not_progress() -> None:
    still = _watch([0.12] * 40)
    jitter = _watch([0.12 + 0.002 * (-1) ** t for t in range(40)])
    assert still[-1] and len(still) == 20
    assert jitter[-1] and len(jitter) == 20


def test_closing_counts_against_the_closest_since_the_stage_rose() -> None:
    clock = ProgressClock()
    assert clock.tick(2, 0.20)
    assert clock.tick(2, 0.19)
    assert not clock.tick(2, 0.21)  # backing off, then returning to where it was, is not progress
    assert not clock.tick(2, 0.187)
    assert clock.since == 2
    assert clock.tick(2, 0.184)
    assert clock.tick(3, 0.30)  # a higher stage is progress however far apart the parts are
    assert clock.closest_m == 0.30 and clock.since == 0
    assert clock.tick(2, 0.10) and clock.best_stage == 3  # a flickering stage keeps the best; closing still counts


def test_task_patience_is_per_stage() -> None:
    operator = SimulatedOperator(SimOperatorConfig(min_policy_steps=0))
    operator.reset(0, stage_patience=(5, 5, 20, 5))
    operator.observe(1)
    operator.observe(2)
    for _ in range(19):
        operator.observe(2)
        assert not operator.decide(None, None).switch
    operator.observe(2)
    assert operator.decide(None, None).trigger == "no_progress"


def test_task_patience_needs_the_task() -> None:
    with pytest.raises(ValueError, match="stage patience"):
        SimulatedOperator().reset(0)
    with pytest.raises(ValueError):
        SimOperatorConfig(no_progress_steps=0)
    with pytest.raises(ValueError):
        SimOperatorConfig(no_progress_steps="stage")  # type: ignore[arg-type]
