"""A simulated operator: watches the policy, takes over with the expert, and hands back.

Triggers (each optional): no progress for longer than the task allows at the current stage (its
`operator_patience`, above the expert's own waits) or a fixed K steps, where progress is a higher stage or the
task's two parts visibly closer than before (`ProgressClock`); the policy's action far (L2, joint space)
from the expert's proposal; a fixed takeover probability per step. Hand-back: after a fixed number of steps, or as
soon as the task stage has advanced since the takeover.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Final, Literal, get_args

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

TRIGGER_NO_PROGRESS = "no_progress"
TRIGGER_ACTION_DISTANCE = "action_distance"
TRIGGER_RANDOM = "random"
HANDBACK_STEPS = "handback_steps"
HANDBACK_PROGRESS = "handback_progress"
TaskPatience = Literal["task"]
TASK_PATIENCE: Final[str] = get_args(TaskPatience)[0]
APPROACH_MARGIN_M: Final[float] = 0.005
"""How much closer (metres) than ever before at the current stage the task's two parts must come for the operator
to count it as progress: well above the jitter of parts held still, well below what a steady approach closes in
a second."""


@dataclass
class ProgressClock:
    """Steps since the robot last made progress, as a watching person judges it: a higher stage than ever in this
    episode, or the task's two parts (`Task.approach_distance`) `APPROACH_MARGIN_M` closer than they have been
    since the stage last rose. The simulated operator and `bench.operator_patience` both read it."""

    best_stage: int = 0
    closest_m: float = math.inf
    since: int = 0

    def tick(self, stage: int, approach_m: float | None = None) -> bool:
        """Record one step's stage and approach distance; True where it made progress."""
        if stage > self.best_stage:
            self.best_stage = stage
            self.closest_m = math.inf if approach_m is None else approach_m
            progressed = True
        elif approach_m is not None and approach_m < self.closest_m - APPROACH_MARGIN_M:
            self.closest_m = approach_m
            progressed = True
        else:
            progressed = False
        self.since = 0 if progressed else self.since + 1
        return progressed


class SimOperatorConfig(BaseModel):
    """The simulated operator's settings (validated). A trigger set to None (or probability 0) is off.

    `no_progress_steps: "task"` waits, at each stage, as long as the task says its expert may go without progress
    (`Task.operator_patience`); an int waits that many steps at every stage. Who the takeovers are recorded under is
    the rollout's `operator` name, not a setting here."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    no_progress_steps: Annotated[int, Field(ge=1)] | TaskPatience | None = TASK_PATIENCE
    action_distance: float | None = Field(default=None, gt=0)
    takeover_probability: float = Field(default=0.0, ge=0.0, le=1.0)
    # long enough for the expert to reach, grasp and lift from where the policy stalled (~100 steps)
    handback_after_steps: int = Field(default=150, ge=1)
    handback_on_progress: bool = True
    min_policy_steps: int = Field(default=10, ge=0)  # grace period after start / hand-back
    max_takeovers: int | None = Field(default=None, ge=0)
    # Insertion: turn a peg the policy grasped onto the socket's axis by its measured axis. It repairs more stalls,
    # but loops trained worse on those repairs (docs/vision.md, "Iteration 1 retrained"), so off by default.
    align_handed_peg: bool = False

    @model_validator(mode="after")
    def _some_trigger(self) -> SimOperatorConfig:
        if self.no_progress_steps is None and self.action_distance is None and self.takeover_probability == 0:
            raise ValueError("enable at least one trigger: no_progress_steps, action_distance, takeover_probability")
        return self

    @property
    def needs_expert_proposal(self) -> bool:
        return self.action_distance is not None


@dataclass(frozen=True)
class Decision:
    """`switch` True means change who drives; `trigger` says why."""

    switch: bool
    trigger: str | None = None


class SimulatedOperator:
    """Stateful per episode; call `reset(seed)` at episode start and `observe` + `decide` every step."""

    def __init__(self, config: SimOperatorConfig | None = None) -> None:
        self.config = config or SimOperatorConfig()
        self._stage_patience: tuple[int, ...] = ()
        self._clear(0)

    def reset(self, seed: int | None = None, stage_patience: Sequence[int] = ()) -> None:
        """Start an episode. `stage_patience` is the task's `operator_patience` (the rollout passes it)."""
        if self.config.no_progress_steps == TASK_PATIENCE and not stage_patience:
            raise ValueError('no_progress_steps "task" needs the task\'s stage patience: pass it to reset()')
        self._stage_patience = tuple(stage_patience)
        self._clear(seed)

    def _clear(self, seed: int | None) -> None:
        self._rng: np.random.Generator = np.random.default_rng(seed)
        self.in_control = False
        self.takeovers = 0
        self._since_switch = 0
        self._progress = ProgressClock()
        self._stage_at_takeover = 0

    def observe(self, stage: int, approach_m: float | None = None) -> None:
        """Record the task stage (reward 0..4) and, where known, `Task.approach_distance` after a step."""
        self._since_switch += 1
        self._progress.tick(stage, approach_m)

    def decide(self, policy_action: np.ndarray | None, expert_action: np.ndarray | None) -> Decision:
        """Whether to switch controller before the next step."""
        cfg = self.config
        if self.in_control:
            if cfg.handback_on_progress and self._progress.best_stage > self._stage_at_takeover:
                return self._switch(HANDBACK_PROGRESS)
            if self._since_switch >= cfg.handback_after_steps:
                return self._switch(HANDBACK_STEPS)
            return Decision(False)
        if self._since_switch < cfg.min_policy_steps:
            return Decision(False)
        if cfg.max_takeovers is not None and self.takeovers >= cfg.max_takeovers:
            return Decision(False)
        patience = self.patience()
        if patience is not None and self._progress.since >= patience:
            return self._switch(TRIGGER_NO_PROGRESS)
        if (
            cfg.action_distance is not None
            and policy_action is not None
            and expert_action is not None
            and float(np.linalg.norm(np.asarray(policy_action) - expert_action)) > cfg.action_distance
        ):
            return self._switch(TRIGGER_ACTION_DISTANCE)
        if cfg.takeover_probability > 0 and self._rng.random() < cfg.takeover_probability:
            return self._switch(TRIGGER_RANDOM)
        return Decision(False)

    def patience(self) -> int | None:
        """Steps without progress tolerated at the current best stage (None: the trigger is off)."""
        limit = self.config.no_progress_steps
        if isinstance(limit, str):  # TASK_PATIENCE
            return self._stage_patience[min(self._progress.best_stage, len(self._stage_patience) - 1)]
        return limit

    def _switch(self, trigger: str) -> Decision:
        self.in_control = not self.in_control
        self._since_switch = 0
        self._progress.since = 0
        if self.in_control:
            self.takeovers += 1
            self._stage_at_takeover = self._progress.best_stage
        return Decision(True, trigger)
