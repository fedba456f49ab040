"""Teleop / Live: start a rollout, watch it, take over, jog each arm, expert assist, hand back, finish & save;
claim the scheduler's takeover requests in attended runs (`flywheel run --operator console`).

A thin view over `flywheel.live.SessionManager` (one per server process, owned by `app.live_owner`, out of
reach of Streamlit's "clear cache"); the browser
session keeps only the live session's id. Buttons have stable labels and keys (the browser test clicks them)
and keyboard shortcuts (Streamlit's `shortcut=`; they do not fire while typing in a text field).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import streamlit as st

from app.common import current_operator, get_store, md_escape, password_gate, settings, show_errors
from app.live_component import live_view
from app.live_owner import MANAGERS
from flywheel.errors import FlywheelError
from flywheel.live import (
    LiveConfig,
    LiveSession,
    LiveSessionError,
    LiveStatus,
    RolloutSpec,
    SessionManager,
    SessionNotFoundError,
)
from flywheel.registry import CHAMPION, PolicyRegistry
from sim.scene import CAMERAS

SESSION_KEY = "live_session_id"
FLASH_KEY = "live_flash"
ERROR_KEY = "live_error"
ERROR_SECONDS = 6.0
REQUESTS_REFRESH_SECONDS = 1.0
NO_POLICY_LABEL = "none (expert only)"

# (label suffix, axis, direction, shortcut) per arm; labels are "Left x+", "Right z-", ...
JOG_KEYS: dict[str, tuple[tuple[str, str, int, str], ...]] = {
    "left": (
        ("x+", "x", 1, "D"),
        ("x-", "x", -1, "A"),
        ("y+", "y", 1, "W"),
        ("y-", "y", -1, "S"),
        ("z+", "z", 1, "E"),
        ("z-", "z", -1, "Q"),
    ),
    "right": (
        ("x+", "x", 1, "L"),
        ("x-", "x", -1, "J"),
        ("y+", "y", 1, "I"),
        ("y-", "y", -1, "K"),
        ("z+", "z", 1, "O"),
        ("z-", "z", -1, "U"),
    ),
}
GRIPPER_KEYS = {"left": ("Z", "X"), "right": ("N", "M")}  # (open, close)
CONTROLLER_BADGES = {"policy": ":blue[policy]", "human": ":orange[human]", "expert": ":violet[expert]"}


def get_manager() -> SessionManager:
    """The process-wide live session manager for the configured database (closed at process exit)."""
    return MANAGERS.get(settings().model_dump_json(), lambda: SessionManager(get_store(), LiveConfig.from_env()))


def _operator() -> str:
    return current_operator() or "unknown"


def _identified() -> str:
    """The operator's name for an action that records it (takeover, assist, claim)."""
    name = current_operator()
    if name is None:
        raise LiveSessionError("enter your operator name in the sidebar first: every takeover records who did it")
    return name


def _run(action: Callable[[], Any], done: str | None = None) -> None:
    """Button callback body: a FlywheelError is shown (for a few seconds) instead of a traceback."""
    try:
        action()
        if done:
            st.session_state[FLASH_KEY] = done
    except FlywheelError as exc:
        st.session_state[ERROR_KEY] = (str(exc), time.monotonic())


def _session_or_none(manager: SessionManager) -> LiveSession | None:
    session_id = st.session_state.get(SESSION_KEY)
    if not session_id:
        return None
    try:
        return manager.get(session_id)
    except SessionNotFoundError as exc:
        st.session_state.pop(SESSION_KEY, None)
        st.session_state.setdefault(FLASH_KEY, str(exc))
        return None


def _messages() -> None:
    """The last action's outcome: a success note once, an error for ERROR_SECONDS (live-view refreshes)."""
    flash = st.session_state.pop(FLASH_KEY, None)
    if flash:
        st.success(flash)
    error = st.session_state.get(ERROR_KEY)
    if error:
        message, when = error
        if time.monotonic() - when > ERROR_SECONDS:
            st.session_state.pop(ERROR_KEY, None)
        else:
            st.error(message)


# -- start ----------------------------------------------------------------------------------------------------


def _policy_choices(registry: PolicyRegistry, task: str) -> dict[str, str | None]:
    """Label → policy reference for the select box: champion first, then every version of `task`, then none."""
    choices: dict[str, str | None] = {}
    champion = registry.alias(CHAMPION)
    versions = registry.list_versions(task)
    if champion is not None and any(v.id == champion for v in versions):
        choices[f"champion (v{champion})"] = CHAMPION
    for v in sorted(versions, key=lambda v: v.id, reverse=True):
        choices[f"v{v.id} · {v.status}"] = str(v.id)
    choices[NO_POLICY_LABEL] = None
    return choices


def _start_panel(manager: SessionManager) -> None:
    st.subheader("Start a rollout")
    from sim.tasks import TASKS

    cols = st.columns(4)
    task = cols[0].selectbox("Task", list(TASKS), key="live_task")
    cols[1].selectbox("Policy", list(_policy_choices(manager.registry, task)), key="live_policy")
    cols[2].number_input("Seed", min_value=0, max_value=2**31 - 1, value=0, step=1, key="live_seed")
    cols[3].selectbox("Camera", CAMERAS, key="live_camera")

    def start() -> None:  # reads the widgets' current values (a value changed together with the click counts)
        state = st.session_state
        task = state["live_task"]
        policy = _policy_choices(manager.registry, task).get(state["live_policy"], CHAMPION)
        spec = RolloutSpec(task=task, policy=policy, seed=int(state["live_seed"]), camera=state["live_camera"])
        session = manager.start(spec, _operator())
        state[SESSION_KEY] = session.id

    st.button("Start rollout", key="live_start", type="primary", on_click=_run, args=(start,))


def _requests_panel(manager: SessionManager) -> None:
    st.subheader("Takeover requests from the scheduler")

    @st.fragment(run_every=REQUESTS_REFRESH_SECONDS)
    def requests() -> None:
        with show_errors():
            waiting = manager.open_requests()
            if not waiting:
                st.caption("None waiting. In attended runs (`flywheel run --operator console`) they appear here.")
                return
            for req in waiting:
                cols = st.columns([5, 1])
                policy = f"v{req.policy_version_id}" if req.policy_version_id is not None else "policy"
                cols[0].markdown(
                    f"**#{req.id}** · {req.task} · seed {req.env_seed} · iteration {req.iteration} · {policy} "
                    f"stalled at step {req.step} (`{req.trigger}`) · {max(0, req.seconds_left()):.0f} s left"
                )

                def claim(request_id: int = req.id) -> None:
                    session = manager.claim(request_id, _identified())
                    st.session_state[SESSION_KEY] = session.id

                if cols[1].button(f"Claim request {req.id}", key=f"live_claim_{req.id}", on_click=_run, args=(claim,)):
                    st.rerun(scope="app")

    requests()


# -- live view ------------------------------------------------------------------------------------------------


def _controls(manager: SessionManager, session: LiveSession, status: LiveStatus) -> None:
    human = status.controller == "human"
    assisting = status.controller == "expert" and status.operator is not None
    done = status.done
    row = st.columns(7)
    row[0].button(
        "Play/Pause",
        key="live_play",
        shortcut="P",
        disabled=done or human,
        help="pause or resume the policy (or the assisting expert)",
        on_click=_run,
        args=(lambda: session.set_playing(not session.status().playing),),
    )
    row[6].button(
        "Step",
        key="live_step",
        shortcut="F",
        disabled=done or human or status.playing,
        help="advance one step while paused",
        on_click=_run,
        args=(lambda: session.advance(1),),
    )
    row[1].button(
        "Take over",
        key="live_take_over",
        shortcut="T",
        type="primary",
        disabled=done or human,
        help="a person drives from here (the operator name in the sidebar is recorded)",
        on_click=_run,
        args=(lambda: session.take_over(_identified()),),
    )
    row[2].button(
        "Expert assist",
        key="live_expert_assist",
        shortcut="G",
        disabled=done or assisting,
        on_click=_run,
        args=(lambda: session.expert_assist(_identified()),),
    )
    row[3].button(
        "Hand back",
        key="live_hand_back",
        shortcut="H",
        disabled=done or status.operator is None or session.setup.policy_checkpoint is None,
        on_click=_run,
        args=(session.hand_back,),
    )

    def finish() -> None:
        record = manager.finish(session.id)
        st.session_state.pop(SESSION_KEY, None)
        st.session_state[FLASH_KEY] = (
            f"Saved episode {record.id} as {record.tag} ({record.length} steps)" if record else "Nothing to save."
        )

    row[4].button("Finish & save", key="live_finish", shortcut="V", on_click=_run, args=(finish,))

    def discard() -> None:
        manager.discard(session.id)
        st.session_state.pop(SESSION_KEY, None)

    row[5].button("Discard", key="live_discard", on_click=_run, args=(discard, "Rollout discarded."))

    for col, arm in zip(st.columns(2), ("left", "right"), strict=True):
        with col:
            st.markdown(f"**{arm.capitalize()} arm**")
            name = arm.capitalize()
            jogs = JOG_KEYS[arm]
            for plus, minus in zip(jogs[0::2], jogs[1::2], strict=True):
                pair = st.columns(2)
                for cell, (suffix, axis, direction, key) in zip(pair, (plus, minus), strict=True):
                    cell.button(
                        f"{name} {suffix}",
                        key=f"live_jog_{arm}_{axis}_{'plus' if direction > 0 else 'minus'}",
                        shortcut=key,
                        disabled=not human,
                        on_click=_run,
                        args=(lambda a=arm, x=axis, d=direction: session.jog(a, x, d),),
                    )
            grip = st.columns(2)
            for cell, (word, key, open_) in zip(
                grip, (("open", GRIPPER_KEYS[arm][0], True), ("close", GRIPPER_KEYS[arm][1], False)), strict=True
            ):
                cell.button(
                    f"{name} {word}",
                    key=f"live_grip_{arm}_{word}",
                    shortcut=key,
                    disabled=not human,
                    on_click=_run,
                    args=(lambda a=arm, o=open_: session.gripper(a, o),),
                )
    st.caption(
        "Keys — take over T · expert assist G · hand back H · finish & save V · play/pause P · step F · "
        "left arm: x± D/A, y± W/S, z± E/Q, gripper open Z / close X · "
        "right arm: x± L/J, y± I/K, z± O/U, gripper open N / close M"
    )


def _live_panel(manager: SessionManager, session: LiveSession) -> None:
    session_id = session.id
    live_view(session.stream_token)  # outside the fragment: mounted once, streams until the session ends
    streaming = session.status().streaming  # then the component shows the frames: the status refreshes slowly
    config = manager.config

    @st.fragment(run_every=config.stream_refresh_s if streaming else config.refresh_s)
    def live() -> None:
        if st.session_state.get(SESSION_KEY) != session_id:  # saved or discarded by a button just now
            st.rerun(scope="app")
        try:
            session = manager.get(session_id)
        except SessionNotFoundError as exc:
            st.session_state.pop(SESSION_KEY, None)
            st.session_state.setdefault(FLASH_KEY, str(exc))
            st.rerun(scope="app")
        with show_errors():
            _messages()
            session.tick()
            status = session.status()
            if status.streaming != streaming:  # the stream attached or went away: refresh at the other rate
                st.rerun(scope="app")
            human = status.controller == "human"
            assisting = status.controller == "expert" and status.operator is not None
            view, info = st.columns([3, 2])
            with view:
                if status.streaming:
                    st.caption("The live view above streams the cameras; hold keys (or a gamepad) to drive.")
                else:  # no browser stream attached (yet): the refreshed still image
                    st.image(session.frame(), output_format="JPEG", caption=f"camera {status.camera}", width=480)
            with info:
                st.markdown(
                    f"**Step {status.t} / {status.max_steps}** · controller "
                    f"{CONTROLLER_BADGES.get(status.controller, status.controller)}"
                    + (f" · operator **{md_escape(status.operator)}**" if status.operator else "")
                )
                st.markdown(
                    f"stage {status.stage} / 4 · return {status.episode_return:.0f} · takeovers {status.takeovers}"
                    + (" · :green[success]" if status.success else "")
                    + ("" if status.playing or status.done or human else " · paused")
                )
                st.caption(f"{status.task} · policy {status.policy} · seed {status.seed}")
                if status.request_id is not None:
                    st.caption(f"answering takeover request #{status.request_id}")
                if status.claim_lost:
                    st.warning("The worker stopped waiting for this takeover: it will not be saved. Discard it.")
                if status.error:
                    st.error(status.error)
                if status.done:
                    st.info("Episode over: Finish & save it.")
                elif human:
                    st.info("You are in control: the simulation waits for your jog and gripper commands.")
                elif assisting:
                    st.info("The expert is finishing the task; Hand back returns control to the policy.")
            _controls(manager, session, status)

    live()


def main() -> None:
    password_gate()  # also here: a deep link to this page on a cold server can run it without app/console.py
    st.title("Teleop / Live")
    manager = get_manager()
    session = _session_or_none(manager)
    if session is None:
        _messages()  # (the live view shows them inside its fragment)
        _start_panel(manager)
        _requests_panel(manager)
    else:
        _live_panel(manager, session)


with show_errors():
    main()
