"""Jobs: the scheduler's lock holder, current iteration and phase, job states with attempts and heartbeats,
recent errors. Refreshes itself every few seconds (only this panel reruns)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app.common import fmt_time, get_store, password_gate, show_errors
from flywheel.dashboards import IterationInfo, JobInfo, SchedulerStatus, scheduler_status

REFRESH_S = 3.0


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    return f"{seconds / 60:.0f} min ago"


def lock_panel(status: SchedulerStatus) -> None:
    lock = status.lock
    if lock is None:
        st.info("No scheduler is running on this database (`flywheel run` takes the lock).")
        return
    text = (
        f"**{lock.holder}** — pid {lock.pid} on {lock.host}, since {fmt_time(lock.acquired_at)} UTC, "
        f"heartbeat {_age(lock.heartbeat_age_s)}"
    )
    if lock.stale:
        st.warning(f"Stale scheduler lock (no heartbeat for over a minute; the next run takes it over): {text}")
    else:
        st.success(f"Scheduler running: {text}")


def jobs_table(jobs: tuple[JobInfo, ...]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "job": j.kind,
                "state": j.state,
                "attempts": f"{j.attempts}/{j.max_attempts}",
                "progress": j.progress,
                "heartbeat": _age(j.heartbeat_age_s),  # set for running jobs only
                "started (UTC)": fmt_time(j.started_at),
                "finished (UTC)": fmt_time(j.finished_at),
                "error": j.error_line,
            }
            for j in jobs
        ]
    )


def current_panel(current: IterationInfo | None) -> None:
    if current is None:
        st.caption("No iteration has started yet.")
        return
    cols = st.columns(4)
    cols[0].metric("Iteration", current.number)
    cols[1].metric("Phase", current.phase or "done")
    cols[2].metric("State", current.state)
    cols[3].metric("Task", current.task)
    st.dataframe(
        jobs_table(current.jobs),
        hide_index=True,
        width="stretch",
        column_config={"progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0)},
    )


def errors_panel(status: SchedulerStatus) -> None:
    if not status.errors:
        st.caption("No job errors recorded.")
        return
    for job in status.errors:
        title = f"iteration {job.iteration} · {job.kind} · attempt {job.attempts}/{job.max_attempts} · {job.state}"
        with st.expander(f"{title}: {job.error_line}"):
            st.code(job.error or "", language=None)


def iterations_table(status: SchedulerStatus) -> None:
    rows = []
    for it in status.iterations:
        s = it.summary  # None until the iteration is done
        rows.append(
            {
                "iteration": it.number,
                "state": it.state,
                "phase": it.phase or "done",
                "episodes": s and s.episodes,
                "takeovers / episode": s and s.interventions_per_episode,
                "candidate": s and f"v{s.candidate}",
                "candidate success": s and s.candidate_success,
                "verdict": s and s.verdict,
                "started (UTC)": fmt_time(it.created_at),
                "finished (UTC)": fmt_time(it.finished_at),
            }
        )
    if rows:
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")


@st.fragment(run_every=REFRESH_S)
def live_panel() -> None:
    with show_errors():
        status = scheduler_status(get_store().db)
        lock_panel(status)
        st.subheader("Current iteration")
        current_panel(status.current)
        st.subheader("Recent errors")
        errors_panel(status)
        st.subheader("Iterations")
        iterations_table(status)
        st.caption(f"Refreshes every {REFRESH_S:.0f} s.")


password_gate()  # see app.common.password_gate: pages may run without console.py
st.title("Jobs")
live_panel()
