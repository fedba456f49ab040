"""Run the quickstart loop (`flywheel run --iterations N`, embedded defaults) and record its curve.

Writes bench/results/flywheel.json (per-iteration champion success with 95% intervals, interventions per
episode, episodes by tag, verdict, eval episodes used, champion successes per hour and fresh-seed success with
intervals, lineage drift; wall seconds, and the store's first-episode-to-last-iteration span, which
stays right when a killed run is resumed on the same --home) and bench/results/flywheel.png after every
iteration, and prints one line at the end.

    python -m bench.flywheel [--iterations 5] [--home DIR] [--config FILE] [--fixed-eval]

--fixed-eval evaluates every candidate on all eval seeds (one look), the run `python -m bench.eval_replay` replays
through both fixed and sequential evaluation.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from bench.common import RESULTS, headless_defaults, write_json

if TYPE_CHECKING:
    from flywheel.scheduler.results import IterationSummary

headless_defaults()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--home", type=Path, default=None, help="scratch flywheel home (default: a temp dir)")
    parser.add_argument("--config", type=Path, default=None, help="flywheel config (default: the quickstart's)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--fixed-eval", action="store_true", help="one look at the maximum (no sequential stop)")
    args = parser.parse_args()

    from rich.console import Console

    from flywheel.config import Settings
    from flywheel.scheduler import FlywheelLoop, PhaseContext, load_flywheel_config
    from flywheel.store import EpisodeStore

    home = args.home or Path(tempfile.mkdtemp(prefix="flywheel-bench-"))
    settings = Settings(home=home)
    config = load_flywheel_config(args.config)
    if args.fixed_eval:
        fixed = config.eval.model_copy(update={"block": len(config.eval.seed_list())})
        config = config.model_copy(update={"eval": fixed})
    store = EpisodeStore.open(settings)
    resumed = store.count() > 0
    start = time.perf_counter()
    load_start = os.getloadavg()[0]
    loop = FlywheelLoop(PhaseContext(store, settings, config, progress=False), Console())

    def write(summaries: list[IterationSummary], complete: bool) -> dict:
        rows = [summary_row(s) for s in summaries]
        result = {
            "iterations": rows,
            "complete": complete,
            "wall_seconds": time.perf_counter() - start,
            "resumed": resumed,
            "store_span_seconds": store_span_seconds(store),
            "store_busy_seconds": store_busy_seconds(store),
            "load_average_start": load_start,
            "load_average_end": os.getloadavg()[0],
            "task": config.task,
            "obs_mode": config.obs_mode,
            "eval_episodes": config.eval.episodes,
            "eval_block": config.eval.block_size(),
            "fixed_eval": args.fixed_eval,
            "fresh_episodes": config.eval.fresh_episodes,
            "episodes_per_iteration": config.episodes_per_iteration,
            "demos": config.demos,
            "home": str(home),
        }
        args.out.mkdir(parents=True, exist_ok=True)
        write_json(args.out / "flywheel.json", result)
        _plot(rows, args.out / "flywheel.png")
        return result

    # written after every iteration, so an interrupted run still leaves its curve so far
    summaries = loop.run(args.iterations, on_summary=lambda _: write(loop.book.summaries(), complete=False))
    result = write(summaries, complete=True)
    rows = result["iterations"]
    curve = " ".join(
        f"{r['iteration']}:{r['champion_success']:.0%}" if r["champion_success"] is not None else f"{r['iteration']}:-"
        for r in rows
    )
    print(f"flywheel: champion success by iteration {curve}; wall {result['wall_seconds'] / 60:.1f} min")


def summary_row(s: IterationSummary) -> dict:
    """One iteration of the loop as a JSON row (also the base of `bench.vision`'s rows)."""
    ci = s.champion_ci or [None, None]
    per_hour_ci = s.champion_successes_per_hour_ci or [None, None]
    fresh_ci = s.champion_fresh_ci or [None, None]
    return {
        "iteration": s.iteration,
        "champion": s.champion,
        "champion_success": s.champion_success,
        "ci_low": ci[0],
        "ci_high": ci[1],
        "candidate_success": s.candidate_success,
        "interventions_per_episode": s.interventions_per_episode,
        "episodes_by_tag": s.episodes_by_tag,
        "collect_success_rate": s.collect_success_rate,
        "verdict": s.verdict,
        "eval_episodes_used": s.eval_episodes_used,
        "eval_rollouts": s.eval_rollouts,
        "champion_successes_per_hour": s.champion_successes_per_hour,
        "champion_successes_per_hour_ci_low": per_hour_ci[0],
        "champion_successes_per_hour_ci_high": per_hour_ci[1],
        "champion_fresh_success": s.champion_fresh_success,
        "champion_fresh_ci_low": fresh_ci[0],
        "champion_fresh_ci_high": fresh_ci[1],
        "champion_fresh_episodes": s.champion_fresh_episodes,
        "lineage_drift": s.lineage_drift,
    }


def store_span_seconds(store: object) -> float | None:
    """First episode stored → last iteration finished: the run's length even across a kill and resume."""
    from sqlalchemy import func, select

    from flywheel.store.models import Episode, Iteration

    with store.db.read() as session:  # type: ignore[attr-defined]
        first = session.scalar(select(func.min(Episode.created_at)))
        last = session.scalar(select(func.max(Iteration.finished_at)))
    return (last - first).total_seconds() if first and last else None


def store_busy_seconds(store: object) -> float | None:
    """The loop's jobs' own time (each finished job's last attempt): the run's length less the pauses between
    sessions and the attempts that failed."""
    from sqlalchemy import select

    from flywheel.store.models import Job, JobState

    with store.db.read() as session:  # type: ignore[attr-defined]
        spans = session.execute(
            select(Job.started_at, Job.finished_at).where(Job.state == JobState.SUCCEEDED, Job.started_at.is_not(None))
        ).all()
    return sum((finished - started).total_seconds() for started, finished in spans) if spans else None


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    its = [r["iteration"] for r in rows if r["champion_success"] is not None]
    rate = [r["champion_success"] for r in rows if r["champion_success"] is not None]
    # clamped: summaries stored before the Wilson bound was exact at 100% hold an upper bound a hair below it
    low = [max(0.0, r["champion_success"] - r["ci_low"]) for r in rows if r["champion_success"] is not None]
    high = [max(0.0, r["ci_high"] - r["champion_success"]) for r in rows if r["champion_success"] is not None]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.errorbar(its, rate, yerr=[low, high], marker="o", capsize=4, label="champion success (95% CI)")
    ax.set_xlabel("iteration")
    ax.set_ylabel("success rate")
    ax.set_ylim(0, 1.05)
    ax2 = ax.twinx()
    collected = [r for r in rows if sum(r["episodes_by_tag"].values())]  # iteration 0 trains on demos only
    ax2.plot(
        [r["iteration"] for r in collected],
        [r["interventions_per_episode"] for r in collected],
        "s--",
        color="tab:red",
        label="takeovers per collected episode",
    )
    ax2.set_ylabel("takeovers per episode")
    ax2.set_ylim(0, max([1.0] + [r["interventions_per_episode"] * 1.1 for r in collected]))
    ax.set_xticks(its)
    handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(handles=handles, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
