"""Where a stage-only operator steps in: the best stage, and whether the task's two parts were still closing.

`bench.takeovers` counts a champion's takeovers per seed. This replays the champion alone on the seeds where it
was taken over, finds the step at which an operator that counts only stage progress (with the given per-stage
patience) would first have stepped in, and records the best stage then, how far the task's two parts
(`Task.approach_distance`, read from the recorded poses of the task's `approach_objects`) closed over the
`--window` steps before, and whether the champion went on to solve the episode alone. Insertion only: its
approach is between two objects, whose poses the episode's recorded state holds. Nothing is stored.

    python -m bench.takeover_approach --home DIR --version 4 --takeovers FILE [--stage-patience 60,60,140,60]

Writes bench/results/takeover_approach.json and prints the counts by stage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import RESULTS, headless_defaults, write_json

headless_defaults()

CLOSING_MM = 20.0
"""Parts that closed by at least this much over the window count as still closing (a steady approach)."""


def first_stage_only_takeover(stages: np.ndarray, patience: tuple[int, ...]) -> int | None:
    """The step at which an operator counting only stage progress, with `patience` per best stage, steps in."""
    from sim.operator import SimOperatorConfig, SimulatedOperator

    operator = SimulatedOperator(SimOperatorConfig(min_policy_steps=0))
    operator.reset(None, stage_patience=patience)
    for t, stage in enumerate(stages):
        if t > 0 and operator.decide(None, None).switch:
            return t
        operator.observe(int(stage))
    return None


def describe(stages: np.ndarray, distance_m: np.ndarray, patience: tuple[int, ...], window: int) -> dict[str, Any]:
    """One alone episode seen by the stage-only operator: where it steps in and what the parts did before."""
    step = first_stage_only_takeover(stages, patience)
    if step is None:
        return {"takeover_step": None}
    before = distance_m[max(0, step - window) : step]
    closed_mm = 1000.0 * float(before[0] - before[-1])
    return {
        "takeover_step": step,
        "best_stage": int(stages[:step].max()),
        "closed_mm": round(closed_mm, 1),
        "closing": closed_mm >= CLOSING_MM,
        "steps_left": len(stages) - step,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--version", type=int, required=True, help="the champion's policy version")
    parser.add_argument("--takeovers", type=Path, required=True, help="a bench.takeovers result holding it")
    parser.add_argument("--stage-patience", default="60,60,140,60", help="the stage-only operator's patience")
    parser.add_argument("--window", type=int, default=60, help="steps before the takeover to measure closing over")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS / "takeover_approach.json")
    args = parser.parse_args()

    from flywheel.collect import CollectSpec, ProcessPool
    from flywheel.config import Settings
    from flywheel.registry import PolicyRegistry
    from flywheel.store import EpisodeStore
    from sim.env import object_pose_key, state_layout
    from sim.tasks import task_class

    patience = tuple(int(p) for p in args.stage_patience.split(","))
    measured = json.loads(args.takeovers.read_text())
    rows = [r for r in measured["champions"] if r["policy_version"] == args.version]
    if not rows:
        sys.exit(f"takeover_approach: no row for version {args.version} in {args.takeovers}")
    row = rows[0]
    seeds = [int(seed) for seed, n in row["takeovers_by_seed"].items() if n > 0]
    store = EpisodeStore.open(Settings(home=args.home), migrate=False)
    version = PolicyRegistry(store.db).get(args.version)
    pair = task_class(version.task).approach_objects
    if pair is None:
        sys.exit(
            f"takeover_approach: version {args.version} is a {version.task} policy, whose approach distance needs a "
            "gripper's position, which the recorded state does not hold"
        )
    first, second = (state_layout(version.task)[object_pose_key(name)] for name in pair)
    source = f"bench-takeover-approach/policy-{version.id}"
    spec = CollectSpec.policy_alone(version, source, max_steps=measured["max_steps"])
    start = time.perf_counter()
    episodes = []
    for outcome in sorted(ProcessPool(spec, args.workers).run(seeds), key=lambda o: o.seed):
        assert outcome.frames is not None
        state = outcome.frames.state
        distance = np.linalg.norm(state[:, first][:, :3] - state[:, second][:, :3], axis=1)
        episodes.append(
            {"seed": outcome.seed, "solved_alone": bool(outcome.success)}
            | describe(outcome.frames.reward, distance, patience, args.window)
        )
    counts = Counter(
        f"stage {e['best_stage']}, {'closing' if e['closing'] else 'not closing'}, "
        f"{'solved' if e['solved_alone'] else 'failed'} alone"
        for e in episodes
        if e["takeover_step"] is not None
    )
    write_json(
        args.out,
        {
            "bench": "takeover_approach",
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "home": str(args.home),
            "policy_version": args.version,
            "takeovers_file": str(args.takeovers),
            "stage_patience": list(patience),
            "window": args.window,
            "closing_mm": CLOSING_MM,
            "counts": dict(sorted(counts.items())),
            "episodes": episodes,
            "wall_seconds": time.perf_counter() - start,
            "load_average": os.getloadavg()[0],
        },
    )
    for key, n in sorted(counts.items()):
        print(f"{key}: {n}")


if __name__ == "__main__":
    main()
