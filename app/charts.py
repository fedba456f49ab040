"""Altair chart builders shared by the console pages (pure: DataFrames in, charts out)."""

from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import pandas as pd

from flywheel.store import SegmentRecord

CONTROLLER_COLORS = {"policy": "#4c78a8", "human": "#f58518", "expert": "#54a24b"}
TAG_COLORS = {"demo": "#54a24b", "autonomous": "#4c78a8", "intervention": "#f58518"}
PASS_COLORS = {"pass": "#54a24b", "fail": "#e45756"}


def _scale(colors: dict[str, str]) -> alt.Scale:
    return alt.Scale(domain=list(colors), range=list(colors.values()))


def controller_timeline(segments: Sequence[SegmentRecord], length: int, cursor: int | None = None) -> alt.Chart:
    """One bar per segment along the episode, coloured by controller; a rule marks the current frame."""
    frame = pd.DataFrame(
        [
            {
                "start": s.start,
                "end": s.end,
                "controller": s.controller,
                "operator": s.operator or "",
                "trigger": s.trigger or "",
                "steps": s.end - s.start,
            }
            for s in segments
        ]
    )
    bars = (
        alt.Chart(frame)
        .mark_bar(height=26)
        .encode(
            x=alt.X("start:Q", title="frame", scale=alt.Scale(domain=[0, length])),
            x2="end:Q",
            color=alt.Color(
                "controller:N", scale=_scale(CONTROLLER_COLORS), legend=alt.Legend(orient="top", title=None)
            ),
            tooltip=["controller", "start", "end", "steps", "operator", "trigger"],
        )
    )
    chart = bars
    if cursor is not None:
        chart = bars + alt.Chart(pd.DataFrame({"frame": [cursor]})).mark_rule(color="black", strokeWidth=2).encode(
            x="frame:Q"
        )
    # the height is the plot area only; 40 px left Chromium nothing for the bars under the title and legend
    return chart.properties(height=120, title="controller timeline")


def series_chart(values: pd.DataFrame, title: str, cursor: int | None = None) -> alt.Chart:
    """Columns of `values` over frames (index) as lines, with an optional current-frame rule."""
    long = values.reset_index(names="frame").melt("frame", var_name="series", value_name="value")
    lines = (
        alt.Chart(long)
        .mark_line()
        .encode(
            x=alt.X("frame:Q"),
            y=alt.Y("value:Q", title=None),
            color=alt.Color("series:N", legend=alt.Legend(orient="top", title=None)),
            tooltip=["frame", "series", alt.Tooltip("value:Q", format=".3f")],
        )
    )
    chart = lines
    if cursor is not None:
        chart = lines + alt.Chart(pd.DataFrame({"frame": [cursor]})).mark_rule(color="gray").encode(x="frame:Q")
    return chart.properties(height=220, title=title)


SOURCE_COLORS = {"eval": "#4c78a8", "collection (with takeovers)": "#f58518"}


def rate_with_interval(frame: pd.DataFrame, x: str, x_title: str, title: str, line: bool = False) -> alt.Chart:
    """Success rate points (or a line) with 95% interval error bars, side by side per `source`."""
    tooltip = [
        x,
        "source",
        alt.Tooltip("rate:Q", format=".0%"),
        alt.Tooltip("ci_low:Q", format=".0%", title="95% low"),
        alt.Tooltip("ci_high:Q", format=".0%", title="95% high"),
        "successes",
        "n",
    ]
    color = alt.Color("source:N", scale=_scale(SOURCE_COLORS), legend=alt.Legend(orient="bottom", title=None))
    base = alt.Chart(frame).encode(
        x=alt.X(f"{x}:O", title=x_title, axis=alt.Axis(labelAngle=0)), xOffset="source:N", color=color
    )
    y = alt.Y("rate:Q", title="success rate", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%"))
    mark = base.mark_line(point=True) if line else base.mark_point(filled=True, size=80)
    points = mark.encode(y=y, tooltip=tooltip)
    bars = base.mark_errorbar(ticks=True).encode(
        y=alt.Y("ci_low:Q", title="success rate", scale=alt.Scale(domain=[0, 1])), y2="ci_high:Q", tooltip=tooltip
    )
    return (bars + points).properties(height=280, title=title)


def gate_grid(history: pd.DataFrame) -> alt.Chart:
    """Eval run × gate, green for pass and red for fail, with the gate's reason as a tooltip."""
    frame = history.assign(
        verdict=history["passed"].map({True: "pass", False: "fail"}),
        run=history["eval_run_id"].astype(str) + " (v" + history["policy_version_id"].astype(str) + ")",
    )
    return (
        alt.Chart(frame)
        .mark_square(size=320)
        .encode(
            x=alt.X("run:O", title="eval run (policy version)", sort=None, axis=alt.Axis(labelAngle=0)),
            y=alt.Y("gate:N", title=None),
            color=alt.Color("verdict:N", scale=_scale(PASS_COLORS), legend=alt.Legend(orient="bottom", title=None)),
            tooltip=["eval_run_id", "policy_version_id", "iteration", "gate", "verdict", "reason"],
        )
        # No chart title: Streamlit's renderer squashes a discrete y axis when a title is set.
        .properties(height=40 * max(1, frame["gate"].nunique()) + 40)
    )
