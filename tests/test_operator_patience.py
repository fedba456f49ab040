"""The simulated operator's default patience follows the task: it never takes over from the expert's own pace."""

from __future__ import annotations

import pytest

from sim.controllers import ExpertController
from sim.env import make_env
from sim.operator import SimOperatorConfig, SimulatedOperator
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


def test_a_flat_60_step_patience_interrupts_the_expert_on_insertion() -> None:
    """Why the patience is per task and stage: lifting and aligning both parts takes the expert over 100 steps."""
    takeovers = _takeovers_on_expert_pace("insertion", SimOperatorConfig(no_progress_steps=60))
    assert sum(1 for n in takeovers if n > 0) >= len(SEEDS) - 1


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
