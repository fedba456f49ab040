"""`flywheel policies`: the registry — versions, lineage, promotion and rollback (audited)."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

from flywheel.cli.context import state
from flywheel.registry import CHAMPION, PolicyRegistry

app = typer.Typer(help="Policy versions and the champion alias.", no_args_is_help=True)


def _registry(ctx: typer.Context) -> PolicyRegistry:
    return PolicyRegistry(state(ctx).store().db)


@app.command("list")
def list_policies(
    ctx: typer.Context,
    task: str | None = typer.Option(None, help="only this task"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """List policy versions with status, parent and training data."""
    registry = _registry(ctx)
    versions = registry.list_versions(task)
    champion = registry.alias(CHAMPION)
    if as_json:
        typer.echo(json.dumps([v.as_dict() for v in versions], indent=2, default=str))
        return
    table = Table(title=f"policy versions (champion: {champion or '-'})")
    for column in ("id", "task", "status", "parent", "iter", "episodes", "created"):
        table.add_column(column)
    for v in versions:
        counts = v.data_fingerprint.get("counts_by_tag", {})
        table.add_row(
            f"{v.id}{' ★' if v.id == champion else ''}",
            v.task,
            v.status,
            str(v.parent_id or "-"),
            str(v.iteration if v.iteration is not None else "-"),
            " ".join(f"{k}:{n}" for k, n in counts.items()) or "-",
            v.created_at.strftime("%Y-%m-%d %H:%M"),
        )
    Console().print(table)


@app.command()
def show(ctx: typer.Context, ref: str = typer.Argument(..., help="version id or alias")) -> None:
    """Show one version: config, data fingerprint, metrics, alias history, and its evaluations (gate and
    fresh-seed success with intervals, time to success and successes per hour of robot time)."""
    from dataclasses import asdict

    from flywheel.dashboards import eval_runs

    registry = _registry(ctx)
    record = registry.resolve(ref)
    data = record.as_dict()
    data["inputs"] = _inputs(record.checkpoint_uri)
    data["evaluations"] = [
        {k: v for k, v in asdict(run).items() if k != "gates"}
        | {"created_at": run.created_at.isoformat(), "verdicts": [g.get("reason") for g in run.gates]}
        for run in eval_runs(registry.db, record.id)
    ]
    data["alias_history"] = [
        {**m.__dict__, "created_at": m.created_at.isoformat()}
        for m in registry.history()
        if record.id in (m.from_version_id, m.to_version_id)
    ]
    typer.echo(json.dumps(data, indent=2, default=str))


def _inputs(checkpoint: str) -> dict | str:
    """What the policy reads (its checkpoint's input spec), or why it cannot be read."""
    from flywheel.policy.input_spec import InputSpecError, read_checkpoint_inputs

    try:
        inputs = read_checkpoint_inputs(checkpoint)
    except InputSpecError as exc:
        return str(exc)
    return {"summary": inputs.describe(), **inputs.to_document()}


@app.command()
def promote(
    ctx: typer.Context,
    version_id: int = typer.Argument(..., help="version to make champion"),
    reason: str = typer.Option(..., "--reason", help="why (recorded in the audit trail)"),
    force: bool = typer.Option(False, "--force", help="promote without a passing eval run (audited as forced)"),
) -> None:
    """Make VERSION_ID the champion (needs a passing eval run unless --force)."""
    cli = state(ctx)
    record = _registry(ctx).promote(version_id, actor=cli.settings.operator, reason=reason, force=force)
    Console().print(f"policy {record.id} is now champion{' (forced)' if force else ''}")


@app.command()
def rollback(
    ctx: typer.Context,
    reason: str = typer.Option(..., "--reason", help="why (recorded in the audit trail)"),
) -> None:
    """Move the champion back to the previous champion."""
    cli = state(ctx)
    record = _registry(ctx).rollback(actor=cli.settings.operator, reason=reason)
    Console().print(f"champion rolled back to policy {record.id}")
