"""`flywheel demos` and `flywheel collect`: episodes from the expert, or from a policy with an operator."""

from __future__ import annotations

import re
from pathlib import Path
from typing import get_args

import typer
from rich.console import Console

from flywheel.cli.context import state
from flywheel.collect import CollectReport, CollectSpec, collect
from flywheel.collect.attended import attended_config
from flywheel.collect.seeds import collection_seeds, demo_seeds
from flywheel.collect.spec import POLICY_DEVICE_PATTERN, PolicyPrecision
from flywheel.registry import PolicyRegistry
from flywheel.store import EpisodeFilter
from flywheel.vocab import DEFAULT_CAMERA

HOME_HELP = "data directory (overrides FLYWHEEL_HOME and the global --home)"


def demos(
    ctx: typer.Context,
    task: str = typer.Option("transfer_cube", help="transfer_cube | insertion"),
    n: int = typer.Option(20, "--n", min=1, help="number of expert demos"),
    workers: int = typer.Option(1, min=1, help="worker processes"),
    obs_mode: str = typer.Option("state", help="state | pixels"),
    camera: list[str] = typer.Option([DEFAULT_CAMERA], help="cameras to record in pixels mode"),
    use_ray: bool = typer.Option(False, "--ray", help="collect on Ray actors"),
    home: Path | None = typer.Option(None, "--home", help=HOME_HELP),
) -> None:
    """Record N expert demos (tag `demo`) on fresh seeds."""
    cli = state(ctx, home=home)
    store = cli.store()
    existing = store.count(EpisodeFilter(task=task, tag="demo"))
    spec = CollectSpec.for_demos(task, obs_mode=obs_mode, cameras=tuple(camera))
    report = collect(store, spec, demo_seeds(n, start=existing), workers=workers, use_ray=use_ray)
    _summary(report, "demos")


def collect_command(
    ctx: typer.Context,
    policy: str = typer.Option("champion", help="policy version id or alias"),
    episodes: int = typer.Option(10, min=1, help="number of episodes"),
    workers: int = typer.Option(1, min=1, help="worker processes"),
    envs_per_worker: int = typer.Option(
        32, min=1, max=64, help="episodes each worker steps in lockstep, re-planning them in one batched policy pass"
    ),
    operator: str = typer.Option("simulated", help="simulated | none | console (ask a person in the console)"),
    console_timeout: float = typer.Option(
        60.0, "--console-timeout", min=1, help="--operator console: seconds to wait for a person, then simulated"
    ),
    precision: str | None = typer.Option(
        None, help="policy arithmetic: auto | fp32 | bf16 (default: the checkpoint's inference.precision)"
    ),
    policy_device: str = typer.Option(
        "cpu",
        help="where the policy samples: cpu | cuda[:N] (local workers share that device; --ray takes plain cuda and "
        "spreads the actors over the cluster's GPUs). The simulation runs on the CPU either way; on a GPU, `auto` "
        "precision samples in fp32 (--precision bf16 autocasts)",
    ),
    use_ray: bool = typer.Option(False, "--ray", help="collect on Ray actors"),
    iteration: int | None = typer.Option(None, help="record the episodes under this flywheel iteration"),
    home: Path | None = typer.Option(None, "--home", help=HOME_HELP),
) -> None:
    """Roll out a policy; a simulated operator takes over when it fails (tags autonomous / intervention)."""
    if operator not in ("simulated", "none", "console"):
        raise typer.BadParameter("use simulated, none or console", param_hint="--operator")
    if precision is not None and precision not in get_args(PolicyPrecision):
        raise typer.BadParameter("use auto, fp32 or bf16", param_hint="--precision")
    if not re.fullmatch(POLICY_DEVICE_PATTERN, policy_device):
        raise typer.BadParameter("use cpu, cuda or cuda:N", param_hint="--policy-device")
    cli = state(ctx, home=home)
    store = cli.store()
    version = PolicyRegistry(store.db).resolve(policy)
    existing = store.count(EpisodeFilter(policy_version_id=version.id))
    block = iteration if iteration is not None else 1 + version.id
    seeds = collection_seeds(block, existing + episodes)[existing:]
    spec = CollectSpec.for_policy(
        version,
        f"collect/policy-{version.id}",
        operator_mode=operator,
        iteration=iteration,
        envs_per_worker=envs_per_worker,
        precision=precision,  # type: ignore[arg-type]
        policy_device=policy_device,
        attended=attended_config(cli.settings, console_timeout) if operator == "console" else None,
    )
    report = collect(store, spec, seeds, workers=workers, use_ray=use_ray)
    _summary(report, "episodes")


def _summary(report: CollectReport, what: str) -> None:
    console = Console()
    n = report.collected
    rate = f"{report.successes / n:.0%}" if n else "-"
    tags = ", ".join(f"{k} {v}" for k, v in sorted(report.counts_by_tag.items())) or "none"
    console.print(
        f"stored {n} {what} ({tags}); success {report.successes}/{n} ({rate}); takeovers {report.interventions}"
        + (f"; {report.skipped_existing} already stored" if report.skipped_existing else "")
        + (f"; re-collected {len(report.discarded_seeds)} lost to dead workers" if report.discarded_seeds else "")
        + (f"; {report.errors} ended with an error" if report.errors else "")
    )
