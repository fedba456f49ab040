"""`flywheel export lerobot` and `flywheel import lerobot`: LeRobotDataset v3.0 in and out of the store.

lerobot (and torch) load only when one of these commands runs, so other commands start fast.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from flywheel.cli.context import state
from flywheel.headless import headless_defaults
from flywheel.identity import acting_operator
from flywheel.progress import work_progress
from flywheel.vocab import ControllerKind

export_app = typer.Typer(help="Export stored episodes to other formats.", no_args_is_help=True)
import_app = typer.Typer(help="Import episodes from other formats into the store.", no_args_is_help=True)


@export_app.command("lerobot")
def export_lerobot(
    ctx: typer.Context,
    out: Path = typer.Option(..., "--out", help="new (or empty) directory for the dataset"),
    tag: list[str] = typer.Option([], "--tag", help="demo | autonomous | intervention (repeatable; default all)"),
    task: str | None = typer.Option(None, help="only this task (transfer_cube | insertion)"),
    accepted_only: bool = typer.Option(False, "--accepted-only", help="only episodes reviewed as accepted"),
    images: bool = typer.Option(True, "--images/--no-images", help="include camera frames"),
    repo_id: str | None = typer.Option(None, help="dataset repo id recorded in the metadata"),
) -> None:
    """Write episodes as a LeRobotDataset v3.0 (lerobot's own writer; PNG image features)."""
    headless_defaults()  # before lerobot is imported, also where the app runs without `main`
    from flywheel.interop.lerobot_export import ExportSelection, export_lerobot, select_episodes
    from flywheel.interop.lerobot_schema import InteropError

    store = state(ctx).store()
    selection = ExportSelection(tags=tuple(tag), task=task, accepted_only=accepted_only)
    records = select_episodes(store, selection)
    if not records:
        raise InteropError("no episodes match the selection; nothing to export (see `flywheel episodes list`)")
    console = Console(stderr=True)
    with work_progress(console=console) as progress:
        bar = progress.add_task("exporting episodes", total=len(records))
        report = export_lerobot(
            store,
            records,
            out,
            repo_id=repo_id,
            images=images,
            selection=selection,
            on_episode=lambda _record: progress.advance(bar),
        )
    cameras = ", ".join(report.cameras) or "none"
    Console().print(
        f"exported {report.episodes} episode(s), {report.frames} frames (cameras: {cameras}) to {report.root}",
        highlight=False,
    )


@import_app.command("lerobot")
def import_lerobot(
    ctx: typer.Context,
    path: Path = typer.Argument(..., help="root directory of a local LeRobotDataset v3.0"),
    tag: list[str] = typer.Option([], "--tag", help="import only episodes with this tag (repeatable; default all)"),
    task: str | None = typer.Option(None, help="flywheel task of the data (needed when the dataset's is not one)"),
    policy: str | None = typer.Option(
        None, help="policy version id or alias that acted in autonomous/intervention episodes"
    ),
    controller: ControllerKind = typer.Option(
        ControllerKind.EXPERT, help="who acted in datasets without controller info (expert | human)"
    ),
    success: bool = typer.Option(
        True, "--success/--failure", help="outcome for episodes whose dataset does not record one"
    ),
) -> None:
    """Load a LeRobotDataset into the store; shapes must match the task; re-running skips stored episodes."""
    headless_defaults()  # before lerobot is imported, also where the app runs without `main`
    from flywheel.interop.lerobot_import import plan_import, run_import
    from flywheel.registry import PolicyRegistry

    cli = state(ctx)
    store = cli.store()
    operator = cli.settings.operator
    importer = acting_operator(operator, "importing operator name")
    policy_id = None if policy is None else PolicyRegistry(store.db).resolve(policy).id
    plan = plan_import(path, task=task, tags=tuple(tag), default_controller=controller)
    console = Console(stderr=True)
    with work_progress(console=console) as progress:
        bar = progress.add_task("importing episodes", total=len(plan.episodes))
        report = run_import(
            store,
            plan,
            policy_version_id=policy_id,
            default_success=success,
            on_episode=lambda _episode: progress.advance(bar),
            importer=importer,
        )
    counts = ", ".join(f"{t} {n}" for t, n in report.counts_by_tag.items() if n) or "none new"
    Console().print(
        f"imported {len(report.imported)} episode(s), {report.frames} frames ({counts}); "
        f"{len(report.already_present)} already stored, {report.skipped} skipped by --tag",
        highlight=False,
    )


@export_app.command("onnx")
def export_onnx(
    ctx: typer.Context,
    policy: str = typer.Option(..., "--policy", help="version id or alias"),
    out: Path = typer.Option(..., "--out", help="ONNX file to write"),
    image_size: str | None = typer.Option(
        None, "--image-size", help="HxW camera frames (pixel policies; default: the size the policy was trained on)"
    ),
    observations: int = typer.Option(8, "--check", min=1, help="random observations for the parity check"),
    tolerance: float = typer.Option(1e-4, "--tolerance", min=0.0, help="max |ONNX - PyTorch| allowed"),
) -> None:
    """The whole inference path (select the state entries the policy reads, normalise, encode, K denoising steps,
    unnormalise) as one ONNX graph that takes the env's whole state vector."""
    from flywheel.cli.serve import parse_image_size
    from flywheel.policy.loading import load_policy
    from flywheel.policy.onnx_export import OnnxExportError, check_parity, export_onnx
    from flywheel.registry import PolicyRegistry
    from flywheel.vocab import DEFAULT_IMAGE_SIZE

    record = PolicyRegistry(state(ctx).store().db).resolve(policy)
    loaded = load_policy(record.checkpoint_uri, expected_sha256=record.sha256)
    size = parse_image_size(image_size) or loaded.input_spec.image_size or DEFAULT_IMAGE_SIZE
    path = export_onnx(loaded, out, size)
    report = check_parity(loaded, path, observations, size, tolerance)
    verdict = f"max-abs-diff {report.max_abs_diff:.3g} vs PyTorch over {observations} random observations"
    if not report.passed:
        path.unlink()
        raise OnnxExportError(f"policy {record.id}: ONNX {verdict} exceeds {tolerance:g}; {path} removed")
    size_mb = path.stat().st_size / 1e6
    Console().print(f"wrote {path} (policy {record.id}, {size_mb:.1f} MB); {verdict}", highlight=False, soft_wrap=True)
