"""The rollout loop: who acts each step, what is recorded, and the episode result.

`EpisodeRunner` advances one step per `step()` call (the console drives it), `run_episode` runs it to the end.
Frames hold the observation *before* each action, the executed action, the policy's proposal where the policy
was consulted, the step reward and the acting controller's code. The tag is never set here: it is derived from
the controller codes (`EpisodeFrames.tag`). The segments are derived here, once, and travel with the episode.

"Operator" is always a name (a person, or the simulated operator): the simulated operator itself is
`sim_operator`, a `SimulatedOperator`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from flywheel.vocab import (
    CONTROLLER_CODES,
    SIMULATED_OPERATOR,
    ControllerKind,
    EpisodeFrames,
    SegmentSpan,
    Tag,
    derive_segments,
)
from sim.constants import ACTION_DIM
from sim.controllers import Controller, ExpertController, PolicyController, PolicyLike
from sim.env import AlohaSimEnv
from sim.experts import make_expert
from sim.operator import SimulatedOperator

TRIGGER_START = "start"


@dataclass
class EpisodeResult:
    """Everything the collection layer stores about one episode."""

    task: str
    seed: int | None
    frames: EpisodeFrames | None  # None only if the episode failed before its first step
    segments: list[SegmentSpan]
    success: bool
    episode_return: float
    length: int
    error: str | None = None
    takeovers: int = 0  # the simulated operator's

    @property
    def tag(self) -> Tag | None:
        return self.frames.tag if self.frames is not None else None


@dataclass
class StepOutcome:
    """What one `EpisodeRunner.step()` did."""

    t: int
    controller: ControllerKind
    action: np.ndarray
    reward: float
    done: bool
    info: dict[str, Any] = field(default_factory=dict)


def check_action(action: Any, who: str, t: int) -> tuple[np.ndarray | None, str | None]:
    """(action as float64 (14,), None) or (None, a clear error message)."""
    try:
        arr = np.asarray(action, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        return None, f"{who} action at step {t} is not numeric: {exc}"
    if arr.shape != (ACTION_DIM,):
        return None, f"{who} action at step {t} has shape {arr.shape}, expected ({ACTION_DIM},)"
    if not np.isfinite(arr).all():
        bad = np.flatnonzero(~np.isfinite(arr)).tolist()
        return None, f"{who} action at step {t} contains NaN/inf at indices {bad}"
    return arr, None


class EpisodeRunner:
    """One episode, advanced step by step.

    Who acts: the policy if given, else the expert (a demo). A `SimulatedOperator` may switch to the expert and
    back; a console may call `take_over(controller, trigger, operator)` / `hand_back(trigger)` at any step instead.
    `operator` names who drives the runner's own expert (a demo's, or the simulated operator's takeovers);
    it defaults to `SIMULATED_OPERATOR` when a simulated operator is given.
    While another controller drives, the policy is still consulted (if `consult_policy`) so its proposals are
    recorded. A malformed policy action ends the episode as failed with `error` set; earlier frames are kept.
    """

    def __init__(
        self,
        env: AlohaSimEnv,
        seed: int | None,
        policy: PolicyLike | Controller | None = None,
        sim_operator: SimulatedOperator | None = None,
        max_steps: int | None = None,
        expert: ExpertController | None = None,
        consult_policy: bool = True,
        operator: str | None = None,
    ) -> None:
        self.env = env
        self.seed = seed
        self.max_steps = max_steps or env.config.max_steps
        if policy is not None and not isinstance(policy, Controller):
            policy = PolicyController(policy)
        self.policy: Controller | None = policy
        self.sim_operator = sim_operator
        self.operator = operator if operator is not None or sim_operator is None else SIMULATED_OPERATOR
        self.expert = expert or self._operator_expert(env.config.task, sim_operator)
        self.consult_policy = consult_policy
        self.driver: Controller = self.policy if self.policy is not None else self.expert
        self._driver_name: str | None = self.operator if self.policy is None else None
        self._states: list[np.ndarray] = []
        self._images: dict[str, list[np.ndarray]] = {}
        self._actions: list[np.ndarray] = []
        self._proposals: list[np.ndarray] = []
        self._proposal_valid: list[bool] = []
        self._rewards: list[float] = []
        self._codes: list[int] = []
        self._triggers: dict[int, str] = {}
        self._operators: dict[int, str] = {}
        self._pending_trigger: str | None = TRIGGER_START
        self.error: str | None = None
        self.success = False
        self.done = False
        self.t = 0
        self.obs, _ = env.reset(seed=seed)
        if sim_operator is not None:
            sim_operator.reset(seed, stage_patience=env.task.operator_patience)
        self.driver.reset(env)
        if self.policy is not None and self.driver is not self.policy:
            self.policy.reset(env)
        if self.driver is self.expert or (sim_operator and sim_operator.config.needs_expert_proposal):
            self.expert.reset(env)

    # ------------------------------------------------------------------ control switching
    def take_over(self, controller: Controller, trigger: str, operator: str | None = None) -> None:
        """Give control to `controller` (driven by `operator`) from the next step on (reset on the current state)."""
        controller.reset(self.env)
        self.driver = controller
        self._driver_name = operator
        self._pending_trigger = trigger

    def hand_back(self, trigger: str) -> None:
        """Return control to the policy (or keep the expert if there is no policy)."""
        target = self.policy if self.policy is not None else self.expert
        if target is not self.policy:
            target.reset(self.env)
        self.driver = target
        self._driver_name = None if target is self.policy else self.operator
        self._pending_trigger = trigger

    # ------------------------------------------------------------------ stepping
    def step(self) -> StepOutcome:
        """Advance one control step; raises RuntimeError once the episode is over."""
        if self.done:
            raise RuntimeError("episode is over; read result()")
        t = self.t
        proposal: np.ndarray | None = None
        policy_acting = self.driver is self.policy
        if self.policy is not None and (policy_acting or self.consult_policy):
            proposal, err = check_action(self.policy.act(self.obs, self.env), "policy", t)
            if err:
                return self._fail(err)
        if self.sim_operator is not None and self.policy is not None:
            self._sim_operator_decides(proposal)
            policy_acting = self.driver is self.policy
        if policy_acting:
            assert proposal is not None
            action = proposal
        else:
            action, err = check_action(self.driver.act(self.obs, self.env), self.driver.kind.value, t)
            if err:
                return self._fail(err)
            assert action is not None
        kind = self.driver.kind
        if self._pending_trigger is not None:
            self._triggers[t] = self._pending_trigger
            if self._driver_name:
                self._operators[t] = self._driver_name
            self._pending_trigger = None
        self._record(action, proposal, kind)
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._rewards.append(reward)
        self.obs = obs
        self.t += 1
        if self.sim_operator is not None:
            # physics only, for the operator: never part of the policy's observation
            self.sim_operator.observe(int(info["stage"]), self.env.task.approach_distance(self.env.data))
        self.success = bool(info["is_success"])
        self.done = terminated or truncated or self.t >= self.max_steps
        if isinstance(self.driver, ExpertController):
            info = {**info, "expert": self.driver.expert.status.as_info()}
        return StepOutcome(t, kind, action, reward, self.done, info)

    def _sim_operator_decides(self, proposal: np.ndarray | None) -> None:
        op = self.sim_operator
        assert op is not None and self.policy is not None
        expert_action = None
        if not op.in_control and op.config.needs_expert_proposal:
            expert_action = self.expert.propose(self.obs, self.env)
        decision = op.decide(proposal, expert_action)
        if not decision.switch:
            return
        assert decision.trigger is not None
        if op.in_control:
            self.take_over(self.expert, decision.trigger, self.operator)
        else:
            self.hand_back(decision.trigger)

    def _record(self, action: np.ndarray, proposal: np.ndarray | None, kind: ControllerKind) -> None:
        self._states.append(self.obs["state"])
        for cam, img in self.obs.get("images", {}).items():
            self._images.setdefault(cam, []).append(img)
        self._actions.append(action.astype(np.float32))
        valid = proposal is not None
        self._proposals.append(proposal.astype(np.float32) if valid else np.zeros(ACTION_DIM, np.float32))
        self._proposal_valid.append(valid)
        self._codes.append(CONTROLLER_CODES[kind])

    def _fail(self, message: str) -> StepOutcome:
        self.error = message
        self.success = False
        self.done = True
        return StepOutcome(self.t, self.driver.kind, np.zeros(ACTION_DIM), 0.0, True, {"error": message})

    @staticmethod
    def _operator_expert(task: str, sim_operator: SimulatedOperator | None) -> ExpertController:
        """The expert that drives demos, or takes over for the simulated operator with its settings."""
        align = sim_operator is None or sim_operator.config.align_handed_peg
        return ExpertController(task, make_expert(task, align_handed_peg=align))

    def run(self) -> EpisodeResult:
        while not self.done:
            self.step()
        return self.result()

    def result(self) -> EpisodeResult:
        """The episode so far (complete once `done`)."""
        frames = None
        segments: list[SegmentSpan] = []
        if self._states:
            codes = np.array(self._codes, dtype=np.uint8)
            frames = EpisodeFrames(
                state=np.stack(self._states),
                action=np.stack(self._actions),
                reward=np.array(self._rewards, dtype=np.float32),
                controller=codes,
                policy_action=np.stack(self._proposals),
                policy_action_valid=np.array(self._proposal_valid),
                images={cam: np.stack(imgs) for cam, imgs in self._images.items()},
            )
            segments = derive_segments(codes, self._triggers, self._operators)
        return EpisodeResult(
            task=self.env.config.task,
            seed=self.seed,
            frames=frames,
            segments=segments,
            success=self.success and self.error is None,
            episode_return=float(np.sum(self._rewards)),
            length=len(self._states),
            error=self.error,
            takeovers=self.sim_operator.takeovers if self.sim_operator is not None else 0,
        )


def run_episode(
    env: AlohaSimEnv,
    seed: int | None,
    policy: PolicyLike | Controller | None = None,
    sim_operator: SimulatedOperator | None = None,
    max_steps: int | None = None,
    operator: str | None = None,
) -> EpisodeResult:
    """Run one episode: policy-only (autonomous), expert-only (`policy=None`: demo), or policy + simulated operator."""
    return EpisodeRunner(env, seed, policy, sim_operator, max_steps, operator=operator).run()
