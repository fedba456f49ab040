"""One episode on screen: header, then the episode player (the cameras as video, recorded or re-rendered from
the stored state, with a scrubber, the controller timeline with takeover marks, and state and action plots, all
synced). Shared by the Episodes and Review pages."""

from __future__ import annotations

import numpy as np
import streamlit as st

from app.charts import controller_timeline
from app.common import fmt_time, md_escape, settings
from app.player_component import Series, episode_player, player_data
from flywheel.errors import FlywheelError
from flywheel.live.episode_video import EpisodeVideo, episode_video, views_dir
from flywheel.store import EpisodeRecord, EpisodeStore
from flywheel.vocab import EpisodeFrames
from sim.constants import CONTROL_DT

DEFAULT_DIMS = 7  # one arm's joints


def state_names(task: str, dim: int) -> list[str]:
    """Readable names of the state vector (`qpos:left_arm_waist`, `box_pose:x`...), else `s0`, `s1`..."""
    try:
        from sim import state_layout
        from sim.constants import JOINT_NAMES
        from sim.env import POSE_COMPONENTS, PROPRIOCEPTION

        layout = state_layout(task)
    except Exception:  # unknown task (e.g. imported data): positional names
        return [f"s{i}" for i in range(dim)]
    names = [f"s{i}" for i in range(dim)]
    for part, span in layout.items():
        labels = JOINT_NAMES if part in PROPRIOCEPTION else POSE_COMPONENTS
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
    """Header, then the player; a missing or corrupt file shows an error and the timeline only."""
    episode_header(record)
    frames = load_frames(store, record)
    if frames is None:
        if record.segments:
            st.altair_chart(controller_timeline(record.segments, record.length), width="stretch")
        return
    _frame_viewer(record, frames, key)


@st.fragment
def _frame_viewer(record: EpisodeRecord, frames: EpisodeFrames, key: str) -> None:
    """The episode player (video, scrubber, timeline, plots, played in the browser) and the plots' series pickers
    under it. Changing the series reruns only this fragment; the player keeps its position."""
    video, note = _video(record, frames)
    slot = st.container()
    plots = _plot_choices(record, frames, key)
    with slot:
        if note:
            st.caption(note)
        data = player_data(f"{key}_player", record, len(frames.state), 1.0 / CONTROL_DT, video, frames.reward, plots)
        episode_player(data, key=f"{key}_player")


def _video(record: EpisodeRecord, frames: EpisodeFrames) -> tuple[EpisodeVideo | None, str]:
    """The episode's cached video (made now if needed) and a note for the viewer."""
    try:
        with st.spinner("Preparing the episode's video (re-rendered from the stored physics state if needed)…"):
            video = episode_video(views_dir(settings().home), record.id, record.sha256, record.task, frames)
    except (FlywheelError, ValueError) as exc:
        return None, f"Cannot show pictures of this episode ({exc}): the timeline and plots only."
    if video.rerendered:
        return video, "No camera images were recorded: re-rendered from the stored physics state (cached)."
    return video, ""


def _plot_choices(record: EpisodeRecord, frames: EpisodeFrames, key: str) -> list[tuple[str, list[Series]]]:
    """The state and action series to plot (multiselects), with the policy's proposal overlaid on request."""
    s_names = state_names(record.task, frames.state.shape[1])
    a_names = action_names(frames.action.shape[1])
    left, right = st.columns(2)
    chosen_state = left.multiselect("State", s_names, default=s_names[:DEFAULT_DIMS], key=f"{key}_state_dims")
    chosen_action = right.multiselect("Action", a_names, default=a_names[:DEFAULT_DIMS], key=f"{key}_action_dims")
    show_policy = right.toggle(
        "Overlay the policy's proposal",
        value=False,
        key=f"{key}_policy_overlay",
        disabled=not bool(frames.policy_action_valid.any()),
    )
    state = [Series(name, frames.state[:, s_names.index(name)]) for name in chosen_state]
    action = [Series(name, frames.action[:, a_names.index(name)]) for name in chosen_action]
    if show_policy:
        for name in chosen_action:
            proposed = np.where(frames.policy_action_valid, frames.policy_action[:, a_names.index(name)], np.nan)
            action.append(Series(f"{name} (policy)", proposed, dashed=True))
    return [("state", state), ("executed action", action)]
