"""Takeovers per episode of every champion a flywheel run promoted, on the same seeds.

The loop's own per-iteration count comes from 20 collected episodes on different seeds each iteration, so it
is noisy. This replays each champion in turn (in the order the `champion` alias moved) on one fixed set of
held-out seeds with the run's simulated operator and episode length (give the run's `--preset` and `--config`;
the quickstart's without them), and counts the operator's takeovers, per seed too. With two or more champions
it also gives the last one's change against the first, with a paired bootstrap interval over the seeds. With
`--alone` each champion also plays the same seeds with no operator, which says how many of the episodes the
operator took over the champion would have solved by itself (a takeover during a pause it recovers from).
`--seeds held-out` plays bench.vision's final seeds instead of this bench's own. Nothing is stored.

    python -m bench.takeovers --home DIR [--preset NAME] [--config FILE] [--versions 1,6] [--episodes 100]
        [--workers 2] [--cfg-beta 2.0] [--execute-steps 4] [--alone] [--seeds held-out]

Writes bench/results/takeovers.json and prints a summary.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.common import RESULTS, headless_defaults, write_json
from bench.sampling import SamplingOverrides, add_sampling_arguments

if TYPE_CHECKING:
    from flywheel.registry import PolicyRegistry
    from flywheel.registry.records import PolicyRecord
    from flywheel.scheduler import FlywheelConfig

headless_defaults()

# Held-out seeds away from the loop's eval seeds (those start at offset 0), so no champion was selected on them.
SEED_OFFSET = 5000


def champions_in_order(registry: PolicyRegistry) -> list[int]:
    """Every version the `champion` alias pointed at, first promotion first, each once."""
    order: list[int] = []
    for move in registry.history("champion"):
        if move.to_version_id is not None and move.to_version_id not in order:
            order.append(move.to_version_id)
    return order


def measure(
    version: PolicyRecord,
    seeds: list[int],
    workers: int,
    config: FlywheelConfig,
    sampling: SamplingOverrides = SamplingOverrides(),
) -> dict[str, Any]:
    """The simulated operator's takeovers over `version`'s episodes on `seeds`."""
    from flywheel.collect import CollectSpec, ProcessPool

    spec = CollectSpec.for_policy(
        version,
        f"bench-takeovers/policy-{version.id}",
        max_steps=config.max_steps,
        operator_mode="simulated",
        sim_operator=config.operator,
        **sampling.spec_settings(),
    )
    outcomes = sorted(ProcessPool(spec, min(workers, len(seeds))).run(seeds), key=lambda o: o.seed)
    return (
        {"policy_version": version.id, "iteration": version.iteration}
        | takeover_counts(
            {str(o.seed): o.interventions for o in outcomes}, {str(o.seed): bool(o.success) for o in outcomes}
        )
        | {"longest_episode_steps": max((len(o.frames.action) for o in outcomes if o.frames is not None), default=0)}
    )


def takeover_counts(takeovers_by_seed: dict[str, int], success_by_seed: dict[str, bool]) -> dict[str, Any]:
    """A champion's row counted from its per-seed takeovers and successes with the operator (the same seeds)."""
    takeovers = sum(takeovers_by_seed.values())
    return {
        "episodes": len(takeovers_by_seed),
        "takeovers": takeovers,
        "takeovers_per_episode": takeovers / len(takeovers_by_seed),
        "episodes_with_takeover": sum(1 for count in takeovers_by_seed.values() if count),
        "successes_with_operator": sum(success_by_seed.values()),
        "takeovers_by_seed": takeovers_by_seed,
        "success_by_seed": success_by_seed,
    }


def measure_alone(
    version: PolicyRecord,
    seeds: list[int],
    workers: int,
    config: FlywheelConfig,
    sampling: SamplingOverrides = SamplingOverrides(),
) -> dict[str, bool]:
    """Whether `version`, acting with no operator for the run's episode length, solves each of `seeds`."""
    from flywheel.collect import CollectSpec, ProcessPool

    spec = CollectSpec.policy_alone(
        version,
        f"bench-takeovers/policy-{version.id}-alone",
        max_steps=config.max_steps,
        **sampling.spec_settings(),
    )
    return {str(o.seed): bool(o.success) for o in ProcessPool(spec, min(workers, len(seeds))).run(seeds)}


def takeovers_it_did_not_need(row: dict[str, Any], alone: dict[str, bool]) -> dict[str, Any]:
    """Set beside one champion's takeovers (`row`) its outcomes alone on the same seeds."""
    taken_over = [seed for seed, count in row["takeovers_by_seed"].items() if count]
    solved_alone_too = [seed for seed in taken_over if alone[seed]]
    return {
        "solved_alone": sum(alone.values()),
        "success_alone_by_seed": alone,
        "episodes_with_takeover_solved_alone": len(solved_alone_too),
        "takeovers_in_episodes_solved_alone": sum(row["takeovers_by_seed"][seed] for seed in solved_alone_too),
    }


def needed_takeovers_by_seed(row: dict[str, Any]) -> dict[str, int]:
    """A champion's takeovers per seed, counting only the seeds it fails alone (needs `--alone`'s outcomes)."""
    alone = row["success_alone_by_seed"]
    return {seed: 0 if alone[seed] else count for seed, count in row["takeovers_by_seed"].items()}


def first_to_last(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The last champion's takeovers per episode against the first's on the same seeds, with a 95% interval; with
    `--alone`'s outcomes, also the change in the takeovers of episodes the champion fails alone (`needed`)."""
    from flywheel.evaluate.throughput import paired_relative_change

    if len(rows) < 2:
        return None

    def change(first: dict[str, int], last: dict[str, int]) -> tuple[float | None, list[float]]:
        seeds = sorted(first, key=int)
        value, ci = paired_relative_change([first[s] for s in seeds], [last[s] for s in seeds])
        return value, list(ci)

    value, ci = change(rows[0]["takeovers_by_seed"], rows[-1]["takeovers_by_seed"])
    result: dict[str, Any] = {
        "from": rows[0]["policy_version"],
        "to": rows[-1]["policy_version"],
        "change": value,
        "ci": ci,
    }
    if all("success_alone_by_seed" in row for row in (rows[0], rows[-1])):
        needed, needed_ci = change(needed_takeovers_by_seed(rows[0]), needed_takeovers_by_seed(rows[-1]))
        result["needed"] = {"change": needed, "ci": needed_ci}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True, help="the flywheel home of a finished run")
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--preset", default=None, help="the run's preset (its operator and episode length)")
    parser.add_argument("--config", type=Path, default=None, help="the run's config file, if it had one")
    parser.add_argument(
        "--versions", default=None, help="only these champions, comma-separated policy versions (default: all)"
    )
    add_sampling_arguments(parser)
    parser.add_argument(
        "--alone",
        action="store_true",
        help="also play each champion on the same seeds with no operator, and count the takeovers in episodes "
        "it solves alone",
    )
    parser.add_argument(
        "--seeds",
        choices=["takeovers", "held-out"],
        default="takeovers",
        help="takeovers: this bench's own fixed seeds; held-out: bench.vision's final seeds",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "takeovers.json")
    args = parser.parse_args()

    from bench.vision import FINAL_SEED_OFFSET
    from flywheel.collect.seeds import eval_seeds, fresh_seeds
    from flywheel.config import Settings
    from flywheel.errors import FlywheelError
    from flywheel.registry import PolicyRegistry
    from flywheel.scheduler.config import load_flywheel_config
    from flywheel.store import EpisodeStore
    from sim.operator import APPROACH_MARGIN_M
    from sim.tasks import task_class

    if not (args.home / "flywheel.db").is_file():
        sys.exit(f"takeovers: no store in {args.home}; run `python -m bench.flywheel --home {args.home}` first")
    try:
        config = load_flywheel_config(args.config, args.preset)
    except FlywheelError as exc:
        sys.exit(f"takeovers: {exc}")
    store = EpisodeStore.open(Settings(home=args.home), migrate=False)
    registry = PolicyRegistry(store.db)
    order = champions_in_order(registry)
    if not order:
        sys.exit(f"takeovers: {args.home} has never had a champion")
    if args.versions is not None:
        try:
            wanted = [int(v) for v in args.versions.split(",")]
        except ValueError:
            sys.exit(f"takeovers: --versions {args.versions!r}: comma-separated policy versions, e.g. 1,6")
        if unknown := [v for v in wanted if v not in order]:
            sys.exit(f"takeovers: versions {unknown} were never champion in {args.home}; its champions: {order}")
        order = [v for v in order if v in wanted]
    if args.seeds == "held-out":
        seeds, seed_range = fresh_seeds(args.episodes, FINAL_SEED_OFFSET), f"fresh_seeds(n, {FINAL_SEED_OFFSET})"
    else:
        seeds, seed_range = eval_seeds(args.episodes, SEED_OFFSET), f"eval_seeds(n, {SEED_OFFSET})"
    sampling = SamplingOverrides.from_args(args)
    start = time.perf_counter()
    rows = []
    for version_id in order:
        version = registry.get(version_id)
        row = measure(version, seeds, args.workers, config, sampling) | {"sampling": sampling.effective(version)}
        if args.alone:
            row |= takeovers_it_did_not_need(row, measure_alone(version, seeds, args.workers, config, sampling))
        rows.append(row)
    result = {
        "bench": "takeovers",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "home": str(args.home),
        "seeds": seed_range,
        "preset": args.preset,
        "config": str(args.config) if args.config else None,
        "operator": config.operator or "simulated-operator defaults",
        "operator_patience": list(task_class(registry.get(order[0]).task).operator_patience),
        "approach_margin_m": APPROACH_MARGIN_M,
        "max_steps": config.max_steps,
        "cfg_beta": args.cfg_beta,
        "execute_steps": args.execute_steps,
        "champions": rows,
        "first_to_last": first_to_last(rows),
        "wall_seconds": time.perf_counter() - start,
        "load_average": os.getloadavg()[0],
    }
    write_json(args.out, result)
    curve = " → ".join(f"{r['takeovers_per_episode']:.2f}" for r in rows)
    print(f"takeovers per episode by champion (iterations {[r['iteration'] for r in rows]}): {curve}")
    if (change := result["first_to_last"]) is not None and change["change"] is not None:
        low, high = change["ci"]
        print(f"v{change['from']} → v{change['to']}: {change['change']:+.0%} [{low:+.0%}, {high:+.0%}] (paired, 95%)")
        if (needed := change.get("needed")) is not None and needed["change"] is not None:
            low, high = needed["ci"]
            print(f"  counting only episodes each fails alone: {needed['change']:+.0%} [{low:+.0%}, {high:+.0%}]")
    for row in rows if args.alone else []:
        print(
            f"v{row['policy_version']}: solves {row['solved_alone']} of {row['episodes']} alone; of its "
            f"{row['episodes_with_takeover']} episodes with a takeover it solves "
            f"{row['episodes_with_takeover_solved_alone']} alone"
        )


if __name__ == "__main__":
    main()
