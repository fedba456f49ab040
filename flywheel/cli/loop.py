"""`flywheel run`, `flywheel train` and `flywheel eval`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from flywheel.cli.context import state
from flywheel.identity import acting_operator

if TYPE_CHECKING:
    from flywheel.scheduler.results import IterationSummary

HOME_HELP = "data directory (overrides FLYWHEEL_HOME and the global --home)"
PRESET_HELP = "named settings (`flywheel presets` lists them; default quickstart)"


def run(
    ctx: typer.Context,
    iterations: int = typer.Option(5, min=0, help="run until this many iterations are complete"),
    config: Path | None = typer.Option(
        None, "--config", help="flywheel config (YAML), laid over the preset; may name one (`preset: NAME`)"
    ),
    preset: str | None = typer.Option(None, "--preset", help=PRESET_HELP),
    task: str | None = typer.Option(None, "--task", help="the task to run (overrides the config's `task:`)"),
    resume: bool = typer.Option(False, "--resume", help="continue after a crash (a plain re-run does the same)"),
    home: Path | None = typer.Option(None, "--home", help=HOME_HELP),
    quiet: bool = typer.Option(False, "--quiet", help="no progress bars"),
    operator: str | None = typer.Option(
        None, "--operator", help="simulated | console: rollouts wait for a person in `flywheel console`"
    ),
    console_timeout: float | None = typer.Option(
        None, "--console-timeout", min=1, help="--operator console: seconds to wait for a person, then simulated"
    ),
    retry_failed: bool = typer.Option(
        False, "--retry-failed", help="reset the attempts of jobs that hit their limit (after fixing the cause)"
    ),
    reason: str | None = typer.Option(None, "--reason", help="--retry-failed: what was fixed (audited)"),
) -> None:
    """Seed demos if needed, then iterate collect → train → eval → promote until ITERATIONS are done."""
    from flywheel.scheduler import FlywheelLoop, PhaseContext, load_flywheel_config
    from flywheel.scheduler.jobs import RetryRequest

    cli = state(ctx, home=home)
    cfg = load_flywheel_config(config, preset, task)
    if operator is not None and operator not in ("simulated", "console"):
        raise typer.BadParameter("use simulated or console", param_hint="--operator")
    overrides = {"operator_mode": operator, "console_timeout_seconds": console_timeout}
    cfg = cfg.model_copy(update={k: v for k, v in overrides.items() if v is not None})
    console = Console()
    loop = FlywheelLoop(PhaseContext(cli.store(), cli.settings, cfg, progress=not quiet), console)
    if reason is not None and not retry_failed:
        raise typer.BadParameter("--reason goes with --retry-failed", param_hint="--reason")
    retry = RetryRequest(acting_operator(cli.settings.operator), reason or "") if retry_failed else None
    done_before = loop.book.completed_iterations()
    if resume and not done_before and loop.book.latest_iteration() is None:
        console.print("nothing to resume: starting fresh")
    summaries = loop.run(iterations, on_summary=lambda s: console.print(_row_table([s])), retry_failed=retry)
    console.rule("flywheel")
    console.print(_row_table(summaries))
    console.print("next: `flywheel console` to review interventions; `flywheel policies list` for lineage")


def _row_table(summaries: list[IterationSummary]) -> Table:
    """The iterations as `flywheel run` prints them. The gate's figures read high (the gate picks its winners on
    them), so the champion's re-measurement on fresh seeds stands beside them where there is one."""
    table = Table(title="iterations")
    columns = (
        "iter",
        "episodes by tag",
        "takeovers/ep",
        "candidate success [95% CI]",
        "champion (gate seeds)",
        "champion on fresh seeds",
        "verdict",
    )
    for column in columns:
        table.add_column(column)
    for s in summaries:
        tags = " ".join(f"{k[:4]}:{v}" for k, v in s.episodes_by_tag.items() if v) or "-"
        ci = s.candidate_ci
        champion = "-" if s.champion_success is None else f"{s.champion_success:.0%} (v{s.champion})"
        table.add_row(
            str(s.iteration),
            tags,
            f"{s.interventions_per_episode:.2f}",
            f"{s.candidate_success:.0%} [{ci[0]:.0%}, {ci[1]:.0%}] (v{s.candidate})",
            champion,
            _fresh_cell(s),
            s.verdict + (f": {s.reason}" if s.reason else ""),
        )
    return table


def _fresh_cell(summary: IterationSummary) -> str:
    if summary.champion_fresh_success is None:
        return "-"
    ci = summary.champion_fresh_ci or [float("nan"), float("nan")]
    return f"{summary.champion_fresh_success:.0%} [{ci[0]:.0%}, {ci[1]:.0%}] of {summary.champion_fresh_episodes}"


def train(
    ctx: typer.Context,
    config: Path | None = typer.Option(None, "--config", help="training config (YAML/JSON), laid over the preset"),
    preset: str = typer.Option("quickstart", "--preset", help=PRESET_HELP),
    task: str = typer.Option("transfer_cube", help="task whose episodes to train on"),
    from_policy: str | None = typer.Option(None, "--from-policy", help="warm-start from this version or alias"),
    steps: int | None = typer.Option(None, "--steps", min=1, help="override the policy steps of the config"),
    out: Path | None = typer.Option(None, "--out", help="checkpoint directory (default: under the home)"),
    home: Path | None = typer.Option(None, "--home", help=HOME_HELP),
) -> None:
    """Train a candidate on the store's non-rejected episodes and register it."""
    from flywheel.ownership import claim_checkpoints_folder
    from flywheel.presets import train_config
    from flywheel.registry import PolicyRegistry
    from flywheel.train.config import load_config_data
    from flywheel.train.data import load_training_episodes
    from flywheel.train.registration import register_trained_candidate
    from flywheel.train.trainer import run_training

    cli = state(ctx, home=home)
    cfg = train_config(preset, load_config_data(config) if config is not None else None, source=str(config or ""))
    if steps is not None:
        cfg = cfg.model_copy(update={"steps": steps})
    store = cli.store()
    if out is None:  # another store's manual-NNNN there would be overwritten
        claim_checkpoints_folder(cli.settings, store.owner)
    registry = PolicyRegistry(store.db)
    parent = registry.resolve(from_policy) if from_policy else None
    episodes = load_training_episodes(store, task)
    out_dir = out or cli.settings.checkpoints_root / f"manual-{len(registry.list_versions()) + 1:04d}"
    result = run_training(cfg, episodes, out_dir, init_from=parent.checkpoint_uri if parent else None)
    version = register_trained_candidate(
        registry, task=task, config=cfg, result=result, parent_id=parent.id if parent else None
    )
    Console().print(
        f"registered candidate policy {version.id} ({result.checkpoint_dir}); "
        f"next: `flywheel eval --policy {version.id}`"
    )


def evaluate(
    ctx: typer.Context,
    policy: str = typer.Option(..., "--policy", help="version id or alias"),
    episodes: int = typer.Option(50, min=1, help="held-out eval episodes"),
    workers: int = typer.Option(2, min=1),
    as_json: bool = typer.Option(False, "--json"),
    home: Path | None = typer.Option(None, "--home", help=HOME_HELP),
) -> None:
    """Run the eval gates for a policy (no promotion)."""
    from flywheel.evaluate.runner import EvalConfig, Evaluator

    cli = state(ctx, home=home)
    config = EvalConfig(episodes=episodes, workers=workers)
    result = Evaluator(cli.store(), config, progress=not as_json).evaluate(policy)  # --json: stdout is JSON only
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "eval_run_id": result.eval_run_id,
                    "passed": result.passed,
                    "summary": result.summary.__dict__,
                    "gates": [v.as_dict() for v in result.verdicts],
                },
                indent=2,
                default=str,
            )
        )
        return
    console = Console()
    s = result.summary
    console.print(
        f"policy {result.policy_version_id}: success {s.successes}/{s.episodes} ({s.success_rate:.0%}, "
        f"95% CI [{s.ci_low:.0%}, {s.ci_high:.0%}]), act() p50 {s.latency_p50_ms:.1f} ms"
    )
    for v in result.verdicts:
        console.print(f"  {'[green]pass[/]' if v.passed else '[red]FAIL[/]'} {v.gate}: {v.reason}")
    console.print(f"eval run {result.eval_run_id}: {'all gates passed' if result.passed else 'gates failed'}")


def presets(as_json: bool = typer.Option(False, "--json", help="each preset's full loop config as JSON")) -> None:
    """List the named presets (`flywheel run --preset NAME`, `flywheel train --preset NAME`)."""
    from flywheel.presets import PRESETS

    if as_json:
        typer.echo(json.dumps({name: p.flywheel().model_dump(mode="json") for name, p in PRESETS.items()}, indent=2))
        return
    table = Table(title="presets")
    for column in ("name", "train (method, policy/critic steps, model)", "what it is"):
        table.add_column(column)
    for name, p in PRESETS.items():
        t = p.train()
        e = t.model.expert
        shape = f"{t.method}, {t.steps}/{t.critic_steps if t.uses_critic else 0} steps, expert {e.dim}x{e.layers}"
        table.add_row(name, shape, p.summary)
    Console().print(table)
