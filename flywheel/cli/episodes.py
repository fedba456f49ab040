"""`flywheel episodes` and `flywheel gc`: query, inspect and delete stored episodes."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

from flywheel.cli.context import state
from flywheel.ownership import claim_checkpoints_folder
from flywheel.store import EpisodeFilter, EpisodeRecord
from flywheel.vocab import parse_tag

app = typer.Typer(help="Stored episodes.", no_args_is_help=True)


def _success(value: str | None) -> bool | None:
    if value is None:
        return None
    lowered = value.lower()
    if lowered in {"yes", "true", "1"}:
        return True
    if lowered in {"no", "false", "0"}:
        return False
    raise typer.BadParameter(f"use yes or no, not {value!r}", param_hint="--success")


@app.command("list")
def list_episodes(
    ctx: typer.Context,
    tag: str | None = typer.Option(None, help="demo | autonomous | intervention"),
    task: str | None = typer.Option(None, help="transfer_cube | insertion"),
    policy: int | None = typer.Option(None, help="policy version id that acted"),
    success: str | None = typer.Option(None, help="yes | no"),
    review: str | None = typer.Option(None, help="unreviewed | accepted | rejected"),
    iteration: int | None = typer.Option(None, help="flywheel iteration"),
    limit: int = typer.Option(50, min=1, help="rows to show (newest first)"),
    as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
) -> None:
    """List episodes, newest first."""
    if tag is not None:
        parse_tag(tag)
    filters = EpisodeFilter(
        task=task,
        tag=tag,
        policy_version_id=policy,
        success=_success(success),
        review_status=review,
        iteration=iteration,
        limit=limit,
    )
    store = state(ctx).store()
    records = store.list_episodes(filters)
    if as_json:
        typer.echo(json.dumps([r.as_dict() for r in records], indent=2))
        return
    total = store.count(EpisodeFilter(**{**filters.__dict__, "limit": None}))
    table = Table(title=f"episodes ({len(records)} of {total})")
    for column in (
        "id",
        "task",
        "tag",
        "policy",
        "iter",
        "seed",
        "len",
        "success",
        "return",
        "review",
        "created",
    ):
        table.add_column(column, justify="right" if column in {"id", "len", "return", "seed"} else "left")
    for r in records:
        table.add_row(*_row(r))
    Console().print(table)


def _row(r: EpisodeRecord) -> list[str]:
    return [
        str(r.id),
        r.task,
        r.tag,
        "-" if r.policy_version_id is None else str(r.policy_version_id),
        "-" if r.iteration is None else str(r.iteration),
        str(r.env_seed),
        str(r.length),
        "yes" if r.success else "no",
        f"{r.episode_return:.1f}",
        r.review_status,
        r.created_at.strftime("%Y-%m-%d %H:%M:%S"),
    ]


@app.command()
def show(
    ctx: typer.Context,
    episode_id: int = typer.Argument(..., help="episode id"),
    as_json: bool = typer.Option(False, "--json"),
    verify: bool = typer.Option(True, help="read the episode file and check its sha256"),
) -> None:
    """Show one episode: metadata, segments, and a check of its file."""
    store = state(ctx).store()
    record = store.get(episode_id)
    data = record.as_dict()
    if verify:
        frames = store.read_record_frames(record)
        data["file"] = {
            "verified": True,
            "frames": len(frames),
            "state_dim": int(frames.state.shape[1]),
            "action_dim": int(frames.action.shape[1]),
            "cameras": {k: list(v.shape[1:]) for k, v in frames.images.items()},
        }
    if as_json:
        typer.echo(json.dumps(data, indent=2, default=str))
        return
    console = Console()
    for key, value in data.items():
        if key != "segments":
            console.print(f"[bold]{key}[/]: {value}", highlight=False)
    table = Table(title="segments")
    for column in ("start", "end", "controller", "operator", "trigger"):
        table.add_column(column)
    for s in record.segments:
        table.add_row(str(s.start), str(s.end), s.controller, s.operator or "-", s.trigger or "-")
    console.print(table)


@app.command()
def delete(
    ctx: typer.Context,
    episode_id: int = typer.Argument(..., help="episode id"),
    yes: bool = typer.Option(False, "--yes", "-y", help="do not ask for confirmation"),
) -> None:
    """Delete an episode: its row, segments, labels and file together."""
    store = state(ctx).store()
    record = store.get(episode_id, with_segments=False)
    if not yes:
        typer.confirm(f"delete episode {record.id} ({record.task}, {record.tag}, {record.length} frames)?", abort=True)
    store.delete(episode_id)
    Console().print(f"deleted episode {episode_id}")


def gc(
    ctx: typer.Context,
    dry_run: bool = typer.Option(False, "--dry-run", help="list what would be removed"),
    adopt: bool = typer.Option(
        False,
        "--adopt",
        help="mark the episodes directory (and the checkpoints directory) as this store's first (it holds other "
        "files, or another store marked it); only files named <2 hex>/<32 hex>.safetensors are ever removed",
    ),
) -> None:
    """Remove episode files that no episode row points to (e.g. from writes killed before commit).

    Works only in an episodes directory marked as this store's (`.flywheel-episodes`); see --adopt."""
    cli = state(ctx)
    store = cli.store()
    report = store.gc(dry_run=dry_run, adopt=adopt)
    verb = "would remove" if dry_run else "removed"
    console = Console()
    console.print(f"{verb} {len(report.removed)} orphan file(s); {report.kept} referenced file(s) kept")
    if adopt:
        if not dry_run:
            claim_checkpoints_folder(cli.settings, store.owner, adopt=True)
        marked = "would mark" if dry_run else "marked"
        console.print(
            f"{marked} {store.files.root} and {cli.settings.checkpoints_root} as this store's ({store.owner})"
        )
