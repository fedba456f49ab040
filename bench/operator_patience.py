"""How long the scripted expert goes without progress, per task and stage: the simulated operator's patience.

The simulated operator takes over once the robot has made no progress (`sim.operator.ProgressClock`: a higher
stage, or the task's two parts visibly closer) for `Task.operator_patience[stage]` steps. A watching person would
not take over from a robot moving at the expert's own pace, so each value must stay above what the expert needs
at that stage. This rolls the expert out (state only) on fresh seeds, records per episode the longest wait without
progress at each best stage (waits that progress ended; the wait for the episode to end is not one), and compares
the percentiles with the task's setting.

    python -m bench.operator_patience [--episodes 300]

Writes bench/results/operator_patience.json and prints one line per task and stage.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import RESULTS, headless_defaults, task_names, write_json

headless_defaults()

SEED_OFFSET = 700_000
"""Away from the collection, eval and held-out seed ranges."""
MIN_PATIENCE = 60
"""The shortest patience at any stage: below it, a slow but sound policy is interrupted mid-reach."""


def progress_waits(stages: Sequence[int], approaches: Sequence[float | None]) -> dict[int, int]:
    """The longest run of steps without progress at each best stage, counting only runs that progress ended."""
    from sim.operator import ProgressClock

    clock = ProgressClock()
    waits: dict[int, int] = {}
    for stage, approach_m in zip(stages, approaches, strict=True):
        best, waited = clock.best_stage, clock.since
        if clock.tick(stage, approach_m):
            waits[best] = max(waits.get(best, 0), waited)
    return waits


def suggested_patience(waits: list[int]) -> int:
    """The floor `Task.operator_patience` keeps to: the 99th percentile rounded up to tens, at least 60 steps."""
    if not waits:
        return MIN_PATIENCE
    return max(MIN_PATIENCE, int(math.ceil(float(np.percentile(waits, 99)) / 10.0) * 10))


def measure(task: str, episodes: int) -> dict[str, Any]:
    from sim.env import make_env
    from sim.rollout import EpisodeRunner
    from sim.tasks import task_class

    env = make_env(task)
    waits: dict[int, list[int]] = {stage: [] for stage in range(4)}
    successes = 0
    for seed in range(SEED_OFFSET, SEED_OFFSET + episodes):
        runner = EpisodeRunner(env, seed)
        stages, approaches = [], []
        while not runner.done:
            stages.append(int(runner.step().info["stage"]))
            approaches.append(env.task.approach_distance(env.data))
        successes += int(runner.success)
        for stage, wait in progress_waits(stages, approaches).items():
            if stage < len(waits):
                waits[stage].append(wait)
    configured = task_class(task).operator_patience
    stages = []
    for stage, values in waits.items():
        row: dict[str, Any] = {"stage": stage, "left": len(values), "configured": configured[stage]}
        if values:
            row |= {f"p{q}": float(np.percentile(values, q)) for q in (50, 95, 99)} | {"max": max(values)}
        row["suggested"] = suggested_patience(values)
        row["expert_waits_over_configured"] = sum(1 for w in values if w >= configured[stage])
        stages.append(row)
    return {"episodes": episodes, "expert_successes": successes, "stages": stages}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=300)
    parser.add_argument("--out", type=Path, default=RESULTS / "operator_patience.json")
    args = parser.parse_args()
    from sim.operator import APPROACH_MARGIN_M

    start = time.perf_counter()
    tasks = {task: measure(task, args.episodes) for task in task_names()}
    write_json(
        args.out,
        {
            "bench": "operator_patience",
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "seeds": f"range({SEED_OFFSET}, {SEED_OFFSET} + {args.episodes})",
            "rule": f"configured >= the expert's 99th-percentile wait, rounded up to tens, and >= {MIN_PATIENCE}",
            "progress": f"a higher stage, or the task's approach distance {APPROACH_MARGIN_M * 1000:.0f} mm closer",
            "tasks": tasks,
            "wall_seconds": time.perf_counter() - start,
            "load_average": os.getloadavg()[0],
        },
    )
    for task, doc in tasks.items():
        for row in doc["stages"]:
            spread = f"p50 {row['p50']:.0f}, p99 {row['p99']:.0f}, max {row['max']}" if row["left"] else "never left"
            print(
                f"{task} stage {row['stage']}: expert wait {spread} over {row['left']} episodes; "
                f"configured {row['configured']}, floor {row['suggested']}, "
                f"{row['expert_waits_over_configured']} expert waits reach it"
            )


if __name__ == "__main__":
    main()
