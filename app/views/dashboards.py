"""Dashboards: success with 95% intervals per policy and iteration, takeovers per episode, data mix, eval
gates, training curves. Charts first; the numbers sit behind them in tooltips."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from app.charts import TAG_COLORS, gate_grid, rate_with_interval
from app.common import get_registry, get_store, password_gate, show_errors
from flywheel import dashboards
from flywheel.store import EpisodeStore

ANY = "all tasks"


def headline(store: EpisodeStore, task: str | None) -> None:
    view = dashboards.overview(store, task)
    cols = st.columns(6)
    cols[0].metric("Episodes", view.episodes)
    cols[1].metric("Frames", f"{view.frames:,}")
    cols[2].metric("Interventions", view.by_tag.get("intervention", 0))
    cols[3].metric("Takeovers", view.takeovers)
    cols[4].metric("Reviewed episodes", view.reviewed)
    cols[5].metric("Labels", view.labels)


def success_section(store: EpisodeStore, task: str | None) -> None:
    st.subheader("Success rate (95% Wilson intervals)")
    left, right = st.columns(2)
    evals = dashboards.eval_success_by_policy(store.db, task)
    collected = dashboards.collection_success_by_policy(store.db, task)
    by_policy = pd.concat(
        [evals[["policy_version_id", *dashboards.success.COLUMNS]], collected], ignore_index=True
    ).astype({"policy_version_id": str})
    with left:
        if by_policy.empty:
            st.caption("No policy has been evaluated or collected with yet.")
        else:
            chart = rate_with_interval(by_policy, "policy_version_id", "policy version", "per policy version")
            st.altair_chart(chart, width="stretch")
    per_iteration = dashboards.success_by_iteration(store.db, task)
    with right:
        if per_iteration.empty:
            st.caption("No iteration has finished a collection or an eval yet.")
        else:
            chart = rate_with_interval(per_iteration, "iteration", "iteration", "per iteration", line=True)
            st.altair_chart(chart, width="stretch")


def interventions_section(store: EpisodeStore, task: str | None) -> None:
    st.subheader("Takeovers per policy episode")
    left, right = st.columns(2)
    by_iteration = dashboards.interventions_by_iteration(store.db, task)
    over_time = dashboards.interventions_over_time(store.db, task)
    tooltip = ["episodes", "intervention_episodes", "takeovers", alt.Tooltip("per_episode:Q", format=".2f")]
    with left:
        if by_iteration.empty:
            st.caption("No policy episodes from the loop yet.")
        else:
            chart = (
                alt.Chart(by_iteration)
                .mark_line(point=True)
                .encode(
                    x=alt.X("iteration:O", axis=alt.Axis(labelAngle=0)),
                    y=alt.Y("per_episode:Q", title="takeovers per episode"),
                    tooltip=["iteration", *tooltip],
                )
                .properties(height=260, title="by iteration")
            )
            st.altair_chart(chart, width="stretch")
    with right:
        if over_time.empty:
            st.caption("No policy episodes yet.")
        else:
            chart = (
                alt.Chart(over_time)
                .mark_line(point=True)
                .encode(
                    x=alt.X("period:T", title="time (UTC)"),
                    y=alt.Y("per_episode:Q", title="takeovers per episode"),
                    tooltip=[alt.Tooltip("period:T", format="%Y-%m-%d %H:%M"), *tooltip],
                )
                .properties(height=260, title="over time")
            )
            st.altair_chart(chart, width="stretch")


def data_mix_section(store: EpisodeStore, task: str | None) -> None:
    st.subheader("Data mix")
    mix = dashboards.data_mix(store.db, task)
    if mix.empty:
        st.caption("The store is empty.")
        return
    measure = st.segmented_control("Count", ["frames", "episodes"], default="frames", key="dash_mix_measure")
    measure = measure or "frames"
    mix = mix.assign(
        iteration=mix["iteration"].map(lambda i: "outside the loop" if pd.isna(i) else f"{int(i)}"),
        training=mix["review_status"].map(lambda s: "excluded (rejected)" if s == "rejected" else "used"),
    )
    color = alt.Color("tag:N", scale=alt.Scale(domain=list(TAG_COLORS), range=list(TAG_COLORS.values())))
    left, right = st.columns(2)
    with left:
        chart = (
            alt.Chart(mix)
            .mark_bar()
            .encode(
                x=alt.X("iteration:N", sort=None, title="iteration", axis=alt.Axis(labelAngle=0)),
                y=alt.Y(f"sum({measure}):Q", title=measure),
                color=color,
                tooltip=["iteration", "tag", "review_status", "episodes", "frames"],
            )
            .properties(height=260, title="by iteration and tag")
        )
        st.altair_chart(chart, width="stretch")
    with right:
        chart = (
            alt.Chart(mix)
            .mark_bar()
            .encode(
                y=alt.Y("training:N", title=None),
                x=alt.X(f"sum({measure}):Q", title=measure, stack="zero"),
                color=color,
                tooltip=["tag", "training", alt.Tooltip(f"sum({measure}):Q", title=measure)],
            )
            .properties(height=260, title="what training uses")
        )
        st.altair_chart(chart, width="stretch")


def champion_section(store: EpisodeStore) -> None:
    """The champion's gate number beside its fresh-seed number, and its throughput."""
    champion = get_registry().alias("champion")
    if champion is None:
        return
    numbers = dashboards.champion_numbers(store.db, champion)
    gate, fresh = numbers.get("gate"), numbers.get("fresh")
    st.subheader(f"Champion v{champion}")
    cols = st.columns(4)

    def rate(run: dict | None) -> str:
        return "-" if run is None else f"{run['success_rate']:.0%} [{run['ci'][0]:.0%}, {run['ci'][1]:.0%}]"

    cols[0].metric("Success on gate seeds", rate(gate), help=None if gate is None else f"{gate['episodes']} seeds")
    cols[1].metric(
        "Success on fresh seeds",
        rate(fresh),
        help="never used to gate" + ("" if fresh is None else f"; {fresh['episodes']} seeds"),
    )
    tp = (gate or {}).get("throughput") or {}
    per_hour, ci = tp.get("successes_per_hour"), tp.get("successes_per_hour_ci") or [None, None]
    cols[2].metric(
        "Successes per hour (robot time)",
        "-" if per_hour is None else f"{per_hour:.0f}",
        help=None if ci[0] is None else f"95% bootstrap interval [{ci[0]:.0f}, {ci[1]:.0f}]",
    )
    seconds = tp.get("mean_seconds_to_success")
    cols[3].metric("Mean time to success", "-" if seconds is None else f"{seconds:.1f} s")


def gates_section(store: EpisodeStore, task: str | None) -> None:
    st.subheader("Eval-gate history")
    history = dashboards.gate_history(store.db, task)
    if history.empty:
        st.caption("No gated eval run yet.")
        return
    st.caption("Each eval run (columns) against every gate (rows); hover a square for the gate's reason.")
    st.altair_chart(gate_grid(history), width="stretch")


def training_section(task: str | None) -> None:
    st.subheader("Training curves")
    versions = get_registry().list_versions(task)
    if not versions:
        st.caption("No policy version registered yet.")
        return
    chosen = st.selectbox(
        "Policy version",
        [v.id for v in reversed(versions)],
        key="dash_train_version",
        format_func=lambda i: f"v{i}",
    )
    curves = dashboards.training_curves(next(v for v in versions if v.id == chosen))
    st.caption(curves.note)
    if not curves.curves.empty:
        names = sorted(curves.curves["metric"].unique())
        default = [n for n in ("train/loss", "train/policy_loss", "train/q_loss", "train/v_loss") if n in names]
        picked = st.multiselect("Metrics", names, default=default or names[:1], key="dash_train_metrics")
        shown = curves.curves[curves.curves["metric"].isin(picked)]
        chart = (
            alt.Chart(shown)
            .mark_line()
            .encode(
                x=alt.X("step:Q", title="optimiser step (critic, then policy)"),
                y=alt.Y("value:Q", title=None),
                color="metric:N",
                tooltip=["metric", "step", alt.Tooltip("value:Q", format=".4g")],
            )
            .properties(height=280)
        )
        st.altair_chart(chart, width="stretch")
    elif not curves.final.empty:
        st.altair_chart(
            alt.Chart(curves.final)
            .mark_bar()
            .encode(y=alt.Y("metric:N", sort=None), x="value:Q", tooltip=["metric", "value"])
            .properties(height=max(120, 18 * len(curves.final)), title=f"final metrics of v{chosen}"),
            width="stretch",
        )
    trend = dashboards.final_metrics_by_version(versions)
    trend = trend[trend["metric"].isin(["train/loss", "train/policy_loss", "train/q_loss", "train/v_loss"])]
    if trend["policy_version_id"].nunique() > 1:
        st.altair_chart(
            alt.Chart(trend)
            .mark_line(point=True)
            .encode(
                x=alt.X("policy_version_id:O", title="policy version", axis=alt.Axis(labelAngle=0)),
                y="value:Q",
                color="metric:N",
            )
            .properties(height=220, title="final losses across versions"),
            width="stretch",
        )


def main() -> None:
    st.title("Dashboards")
    store = get_store()
    tasks = dashboards.episode_facets(store.db).tasks
    task = st.selectbox("Task", [ANY, *tasks], key="dash_task")
    task = None if task == ANY else task
    headline(store, task)
    champion_section(store)
    success_section(store, task)
    interventions_section(store, task)
    data_mix_section(store, task)
    gates_section(store, task)
    training_section(task)


password_gate()  # see app.common.password_gate: pages may run without console.py
with show_errors():
    main()
