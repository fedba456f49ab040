"""Policies: the registry with lineage, each version's gate evidence, and audited promote / rollback."""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from app.common import (
    current_operator,
    fmt_time,
    get_registry,
    get_store,
    md_escape,
    password_gate,
    recorded_by,
    require_operator,
    show_errors,
)
from flywheel import dashboards
from flywheel.errors import FlywheelError
from flywheel.registry import CHALLENGER, CHAMPION, PolicyRecord, PolicyRegistry

FLASH = "policies_flash"
STATUS_COLORS = {"champion": "#54a24b", "candidate": "#4c78a8", "rejected": "#e45756", "retired": "#bab0ac"}


def lineage_dot(versions: list[PolicyRecord], aliases: dict[str, int | None]) -> str:
    """Graphviz DOT: one node per version (coloured by status, aliases named), parent → child edges."""
    lines = ["digraph lineage {", "rankdir=LR;", 'node [shape=box, style="rounded,filled", fontname="sans-serif"];']
    for v in versions:
        names = [a for a, vid in aliases.items() if vid == v.id]
        label = f"v{v.id}\\n{v.status}" + (f"\\n[{', '.join(names)}]" if names else "")
        if v.iteration is not None:
            label += f"\\niteration {v.iteration}"
        color = STATUS_COLORS.get(v.status, "#eeeeee")
        lines.append(f'v{v.id} [label="{label}", fillcolor="{color}", fontcolor="white"];')
    for v in versions:
        if v.parent_id is not None:
            lines.append(f"v{v.parent_id} -> v{v.id};")
    lines.append("}")
    return "\n".join(lines)


def versions_table(versions: list[PolicyRecord], aliases: dict[str, int | None], evals: pd.DataFrame) -> pd.DataFrame:
    by_version = {int(r.policy_version_id): r for r in evals.itertuples()}
    rows = []
    for v in reversed(versions):
        ev = by_version.get(v.id)
        counts = v.data_fingerprint.get("counts_by_tag", {})
        rows.append(
            {
                "version": f"v{v.id}",
                "parent": None if v.parent_id is None else f"v{v.parent_id}",
                "status": v.status,
                "aliases": ", ".join(a for a, vid in aliases.items() if vid == v.id),
                "task": v.task,
                "iteration": v.iteration,
                "eval success": None if ev is None else f"{ev.rate:.0%} [{ev.ci_low:.0%}, {ev.ci_high:.0%}] of {ev.n}",
                "gates": None if ev is None or ev.passed is None else ("passed" if ev.passed else "failed"),
                "trained on": ", ".join(f"{n} {t}" for t, n in counts.items()) or None,
                "created (UTC)": fmt_time(v.created_at),
            }
        )
    return pd.DataFrame(rows)


def _promote(registry: PolicyRegistry, version_id: int, author: str) -> None:
    reason = str(st.session_state.get("promote_reason") or "").strip()
    force = bool(st.session_state.get("promote_force"))
    if not reason:
        st.session_state[FLASH] = ("error", "A promotion needs a reason: say why this version should act.")
        return
    try:
        registry.promote(version_id, actor=author, reason=reason, force=force, recorded_by=recorded_by())
    except FlywheelError as exc:
        st.session_state[FLASH] = ("error", str(exc))
        return
    forced = ", forced" if force else ""
    st.session_state[FLASH] = ("success", f"v{version_id} is now champion (by {md_escape(author)}{forced}).")


def _rollback(registry: PolicyRegistry, author: str) -> None:
    reason = str(st.session_state.get("rollback_reason") or "").strip()
    if not reason:
        st.session_state[FLASH] = ("error", "A rollback needs a reason: say what is wrong with the champion.")
        return
    try:
        target = registry.rollback(actor=author, reason=reason, recorded_by=recorded_by())
    except FlywheelError as exc:
        st.session_state[FLASH] = ("error", str(exc))
        return
    st.session_state[FLASH] = ("success", f"Rolled back: v{target.id} is champion again (by {md_escape(author)}).")


def show_flash() -> None:
    flash = st.session_state.pop(FLASH, None)
    if flash is not None:
        kind, message = flash
        (st.success if kind == "success" else st.error)(message)


def evidence(version_id: int) -> None:
    runs = dashboards.eval_runs(get_store().db, version_id)
    if not runs:
        st.caption(f"v{version_id} has not been evaluated: run `flywheel eval --policy {version_id}`.")
        return
    for run in runs:
        verdict = "baseline (no gates)" if run.passed is None else ("passed" if run.passed else "FAILED")
        title = (
            f"eval run {run.id} · {verdict} · success {run.success_rate:.0%} "
            f"[{run.ci_low:.0%}, {run.ci_high:.0%}] on {run.episodes} seeds · {fmt_time(run.created_at)} UTC"
        )
        with st.expander(title, expanded=run is runs[0]):
            cols = st.columns(4)
            cols[0].metric("Successes", f"{run.successes}/{run.episodes}")
            cols[1].metric("Latency p95", f"{run.latency_p95_ms:.1f} ms")
            cols[2].metric("NaN actions", run.nan_actions)
            cols[3].metric("Joint-limit violations", run.joint_limit_violations)
            if run.gates:
                st.dataframe(
                    pd.DataFrame(
                        [
                            {
                                "gate": g.get("gate"),
                                "passed": bool(g.get("passed")),
                                "reason": g.get("reason"),
                                "evidence": json.dumps(g.get("evidence", {}), default=str),
                            }
                            for g in run.gates
                        ]
                    ),
                    hide_index=True,
                    width="stretch",
                )


def alias_actions(registry: PolicyRegistry, version: PolicyRecord, author: str | None) -> None:
    left, right = st.columns(2)
    disabled = author is None
    with left.form("promote_form", clear_on_submit=True):
        st.markdown(f"**Promote v{version.id} to champion**")
        st.text_input("Reason for promotion", key="promote_reason", placeholder="why this version should act")
        st.checkbox("Force (skip the passing-eval check; audited)", key="promote_force")
        st.form_submit_button(
            "Promote to champion",
            type="primary",
            disabled=disabled or version.status == "champion",
            on_click=_promote,
            args=(registry, version.id, author),
        )
    with right.form("rollback_form", clear_on_submit=True):
        st.markdown("**Roll back the champion** to the version it replaced")
        st.text_input("Reason for rollback", key="rollback_reason", placeholder="what is wrong with the champion")
        st.form_submit_button(
            "Roll back champion",
            disabled=disabled or registry.alias(CHAMPION) is None,
            on_click=_rollback,
            args=(registry, author),
        )


def history(registry: PolicyRegistry) -> None:
    moves = registry.history()
    if not moves:
        st.caption("No alias has moved yet.")
        return
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "when (UTC)": fmt_time(m.created_at),
                    "alias": m.alias,
                    "from": None if m.from_version_id is None else f"v{m.from_version_id}",
                    "to": None if m.to_version_id is None else f"v{m.to_version_id}",
                    "who": m.actor,
                    "recorded by": m.recorded_by,
                    "forced": m.forced,
                    "reason": m.reason,
                }
                for m in reversed(moves)
            ]
        ),
        hide_index=True,
        width="stretch",
    )


def main() -> None:
    st.title("Policies")
    show_flash()
    registry = get_registry()
    versions = registry.list_versions()
    if not versions:
        st.info("No policy version is registered yet: run `flywheel run` or `flywheel train`.")
        return
    aliases = {CHAMPION: registry.alias(CHAMPION), CHALLENGER: registry.alias(CHALLENGER)}
    evals = dashboards.eval_success_by_policy(get_store().db)
    st.graphviz_chart(lineage_dot(versions, aliases))
    st.dataframe(versions_table(versions, aliases, evals), hide_index=True, width="stretch")

    ids = [v.id for v in reversed(versions)]
    default = ids.index(aliases[CHAMPION]) if aliases[CHAMPION] in ids else 0
    chosen = st.selectbox("Policy version", ids, index=default, key="pol_version", format_func=lambda i: f"v{i}")
    version = next(v for v in versions if v.id == chosen)
    st.subheader(f"v{version.id} · {version.status}")
    st.caption(
        f"task {version.task} · parent {'—' if version.parent_id is None else f'v{version.parent_id}'} · "
        f"code {version.code_version or '—'} · checkpoint `{version.checkpoint_uri}`"
    )
    tabs = st.tabs(["Gate evidence", "Training data", "Metrics", "Config"])
    with tabs[0]:
        evidence(version.id)
    with tabs[1]:
        fp = version.data_fingerprint
        st.write({k: v for k, v in fp.items() if k != "episode_ids"})
        st.caption(f"{len(fp.get('episode_ids', []))} episode ids in the fingerprint")
    with tabs[2]:
        st.json(version.metrics, expanded=False)
    with tabs[3]:
        st.json(version.config, expanded=False)

    author = current_operator() or require_operator("promote or roll back")
    alias_actions(registry, version, author)
    st.subheader("Alias history (audit)")
    history(registry)


password_gate()  # see app.common.password_gate: pages may run without console.py
with show_errors():
    main()
