"""One live teleop session: a rollout the console watches, takes over, jogs, assists and hands back.

Each session owns one worker thread, and everything touching the simulation (env, renderer, policy) runs on it:
MuJoCo's EGL contexts are bound to the thread that made them current, and Streamlit calls from whichever thread
serves a rerun. Public methods take the session lock and run their body on that thread, so concurrent reruns
are serialized per session. While a person is in control the simulation waits; each jog or gripper press
advances it by a configured number of steps. A live stream (flywheel/live/stream.py) drives the same session
continuously instead: `drive` once per control step with the held velocities, `encoded_views` for its frames.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from flywheel.collect.takeover_requests import ClaimLostError, TakeoverRequests
from flywheel.live.config import ARM_AXES, LiveConfig
from flywheel.live.errors import LiveSessionError, NotInControlError, ReplayMismatchError, SessionOverError
from flywheel.live.owner_thread import OwnerThread
from flywheel.live.video import encode_jpeg, project_points
from flywheel.store import EpisodeRecord, EpisodeStore, NewEpisode
from flywheel.vocab import DEFAULT_CAMERA, DEFAULT_IMAGE_SIZE, ControllerKind, Tag

T = TypeVar("T")

TRIGGER_CONSOLE = "console"
TRIGGER_EXPERT_ASSIST = "console_expert_assist"
TRIGGER_HAND_BACK = "console_hand_back"
WRIST_CAMERAS = {"left": "left_wrist", "right": "right_wrist"}


@dataclass(frozen=True)
class Claim:
    """A scheduler takeover request this session answers: replay `actions`, expect `state`, then take over."""

    request_id: int
    token: str
    trigger: str
    actions: np.ndarray
    state: np.ndarray


@dataclass(frozen=True)
class SessionSetup:
    """Everything needed to build a session (resolved by the manager from a RolloutSpec or a request)."""

    task: str
    seed: int
    camera: str
    source_key: str
    max_steps: int = 400
    obs_mode: str = "state"
    obs_cameras: tuple[str, ...] = (DEFAULT_CAMERA,)
    obs_image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE
    policy_label: str = "none (expert)"
    policy_checkpoint: str | None = None
    policy_sha256: str | None = None
    policy_version_id: int | None = None
    iteration: int | None = None
    claim: Claim | None = None


@dataclass(frozen=True)
class LiveStatus:
    """A consistent snapshot of a session for the live view."""

    session_id: str
    task: str
    seed: int
    policy: str
    camera: str
    t: int
    max_steps: int
    controller: str
    operator: str | None
    stage: int
    episode_return: float
    success: bool
    done: bool
    playing: bool
    takeovers: int
    error: str | None
    request_id: int | None
    claim_lost: bool
    saved_episode_id: int | None
    drive_mode: str = "step_wait"
    streaming: bool = False


class LiveSession:
    """A rollout driven step by step from the console (see the module docstring for threading)."""

    def __init__(
        self,
        session_id: str,
        setup: SessionSetup,
        config: LiveConfig,
        operator: str,
        store: EpisodeStore,
        requests: TakeoverRequests,
    ) -> None:
        self.id = session_id
        self.setup = setup
        self.config = config
        self.operator = operator
        self.store = store
        self.requests = requests
        self.claim = setup.claim
        self.claim_lost = False
        self.saved: EpisodeRecord | None = None
        self.playing = True
        self.last_seen = time.monotonic()
        self._lock = threading.Lock()
        self._closed = False
        self._thread = OwnerThread(f"flywheel-live-{session_id[:8]}")
        self._stage = 0
        self._return = 0.0
        self._success = False
        self._takeovers = 0
        self._in_control: str | None = None
        self._frame: np.ndarray | None = None
        self._frame_key: tuple[int, int] | None = None
        self._version = 0
        self.stream_token = secrets.token_urlsafe(32)
        self.drive_mode = config.drive_mode
        self.driven_arm = "right"
        self._stream_attached = False
        self._views: tuple[tuple[int, int, tuple[str, ...]], list[tuple[str, bytes]]] | None = None
        try:
            self._call(self._build)
        except BaseException:
            try:
                self._thread.call(self._release)
            finally:
                self._thread.stop()
            raise
        self.touch()

    # ------------------------------------------------------------------ plumbing
    def _call(self, fn: Any, *args: Any) -> Any:
        with self._lock:
            if self._closed:
                raise SessionOverError(f"live session {self.id[:8]} is over; start a new rollout")
            self.touch()
            return self._thread.call(fn, *args)

    def touch(self) -> None:
        self.last_seen = time.monotonic()

    def idle_seconds(self, now: float | None = None) -> float:
        return (now if now is not None else time.monotonic()) - self.last_seen

    @property
    def closed(self) -> bool:
        return self._closed

    # ------------------------------------------------------------------ build (session thread)
    def _build(self) -> None:
        from flywheel.live.replay import ReplayThenPolicy
        from sim import EpisodeRunner, ExpertController, PolicyController, TeleopController, make_env
        from sim.kinematics import ArmKinematics
        from sim.render import CameraRenderer

        s = self.setup
        self.env = make_env(
            s.task, obs_mode=s.obs_mode, cameras=s.obs_cameras, image_size=s.obs_image_size, max_steps=s.max_steps
        )
        h, w = self.config.image_size
        try:
            cameras = tuple(dict.fromkeys((s.camera, *WRIST_CAMERAS.values())))
            self.renderer = CameraRenderer(self.env.model, cameras, h, w, lighting=self.config.lighting)
        except ValueError as exc:
            raise LiveSessionError(str(exc)) from None
        policy: Any = None
        if s.policy_checkpoint is not None:
            from flywheel.policy.runner import PolicyRunner

            policy = PolicyController(PolicyRunner.load(s.policy_checkpoint, expected_sha256=s.policy_sha256))
        if self.claim is not None:
            policy = ReplayThenPolicy(self.claim.actions, policy)
        self.teleop = TeleopController()
        self.expert = ExpertController(s.task)
        self.kinematics = ArmKinematics(self.env.model)
        self.runner = EpisodeRunner(self.env, s.seed, policy, None, s.max_steps, expert=self.expert)
        if self.claim is not None:
            self._replay(self.claim)

    def _replay(self, claim: Claim) -> None:
        """Re-run the worker's actions from the seed; refuse if the state differs from the recorded one."""
        runner = self.runner
        for t in range(len(claim.actions)):
            outcome = runner.step()
            if runner.error is not None or runner.done or outcome.controller is not ControllerKind.POLICY:
                raise ReplayMismatchError(
                    f"replay of takeover request {claim.request_id} stopped at step {t}: "
                    f"{runner.error or 'the episode ended early'}"
                )
            self._note(outcome)
        state = np.asarray(runner.obs["state"], dtype=np.float32)
        diff = float(np.abs(state - claim.state).max()) if state.shape == claim.state.shape else float("inf")
        if diff > 1e-5:
            raise ReplayMismatchError(
                f"replaying takeover request {claim.request_id} did not reach the recorded state "
                f"(max difference {diff:.2e}); the worker falls back to the simulated operator"
            )
        runner.take_over(self.teleop, claim.trigger, self.operator)
        self._in_control = self.operator
        self._takeovers += 1
        self.playing = False

    def _release(self) -> None:
        renderer = getattr(self, "renderer", None)
        if renderer is not None:
            renderer.close()
            self.renderer = None
        env = getattr(self, "env", None)
        if env is not None:
            env.close()

    # ------------------------------------------------------------------ stepping (session thread)
    def _note(self, outcome: Any) -> None:
        self._stage = int(outcome.info.get("stage", outcome.reward))
        self._return += float(outcome.reward)
        self._success = bool(outcome.info.get("is_success", False))
        self._version += 1

    def _step(self, n: int) -> int:
        done = 0
        while done < n and not self.runner.done:
            self._note(self.runner.step())
            done += 1
        return done

    def _human_driving(self) -> bool:
        return self.runner.driver is self.teleop

    def _require_human(self, what: str) -> None:
        if self.runner.done:
            raise SessionOverError("the episode is over: Finish & save it")
        if not self._human_driving():
            raise NotInControlError(f"{what} needs a person in control: press Take over first")

    # ------------------------------------------------------------------ commands
    def advance(self, steps: int = 1) -> int:
        """Advance up to `steps` while the policy or the expert drives (a person in control: nothing happens)."""

        def body() -> int:
            return 0 if self._human_driving() else self._step(steps)

        return int(self._call(body))

    def tick(self) -> int:
        """One live-view refresh: `steps_per_tick` steps when playing and not under human control (nothing while a
        live stream drives the session: it advances at the control rate itself)."""
        return self.advance(self.config.steps_per_tick) if self.playing and not self._stream_attached else 0

    def set_playing(self, playing: bool) -> None:
        with self._lock:
            self.playing = playing

    def take_over(self, operator: str | None = None) -> None:
        """A person takes control from the next step on (trigger `console`); the simulation waits for jogs."""
        who = operator or self.operator

        def body() -> None:
            if self.runner.done:
                raise SessionOverError("the episode is over: Finish & save it")
            if self._human_driving():
                return
            if self._in_control is None:
                self._takeovers += 1
            self.runner.take_over(self.teleop, TRIGGER_CONSOLE, who)
            self._in_control = who
            self._version += 1

        self._call(body)

    def expert_assist(self, operator: str | None = None) -> None:
        """The closed-loop expert drives from the current state (it runs while playing or on `advance`)."""
        who = operator or self.operator

        def body() -> None:
            if self.runner.done:
                raise SessionOverError("the episode is over: Finish & save it")
            if self.runner.driver is self.expert and self._in_control is not None:
                return
            if self._in_control is None:
                self._takeovers += 1
            self.runner.take_over(self.expert, TRIGGER_EXPERT_ASSIST, who)
            self._in_control = who
            self.playing = True
            self._version += 1

        self._call(body)

    def hand_back(self) -> None:
        """Control returns to the policy (or to the expert in a rollout without a policy)."""

        def body() -> None:
            if self._in_control is None:
                return
            self.runner.hand_back(TRIGGER_HAND_BACK)
            self._in_control = None
            self.playing = True
            self._version += 1

        self._call(body)

    def jog(self, arm: str, axis: str, direction: int) -> Any:
        """Move `arm`'s end effector one jog step along world `axis` (x/y/z), direction ±1; then step the sim."""
        if axis not in ARM_AXES or direction not in (-1, 1):
            raise LiveSessionError(f"jog axis must be one of {', '.join(ARM_AXES)} and direction ±1")
        delta = np.zeros(3)
        delta[ARM_AXES.index(axis)] = direction * self.config.jog_step_m
        return self.jog_delta(arm, delta)

    def jog_delta(self, arm: str, delta: np.ndarray) -> Any:
        def body() -> Any:
            self._require_human("Jogging")
            try:
                result = self.teleop.jog(arm, delta)
            except ValueError as exc:
                raise LiveSessionError(str(exc)) from None
            self._step(self.config.jog_sim_steps)
            return result

        return self._call(body)

    def gripper(self, arm: str, open_: bool) -> None:
        def body() -> None:
            self._set_gripper(arm, open_)
            self._step(self.config.gripper_sim_steps)

        self._call(body)

    def _set_gripper(self, arm: str, open_: bool) -> None:
        self._require_human("The gripper")
        try:
            self.teleop.set_gripper(arm, open_)
        except ValueError as exc:
            raise LiveSessionError(str(exc)) from None

    # ------------------------------------------------------------------ live stream
    def attach_stream(self) -> None:
        """Mark a live stream as driving this session; refused while another one does (one driver at a time)."""
        with self._lock:
            if self._closed:
                raise SessionOverError(f"live session {self.id[:8]} is over; start a new rollout")
            if self._stream_attached:
                raise LiveSessionError(f"live session {self.id[:8]} is already streamed to another browser tab")
            self._stream_attached = True

    def detach_stream(self) -> None:
        """The stream is gone: stop the arms where they are (the session stays open, under the idle timeout)."""
        with self._lock:
            self._stream_attached = False
        if not self._closed:
            with contextlib.suppress(SessionOverError):
                self.stop_motion()

    def set_drive_mode(self, mode: str) -> None:
        if mode not in ("realtime", "step_wait"):
            raise LiveSessionError(f"drive mode must be realtime or step_wait, got {mode!r}")
        with self._lock:
            self.drive_mode = mode

    def stop_motion(self) -> None:
        """Hold each arm at its current setpoint: nothing a held input asked for is still pending."""

        def body() -> None:
            if self.teleop.targets:
                for arm, motion in self.teleop.motion.items():
                    self.teleop.targets[arm] = motion.setpoint

        self._call(body)

    def drive(self, velocity: dict[str, tuple[float, float, float]], due_steps: int) -> int:
        """One stream control step. A person in control: move each arm's target by its held velocity (a fraction
        of `drive_speed_mps`) over one control period and step once (in realtime mode also with nothing held: up
        to `due_steps`); step-wait with nothing held steps nothing. The policy or an assisting expert playing:
        up to `due_steps` steps. Returns the steps taken."""
        from sim.constants import CONTROL_DT

        scale = self.config.drive_speed_mps * CONTROL_DT

        def body() -> int:
            if self.runner.done:
                return 0
            if not self._human_driving():
                return self._step(due_steps) if self.playing else 0
            held = False
            for arm, v in velocity.items():
                if any(v):
                    held = True
                    self.driven_arm = arm
                    try:
                        self.teleop.jog(arm, np.asarray(v, dtype=np.float64) * scale)
                    except ValueError as exc:
                        raise LiveSessionError(str(exc)) from None
            if held:
                return self._step(1)
            return self._step(due_steps) if self.drive_mode == "realtime" else 0

        return int(self._call(body))

    def set_gripper(self, arm: str, open_: bool) -> None:
        """Open or close a gripper from the stream: realtime mode lets the running sim close it; step-wait
        advances `gripper_sim_steps` like the button does."""
        if self.drive_mode == "step_wait":
            self.gripper(arm, open_)
            return

        self._call(lambda: self._set_gripper(arm, open_))

    def stream_cameras(self) -> tuple[str, ...]:
        """What the live stream shows: the display camera and the wrist camera of the arm driven last."""
        return tuple(dict.fromkeys((self.setup.camera, WRIST_CAMERAS[self.driven_arm])))

    def encoded_views(self) -> tuple[bool, list[tuple[str, bytes]], dict[str, Any]]:
        """(new since the last call?, [(camera, JPEG)], overlay): the stream cameras' images of the current state,
        rendered and encoded once per state, with the policy's proposal projected into the display camera."""
        quality = self.config.stream_quality

        def body() -> tuple[bool, list[tuple[str, bytes]], dict[str, Any]]:
            cameras = self.stream_cameras()
            key = (self.runner.t, self._version, cameras)
            if self._views is not None and self._views[0] == key:
                return False, self._views[1], {}
            images = self.renderer.render(self.env.data, cameras)
            encoded = [(cam, encode_jpeg(images[cam], quality)) for cam in cameras]
            self._views = (key, encoded)
            return True, encoded, self._overlay()

        return self._call(body)

    def _overlay(self) -> dict[str, Any]:
        """Depth aids and the policy's intent: each tool centre point and the task's objects in world metres, and
        (when the policy was consulted this step) where its proposal would put each TCP, in the display camera's
        pixels next to where the TCP is now."""
        tcp = {arm: self.kinematics.tcp_pose(self.env.data, arm).pos for arm in WRIST_CAMERAS}
        objects = [self.env.object_pose(i)[:3] for i in range(len(self.env.task.objects))]
        overlay: dict[str, Any] = {
            "camera": self.setup.camera,
            "driven_arm": self.driven_arm,
            "tcp": {arm: [round(float(c), 4) for c in pos] for arm, pos in tcp.items()},
            "objects": [[round(float(c), 4) for c in pos] for pos in objects],
        }
        proposals = getattr(self.runner, "_proposals", None)
        valid = getattr(self.runner, "_proposal_valid", None)
        if not proposals or not valid or not valid[-1]:
            return overlay
        proposal = np.asarray(proposals[-1], dtype=np.float64)
        points, labels = [], []
        for i, arm in enumerate(WRIST_CAMERAS):
            points += [tcp[arm], self.kinematics.forward(arm, proposal[7 * i : 7 * i + 6]).pos]
            labels += [f"{arm}_now", f"{arm}_policy"]
        h, w = self.config.image_size
        pixels = project_points(self.env.model, self.env.data, self.setup.camera, np.array(points), h, w)
        overlay["points"] = {
            name: None if p is None else [round(p[0], 1), round(p[1], 1)]
            for name, p in zip(labels, pixels, strict=True)
        }
        overlay["policy_gripper"] = {arm: round(float(proposal[7 * i + 6]), 2) for i, arm in enumerate(WRIST_CAMERAS)}
        return overlay

    # ------------------------------------------------------------------ views
    def frame(self) -> np.ndarray:
        """The display camera's image of the current state (cached until the state changes)."""

        def body() -> np.ndarray:
            key = (self.runner.t, self._version)
            if self._frame is None or self._frame_key != key:
                self._frame = self.renderer.render(self.env.data, (self.setup.camera,))[self.setup.camera]
                self._frame_key = key
            return self._frame

        return self._call(body)

    def tcp_position(self, arm: str) -> np.ndarray:
        """World position of `arm`'s tool centre point now."""
        return self._call(lambda: self.kinematics.tcp_pose(self.env.data, arm).pos.copy())

    def status(self) -> LiveStatus:
        with self._lock:
            runner = self.runner
            return LiveStatus(
                session_id=self.id,
                task=self.setup.task,
                seed=self.setup.seed,
                policy=self.setup.policy_label,
                camera=self.setup.camera,
                t=runner.t,
                max_steps=runner.max_steps,
                controller=runner.driver.kind.value,
                operator=self._in_control,
                stage=self._stage,
                episode_return=self._return,
                success=self._success,
                done=runner.done,
                playing=self.playing and not runner.done,
                takeovers=self._takeovers,
                error=runner.error,
                request_id=self.claim.request_id if self.claim else None,
                claim_lost=self.claim_lost,
                saved_episode_id=self.saved.id if self.saved else None,
                drive_mode=self.drive_mode,
                streaming=self._stream_attached,
            )

    # ------------------------------------------------------------------ claims
    def beat(self) -> bool:
        """Keep this session's takeover claim alive; False once the worker has given up on it."""
        if self.claim is None or self.claim_lost:
            return not self.claim_lost
        if not self.requests.heartbeat(self.claim.request_id, self.claim.token):
            self.claim_lost = True
        return not self.claim_lost

    # ------------------------------------------------------------------ ending
    def finish(self, interrupted: str | None = None) -> EpisodeRecord | None:
        """Store the episode so far (None if it has no frame) and release the session; idempotent.

        `interrupted`: why the session ended without the operator finishing it (idle past the timeout, the console
        shut down) — saved up to here with success False and the reason as the episode's error. For a claimed takeover
        request the episode goes under the worker's source key and the request is completed with it.
        """

        def body() -> EpisodeRecord | None:
            if self.saved is not None:
                return self.saved
            if self.claim is not None and not self.beat():
                raise ClaimLostError(
                    f"takeover request {self.claim.request_id} was given up by its worker (no heartbeat in time): "
                    "the simulated operator finished that episode, this takeover is not saved"
                )
            new = self._new_episode(interrupted)
            if new is None:
                return None
            record = self.store.add(new)
            if self.claim is not None:
                self.requests.complete(self.claim.request_id, self.claim.token, record.id)
            self.saved = record
            return record

        try:
            return self._call(body)
        finally:
            if self.saved is not None or self.claim_lost:
                self.close()

    def _new_episode(self, interrupted: str | None) -> NewEpisode | None:
        result = self.runner.result()
        if result.frames is None:
            return None
        tag = result.frames.tag
        named = [s.operator for s in result.segments if s.controller is not ControllerKind.POLICY and s.operator]
        error = result.error
        if interrupted is not None:
            error = f"live session ended early ({interrupted}): saved up to step {result.length}"
        return NewEpisode(
            task=self.setup.task,
            frames=result.frames,
            env_seed=self.setup.seed,
            success=bool(result.success) and interrupted is None,
            policy_version_id=None if tag is Tag.DEMO else self.setup.policy_version_id,
            iteration=self.setup.iteration,
            operator=named[0] if named else None,
            error=error,
            source_key=self.setup.source_key,
            segments=result.segments,
        )

    def discard(self, note: str = "discarded in the console") -> None:
        """Drop the episode; a claimed request is released so its worker continues at once."""
        if self.claim is not None and not self.claim_lost:
            self.requests.release(self.claim.request_id, self.claim.token, note)
        self.close()

    def close(self) -> None:
        """Free the env, renderer and thread (nothing is saved)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._thread.call(self._release)
            finally:
                self._thread.stop()
