"""One episode on screen: header, frame scrubber over camera images (or the state), controller timeline,
state and action plots. Shared by the Episodes and Review pages."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from app.charts import controller_timeline, series_chart
from app.common import fmt_time, md_escape, settings
from flywheel.errors import FlywheelError
from flywheel.store import EpisodeRecord, EpisodeStore
from flywheel.vocab import EpisodeFrames

DEFAULT_DIMS = 7  # one arm's joints


def state_names(task: str, dim: int) -> list[str]:
    """Readable names of the state vector (`qpos:left_arm_waist`, `box_pose:x`...), else `s0`, `s1`..."""
    try:
        from sim import state_layout
        from sim.constants import JOINT_NAMES

        layout = state_layout(task)
    except Exception:  # unknown task (e.g. imported data): positional names
        return [f"s{i}" for i in range(dim)]
    names = [f"s{i}" for i in range(dim)]
    pose = ("x", "y", "z", "qw", "qx", "qy", "qz")
    for part, span in layout.items():
        labels = JOINT_NAMES if part in ("qpos", "qvel") else pose
        for offset, index in enumerate(range(span.start, min(span.stop, dim))):
            names[index] = f"{part}:{labels[offset]}"
    return names


def action_names(dim: int) -> list[str]:
    from sim.constants import JOINT_NAMES

    return list(JOINT_NAMES) if dim == len(JOINT_NAMES) else [f"a{i}" for i in range(dim)]


TAG_BADGES = {"demo": "green", "autonomous": "blue", "intervention": "orange"}
REVIEW_BADGES = {"unreviewed": "gray", "accepted": "green", "rejected": "red"}


def episode_header(record: EpisodeRecord) -> None:
    st.subheader(f"Episode {record.id}")
    policy = "no policy (demo)" if record.policy_version_id is None else f"policy v{record.policy_version_id}"
    outcome = ":green[success]" if record.success else ":red[failure]"
    st.markdown(
        f":{TAG_BADGES.get(record.tag, 'gray')}-badge[{record.tag}] "
        f":{REVIEW_BADGES.get(record.review_status, 'gray')}-badge[{record.review_status}] "
        f"**{record.task}** · {policy} · {outcome} · {record.length} frames"
    )
    details = (
        f"seed {record.env_seed} · iteration {'—' if record.iteration is None else record.iteration} · "
        f"return {record.episode_return:.1f} · operator {md_escape(record.operator or '—')}"
        + (f" (dataset claims {md_escape(record.claimed_operator)})" if record.claimed_operator else "")
        + f" · {fmt_time(record.created_at)} UTC"
    )
    st.caption(details)
    if record.error:
        st.warning(f"The rollout ended with an error: {record.error}")


def load_frames(store: EpisodeStore, record: EpisodeRecord) -> EpisodeFrames | None:
    """The episode's frames (checksum verified), or None after an st.error saying what is wrong with the file."""
    try:
        return store.read_record_frames(record)
    except FlywheelError as exc:
        st.error(f"Cannot show the frames of episode {record.id}: {exc}")
        return None


def render_episode(store: EpisodeStore, record: EpisodeRecord, key: str) -> None:
    """Header, then the frame viewer; a missing or corrupt file shows an error and the timeline only."""
    episode_header(record)
    frames = load_frames(store, record)
    if frames is None:
        if record.segments:
            st.altair_chart(controller_timeline(record.segments, record.length), width="stretch")
        return
    _frame_viewer(record, frames, key)


@st.fragment
def _frame_viewer(record: EpisodeRecord, frames: EpisodeFrames, key: str) -> None:
    """Scrubbing reruns only this fragment, not the whole page."""
    last = len(frames) - 1
    slider_key = f"{key}_frame"
    _takeover_jumps(record, slider_key, last)
    t = st.slider("Frame", 0, last, 0, key=slider_key) if last > 0 else 0
    if frames.images:
        cols = st.columns(len(frames.images))
        for col, (camera, images) in zip(cols, sorted(frames.images.items()), strict=True):
            col.image(images[t], caption=f"{camera} · frame {t}", width="stretch")
    else:
        rendered = _rerendered(record, frames)
        if rendered is not None:
            st.caption("No camera images were recorded: re-rendered from the stored physics state (cached).")
            cols = st.columns(len(rendered))
            for col, (camera, jpegs) in zip(cols, rendered.items(), strict=True):
                col.image(jpegs[t], caption=f"{camera} · frame {t}", width="stretch")
        names = state_names(record.task, frames.state.shape[1])
        st.dataframe(
            pd.DataFrame({"value": frames.state[t]}, index=pd.Index(names, name="state")).T,
            width="stretch",
        )
    controller = _controller_at(record, t)
    reward = float(frames.reward[t])
    st.caption(f"frame {t}: controller **{controller}**, reward {reward:.0f}")
    st.altair_chart(controller_timeline(record.segments, record.length, cursor=t), width="stretch")
    _plots(record, frames, key, t)


def _takeover_jumps(record: EpisodeRecord, slider_key: str, last: int) -> None:
    """A button per takeover boundary (start and end of each segment a person or the expert drove) that moves
    the frame scrubber there (before the slider is drawn, so the value applies in this run)."""
    marks = [
        (f"{s.controller} by {s.operator or '—'}: start {s.start}", s.start, f"{slider_key}_jump_{s.start}")
        for s in record.segments
        if s.controller != "policy" and record.policy_version_id is not None
    ] + [
        (f"end {min(s.end, last)}", min(s.end, last), f"{slider_key}_jump_end_{s.end}")
        for s in record.segments
        if s.controller != "policy" and record.policy_version_id is not None
    ]
    if not marks or last <= 0:
        return
    marks.sort(key=lambda m: m[1])
    cols = st.columns(min(len(marks), 6))
    for i, (label, frame, button_key) in enumerate(marks):
        if cols[i % len(cols)].button(f"⏭ {label}", key=button_key):
            st.session_state[slider_key] = frame


def _rerendered(record: EpisodeRecord, frames: EpisodeFrames) -> dict[str, list[bytes]] | None:
    """The state-only episode's cameras re-rendered from its stored states (disk cache under <home>/cache)."""
    from flywheel.live.episode_video import rendered_episode

    try:
        with st.spinner("Re-rendering the episode from its stored physics state…"):
            return rendered_episode(
                settings().home / "cache" / "episode-views", record.id, record.sha256, record.task, frames.state
            )
    except (FlywheelError, ValueError) as exc:
        st.caption(f"Cannot re-render this episode ({exc}): showing the state at this frame.")
        return None


def _controller_at(record: EpisodeRecord, t: int) -> str:
    return next((s.controller for s in record.segments if s.start <= t < s.end), "?")


def _plots(record: EpisodeRecord, frames: EpisodeFrames, key: str, t: int) -> None:
    s_names = state_names(record.task, frames.state.shape[1])
    a_names = action_names(frames.action.shape[1])
    left, right = st.columns(2)
    with left:
        chosen = st.multiselect("State", s_names, default=s_names[:DEFAULT_DIMS], key=f"{key}_state_dims")
        if chosen:
            idx = [s_names.index(n) for n in chosen]
            st.altair_chart(
                series_chart(pd.DataFrame(frames.state[:, idx], columns=chosen), "state", t),
                width="stretch",
            )
    with right:
        chosen = st.multiselect("Action", a_names, default=a_names[:DEFAULT_DIMS], key=f"{key}_action_dims")
        show_policy = st.toggle(
            "Overlay the policy's proposal",
            value=False,
            key=f"{key}_policy_overlay",
            disabled=not bool(frames.policy_action_valid.any()),
        )
        if chosen:
            idx = [a_names.index(n) for n in chosen]
            data = pd.DataFrame(frames.action[:, idx], columns=chosen)
            if show_policy:
                proposed = np.where(frames.policy_action_valid[:, None], frames.policy_action[:, idx], np.nan)
                data = data.join(pd.DataFrame(proposed, columns=[f"{n} (policy)" for n in chosen]))
            st.altair_chart(series_chart(data, "executed action", t), width="stretch")
