"""Where the operator took over, iteration by iteration: the task stage each takeover of a run's collected
episodes began at.

    python -m bench.takeover_stages --home DIR --task insertion [--out FILE]

For each loop iteration's collected episodes (demos have no iteration and are left out) it counts the takeovers
(segments a person or the expert drove) by the highest stage the episode had reached when each began, named by
`sim.tasks`, beside the policy versions that collected them and the step the takeover began at. It reads the
store (checking every episode file's sha256) and changes nothing. Writes bench/results/takeover_stages.json
unless `--out` says otherwise, and prints one line per iteration.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.common import RESULTS, store_result_header, task_names, write_json

if TYPE_CHECKING:
    from flywheel.store import EpisodeStore


def takeover_stages(store: EpisodeStore, task: str) -> list[dict[str, Any]]:
    """One row per iteration with collected episodes of `task`: its takeovers by the stage they began at."""
    from flywheel.store.episodes import EpisodeFilter
    from flywheel.vocab import ControllerKind
    from sim.tasks import task_class

    names = task_class(task).stages
    by_iteration: dict[int, list[Any]] = defaultdict(list)
    for record in store.list_episodes(EpisodeFilter(task=task), with_segments=True):
        if record.iteration is not None:
            by_iteration[record.iteration].append(record)
    rows = []
    for iteration, records in sorted(by_iteration.items()):
        stages: Counter[str] = Counter()
        starts: list[int] = []
        for record in records:
            taken = [s for s in record.segments if s.controller != ControllerKind.POLICY.value]
            if not taken:
                continue
            reached = np.maximum.accumulate(np.asarray(store.read_record_frames(record).reward, dtype=float))
            for segment in taken:
                stages[names[int(reached[segment.start - 1])] if segment.start else names[0]] += 1
                starts.append(segment.start)
        rows.append(
            {
                "iteration": iteration,
                "policy_versions": sorted({r.policy_version_id for r in records if r.policy_version_id is not None}),
                "episodes": len(records),
                "takeovers": len(starts),
                "by_stage": {name: stages[name] for name in names if stages[name]},
                "median_start_step": statistics.median(starts) if starts else None,
            }
        )
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True, help="the flywheel home of a run")
    parser.add_argument("--task", required=True, choices=task_names())
    parser.add_argument("--out", type=Path, default=RESULTS / "takeover_stages.json")
    args = parser.parse_args(argv)

    from flywheel.config import Settings
    from flywheel.errors import FlywheelError
    from flywheel.store import EpisodeStore

    if not (args.home / "flywheel.db").is_file():
        sys.exit(f"takeover_stages: no store in {args.home}")
    try:
        store = EpisodeStore.open(Settings(home=args.home), migrate=False)
        rows = takeover_stages(store, args.task)
    except FlywheelError as exc:
        sys.exit(f"takeover_stages: {exc}")
    result = store_result_header("takeover_stages", args.home) | {
        "task": args.task,
        "iterations": rows,
    }
    write_json(args.out, result)
    for row in rows:
        stages = ", ".join(f"{name} {count}" for name, count in row["by_stage"].items()) or "none"
        print(f"iteration {row['iteration']} (policy {row['policy_versions']}): {row['takeovers']} takeovers: {stages}")
    return result


if __name__ == "__main__":
    main()
