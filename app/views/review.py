"""Review & label: the queue of unreviewed episodes (interventions first), accept/reject, failure-mode labels,
undo. Every write carries the review version this page showed, so a concurrent change is a conflict message,
never a silent overwrite."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
import streamlit as st

from app.common import (
    current_operator,
    fmt_time,
    get_review,
    get_store,
    md_escape,
    password_gate,
    recorded_by,
    require_operator,
    show_errors,
)
from app.episode_view import render_episode
from flywheel.errors import FlywheelError
from flywheel.review import ReviewConflictError, ReviewService
from flywheel.store import EpisodeRecord, SegmentRecord

QUEUE_SHOWN = 50
SEEN = "review_seen_versions"  # episode id → the review_version this session loaded (what writes expect)
FLASH = "review_flash"  # (kind, message) shown once after a write
EPISODE_PARAM = "episode"  # ?episode=ID reviews that episode even when it is not in the queue


def seen_version(record: EpisodeRecord) -> int:
    """The version this session first saw; kept until a successful write or "Reload episode"."""
    seen: dict[int, int] = st.session_state.setdefault(SEEN, {})
    return seen.setdefault(record.id, record.review_version)


def forget_version(episode_id: int) -> None:
    st.session_state.setdefault(SEEN, {}).pop(episode_id, None)


def run_write(episode_id: int, write: Callable[[], Any], done: str) -> None:
    """Button callback body: run a service write, then flash the outcome (conflicts keep the stale version)."""
    try:
        write()
    except ReviewConflictError as exc:
        st.session_state[FLASH] = ("conflict", str(exc))
        return
    except FlywheelError as exc:
        st.session_state[FLASH] = ("error", str(exc))
        return
    forget_version(episode_id)
    st.session_state[FLASH] = ("success", done)


def _verdict(review: ReviewService, episode_id: int, version: int, verdict: str, author: str) -> None:
    def write() -> Any:
        return review.review(
            episode_id, author=author, expected_version=version, verdict=verdict, recorded_by=recorded_by()
        )

    run_write(episode_id, write, f"Episode {episode_id} {verdict} by {md_escape(author)}.")


def _label(review: ReviewService, episode_id: int, version: int, author: str) -> None:
    state = st.session_state
    segment_id = state.get("review_segment")
    mode = state.get("review_failure_mode")
    note = state.get("review_note")

    def write() -> Any:
        return review.label(
            episode_id,
            author=author,
            expected_version=version,
            failure_mode=mode,
            segment_id=segment_id,
            note=note,
            recorded_by=recorded_by(),
        )

    run_write(episode_id, write, f"Labelled episode {episode_id}: {mode}.")


def _undo(review: ReviewService, author: str) -> None:
    try:
        label = review.undo_last(author=author, recorded_by=recorded_by())
    except FlywheelError as exc:
        st.session_state[FLASH] = ("conflict" if isinstance(exc, ReviewConflictError) else "error", str(exc))
        return
    forget_version(label.episode_id)
    st.session_state[FLASH] = ("success", f"Undid your {label.summary} on episode {label.episode_id}.")


def show_flash() -> None:
    flash = st.session_state.pop(FLASH, None)
    if flash is None:
        return
    kind, message = flash
    if kind == "success":
        st.success(message)
    elif kind == "conflict":
        st.error(f"Conflict: {message}")
    else:
        st.error(message)


def queue_table(queue: list[EpisodeRecord]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "id": r.id,
                "tag": r.tag,
                "task": r.task,
                "policy": None if r.policy_version_id is None else f"v{r.policy_version_id}",
                "takeovers": sum(1 for s in r.segments if s.controller != "policy") if r.tag == "intervention" else 0,
                "success": r.success,
                "frames": r.length,
                "created (UTC)": fmt_time(r.created_at),
            }
            for r in queue
        ]
    )


def _segment_label(segment: SegmentRecord | None) -> str:
    if segment is None:
        return "whole episode"
    who = f" by {segment.operator}" if segment.operator else ""
    why = f" ({segment.trigger})" if segment.trigger else ""
    return f"frames {segment.start}–{segment.end}: {segment.controller}{who}{why}"


def pick_episode(queue: list[EpisodeRecord]) -> int | None:
    requested = st.query_params.get(EPISODE_PARAM, "")
    linked = int(requested) if requested.isdigit() else None
    options = [r.id for r in queue]
    if linked is not None and linked not in options:
        options.insert(0, linked)
    if not options:
        return None
    by_id = {r.id: r for r in queue}
    chosen = st.selectbox(
        "Queue item",
        options,
        index=options.index(linked) if linked is not None else 0,
        key="review_pick",
        format_func=lambda i: f"{i} · {by_id[i].tag} · {by_id[i].task}" if i in by_id else f"{i} (opened by link)",
    )
    return int(chosen)


def actions(review: ReviewService, record: EpisodeRecord, author: str | None) -> None:
    version = seen_version(record)
    if record.review_version != version:
        st.warning(
            f"Episode {record.id} changed since you opened it (review version {version} → {record.review_version}); "
            "press **Reload episode** to see the current state before changing it."
        )
    impact = review.rejection_impact(record.id)
    if impact.frames_removed:
        st.info(
            f"Rejecting removes **{impact.frames_removed} frames** from training — {impact.fraction:.1%} of the "
            f"{impact.training_frames} frames of `{impact.task}` that training uses now."
        )
    else:
        st.info("This episode is rejected: its frames are already excluded from training.")
    disabled = author is None
    cols = st.columns(4)
    cols[0].button(
        "Accept episode",
        key="review_accept",
        type="primary",
        shortcut="A",
        disabled=disabled,
        on_click=_verdict,
        args=(review, record.id, version, "accepted", author),
    )
    cols[1].button(
        "Reject episode",
        key="review_reject",
        shortcut="X",
        disabled=disabled,
        on_click=_verdict,
        args=(review, record.id, version, "rejected", author),
    )
    cols[2].button("Reload episode", key="review_reload", shortcut="L", on_click=forget_version, args=(record.id,))
    last = review.last_label(author, recorded_by()) if author else None
    cols[3].button(
        "Undo my last label",
        key="review_undo",
        shortcut="U",
        disabled=last is None,
        on_click=_undo,
        args=(review, author),
        help=None if last is None else f"Undo your {last.summary} on episode {last.episode_id}",
    )

    segments: list[SegmentRecord | None] = [None, *record.segments]
    modes = review.taxonomy.failure_modes
    descriptions = {m.name: m.description for m in modes}
    with st.form("review_label_form", clear_on_submit=True, border=True):
        st.markdown("**Label a failure**")
        left, right = st.columns(2)
        left.selectbox(
            "Segment",
            [None if s is None else s.id for s in segments],
            key="review_segment",
            format_func=lambda sid: _segment_label(next((s for s in record.segments if s.id == sid), None)),
        )
        right.selectbox(
            "Failure mode",
            [m.name for m in modes],
            key="review_failure_mode",
            format_func=lambda name: f"{name} — {descriptions[name]}" if descriptions.get(name) else name,
        )
        st.text_area("Note", key="review_note", max_chars=2000, placeholder="what went wrong, where")
        st.form_submit_button(
            "Save label", disabled=disabled, on_click=_label, args=(review, record.id, version, author)
        )


def label_history(review: ReviewService, episode_id: int) -> None:
    labels = review.labels(episode_id)
    if not labels:
        st.caption("No labels yet.")
        return
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "when (UTC)": fmt_time(lab.created_at),
                    "who": lab.author,
                    "what": lab.summary,
                    "note": lab.note,
                    "status before": lab.previous_status,
                    "undone": lab.undone,
                }
                for lab in labels
            ]
        ),
        hide_index=True,
        width="stretch",
    )


def main() -> None:
    st.title("Review & label")
    review, store = get_review(), get_store()
    author = current_operator()
    show_flash()
    size = review.queue_size()
    queue = review.queue(limit=QUEUE_SHOWN)
    waiting = sum(1 for r in queue if r.tag == "intervention")
    cols = st.columns(3)
    cols[0].metric("Unreviewed", size)
    cols[1].metric("Interventions in view", waiting)
    cols[2].metric("Reviewer", author or "—")
    if queue:
        st.dataframe(queue_table(queue), hide_index=True, width="stretch", height=min(220, 35 * (len(queue) + 1) + 3))
    else:
        st.success("The review queue is empty.")
    episode_id = pick_episode(queue)
    if episode_id is None:
        return
    record = store.get(episode_id)
    author = require_operator("review and label") if author is None else author
    actions(review, record, author)
    with st.expander("Labels of this episode", expanded=True):
        label_history(review, record.id)
    st.divider()
    render_episode(store, record, key="review")


password_gate()  # see app.common.password_gate: pages may run without console.py
with show_errors():
    main()
