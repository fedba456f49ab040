"""Takeovers per episode of every champion a flywheel run promoted, on the same seeds.

The loop's own per-iteration count comes from 20 collected episodes on different seeds each iteration, so it
is noisy. This replays each champion in turn (in the order the `champion` alias moved) on one fixed set of
held-out seeds with the simulated operator (the quickstart's settings), and counts the operator's takeovers.
Nothing is stored.

    python -m bench.takeovers --home DIR [--episodes 100] [--workers 2]

Writes bench/results/takeovers.json and prints one line.
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

if TYPE_CHECKING:
    from flywheel.registry import PolicyRegistry
    from flywheel.registry.records import PolicyRecord

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


def measure(version: PolicyRecord, seeds: list[int], workers: int, sim_operator: dict[str, Any]) -> dict[str, Any]:
    from flywheel.collect import CollectSpec, ProcessPool

    spec = CollectSpec(
        task=version.task,
        **CollectSpec.observation_for(version.checkpoint_uri),
        operator_mode="simulated",
        sim_operator=sim_operator,
        policy_version_id=version.id,
        policy_checkpoint=version.checkpoint_uri,
        policy_sha256=version.sha256,
        source_prefix=f"bench-takeovers/policy-{version.id}",
    )
    outcomes = list(ProcessPool(spec, min(workers, len(seeds))).run(seeds))
    takeovers = sum(o.interventions for o in outcomes)
    return {
        "policy_version": version.id,
        "iteration": version.iteration,
        "episodes": len(outcomes),
        "takeovers": takeovers,
        "takeovers_per_episode": takeovers / len(outcomes),
        "episodes_with_takeover": sum(1 for o in outcomes if o.interventions),
        "successes_with_operator": sum(1 for o in outcomes if o.success),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True, help="the flywheel home of a finished run")
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS / "takeovers.json")
    args = parser.parse_args()

    from flywheel.collect.seeds import eval_seeds
    from flywheel.config import Settings
    from flywheel.registry import PolicyRegistry
    from flywheel.scheduler import FlywheelConfig
    from flywheel.store import EpisodeStore

    if not (args.home / "flywheel.db").is_file():
        sys.exit(f"takeovers: no store in {args.home}; run `python -m bench.flywheel --home {args.home}` first")
    store = EpisodeStore.open(Settings(home=args.home), migrate=False)
    registry = PolicyRegistry(store.db)
    order = champions_in_order(registry)
    if not order:
        sys.exit(f"takeovers: {args.home} has never had a champion")
    seeds = eval_seeds(args.episodes, SEED_OFFSET)
    sim_operator = FlywheelConfig().operator
    start = time.perf_counter()
    rows = [measure(registry.get(version_id), seeds, args.workers, sim_operator) for version_id in order]
    result = {
        "bench": "takeovers",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "home": str(args.home),
        "seeds": f"eval_seeds({args.episodes}, {SEED_OFFSET})",
        "operator": sim_operator or "simulated-operator defaults",
        "champions": rows,
        "wall_seconds": time.perf_counter() - start,
        "load_average": os.getloadavg()[0],
    }
    write_json(args.out, result)
    curve = " → ".join(f"{r['takeovers_per_episode']:.2f}" for r in rows)
    print(f"takeovers per episode by champion (iterations {[r['iteration'] for r in rows]}): {curve}")


if __name__ == "__main__":
    main()
