"""Episodes: filter the store (tag, task, policy, success, review status, date) and look at one episode."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pandas as pd
import streamlit as st

from app.common import fmt_time, get_store, password_gate, show_errors
from app.episode_view import render_episode
from flywheel.dashboards import episode_facets
from flywheel.store import EpisodeFilter, EpisodeRecord
from flywheel.store.models import REVIEW_STATUSES
from flywheel.vocab import TAGS

PAGE_SIZE = 200
ANY = "any"
EPISODE_PARAM = "episode"  # ?episode=ID opens that episode (links from other pages)


def _day_start(day: date | None) -> datetime | None:
    return None if day is None else datetime.combine(day, time.min, tzinfo=UTC)


def _drop_link() -> None:
    """Changing a filter leaves a deep link behind: the list decides again."""
    st.query_params.pop(EPISODE_PARAM, None)


def _follow_selection() -> None:
    st.query_params[EPISODE_PARAM] = str(st.session_state["ep_selected"])


def filters_form() -> EpisodeFilter:
    facets = episode_facets(get_store().db)
    cols = st.columns(7)
    on = {"on_change": _drop_link}
    tag = cols[0].selectbox("Tag", [ANY, *TAGS], key="ep_tag", **on)
    task = cols[1].selectbox("Task", [ANY, *facets.tasks], key="ep_task", **on)
    policy = cols[2].selectbox(
        "Policy", [ANY, *facets.policy_ids], key="ep_policy", format_func=lambda p: p if p == ANY else f"v{p}", **on
    )
    success = cols[3].selectbox("Success", [ANY, "yes", "no"], key="ep_success", **on)
    review = cols[4].selectbox("Review", [ANY, *REVIEW_STATUSES], key="ep_review", **on)
    since = cols[5].date_input("From (UTC)", value=None, key="ep_since", **on)
    until = cols[6].date_input("To (UTC)", value=None, key="ep_until", **on)
    return EpisodeFilter(
        tag=None if tag == ANY else tag,
        task=None if task == ANY else task,
        policy_version_id=None if policy == ANY else int(policy),
        success=None if success == ANY else success == "yes",
        review_status=None if review == ANY else review,
        since=_day_start(since),  # type: ignore[arg-type]
        until=_day_start(until + timedelta(days=1)) if until else None,  # type: ignore[operator]
        limit=PAGE_SIZE,
    )


def episodes_table(records: list[EpisodeRecord]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "id": r.id,
                "tag": r.tag,
                "task": r.task,
                "policy": None if r.policy_version_id is None else f"v{r.policy_version_id}",
                "iteration": r.iteration,
                "seed": r.env_seed,
                "frames": r.length,
                "success": r.success,
                "review": r.review_status,
                "operator": r.operator,
                "created (UTC)": fmt_time(r.created_at),
            }
            for r in records
        ]
    )


def _label(record: EpisodeRecord) -> str:
    mark = "✓" if record.success else "✗"
    return f"{record.id} · {record.tag} · {record.task} · {mark} · {record.review_status}"


def main() -> None:
    st.title("Episodes")
    store = get_store()
    filters = filters_form()
    records = store.list_episodes(filters)
    total = store.count(EpisodeFilter(**{**filters.__dict__, "limit": None}))
    st.caption(f"{len(records)} of {total} matching episodes, newest first")
    if records:
        height = min(300, 35 * (len(records) + 1) + 3)
        st.dataframe(episodes_table(records), hide_index=True, width="stretch", height=height)
    else:
        st.info("No episode matches these filters.")

    by_id = {r.id: r for r in records}
    requested = st.query_params.get(EPISODE_PARAM, "")
    linked = int(requested) if requested.isdigit() else None
    options = list(by_id)
    if linked is not None and linked not in by_id:
        options.insert(0, linked)  # a linked episode outside the current filters
    if not options:
        return
    chosen = st.selectbox(
        "Episode",
        options,
        index=options.index(linked) if linked is not None else 0,
        key="ep_selected",
        format_func=lambda i: _label(by_id[i]) if i in by_id else f"{i} (linked)",
        on_change=_follow_selection,
    )
    record = store.get(int(chosen))
    st.divider()
    render_episode(store, record, key="episodes")


password_gate()  # see app.common.password_gate: pages may run without console.py
with show_errors():
    main()
