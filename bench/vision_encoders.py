"""Which pixels encoder learns the task from the demos: BC from camera images and joints on stored demos, then
success and the highest task stage reached on validation seeds (not the seeds any report uses).

    python -m bench.vision_encoders --home DIR --task transfer_cube --name top_avg \
        [--set model.encoder.cnn_pool=spatial_softmax] [--set model.inputs.cameras='["top","right_wrist"]'] \
        [--steps 3000] [--episodes 50]
    python -m bench.vision_encoders --home DIR --task transfer_cube --name NAME --version ID --seeds held-out \
        --episodes 200 [--cfg-beta 2.0] [--execute-steps 4]

DIR holds pixels demos recorded with every camera the variants read (`flywheel demos --obs-mode pixels
--camera top --camera right_wrist ...`). Each run appends one row to bench/results/vision_encoders.json: the
variant's overrides, success with its 95% interval, the count of episodes by the highest stage reached (named by
`sim.tasks`), success per seed (two policies measured on the same seeds compare pairwise), training seconds and
the share of step time spent waiting for data, with the machine's load. `--version` evaluates a policy already
trained (and registered in DIR) instead, and `--seeds held-out` measures it on `bench.vision`'s final seeds, which
choosing a variant never used.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from bench.common import RESULTS, append_row, headless_defaults, task_names
from bench.sampling import SamplingOverrides, add_sampling_arguments

VALIDATION_OFFSET = 500_000
"""Validation seeds: `eval_seeds(n, VALIDATION_OFFSET)`, apart from the gate's and the fresh re-measurement's."""

headless_defaults()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True, help="a flywheel home holding pixels demos")
    parser.add_argument("--task", default="transfer_cube", choices=task_names())
    parser.add_argument("--name", required=True, help="the variant's name in the results")
    parser.add_argument("--set", action="append", default=[], help="KEY=JSON over the pixels preset's training")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--episodes", type=int, default=50, help="validation episodes")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--version",
        type=int,
        default=None,
        help="evaluate this registered policy version of --home instead of training one (--set and --steps unused)",
    )
    add_sampling_arguments(parser)
    parser.add_argument(
        "--seeds",
        choices=["validation", "held-out"],
        default="validation",
        help="validation: the seeds variants are chosen on; held-out: bench.vision's final seeds, for the number "
        "reported once a variant is chosen",
    )
    args = parser.parse_args()

    from bench.vision import FINAL_SEED_OFFSET, policy_rollouts, stage_breakdown, success_summary
    from flywheel.collect.seeds import eval_seeds, fresh_seeds
    from flywheel.config import Settings
    from flywheel.presets import deep_merge, train_config
    from flywheel.registry import PolicyRegistry
    from flywheel.store import EpisodeStore
    from flywheel.train import run_training
    from flywheel.train.data import load_training_episodes
    from flywheel.train.registration import register_trained_candidate

    overrides: dict[str, Any] = {"method": "bc", "steps": args.steps, "cpu_threads": 1, "wandb": False}
    for item in args.set:
        key, _, value = item.partition("=")
        nested: Any = _value(value)
        for part in reversed(key.split(".")):
            nested = {part: nested}
        overrides = deep_merge(overrides, nested)
    store = EpisodeStore.open(Settings(home=args.home))
    registry = PolicyRegistry(store.db)
    load_start = os.getloadavg()[0]
    trained: dict[str, Any] = {}
    if args.version is None:
        config = train_config("pixels", overrides)
        start = time.perf_counter()
        result = run_training(config, load_training_episodes(store, args.task), args.home / "encoders" / args.name)
        trained = {
            "overrides": overrides,
            "train_seconds": time.perf_counter() - start,
            "data_wait_share": result.timings.get("data_s", 0.0) / max(1e-9, result.timings.get("total_s", 0.0)),
        }
        version = register_trained_candidate(registry, task=args.task, config=config, result=result)
    else:
        version = registry.get(args.version)
    held_out = args.seeds == "held-out"
    seeds = fresh_seeds(args.episodes, FINAL_SEED_OFFSET) if held_out else eval_seeds(args.episodes, VALIDATION_OFFSET)
    sampling = SamplingOverrides.from_args(args)
    outcomes = policy_rollouts(version, seeds, args.workers, f"bench-encoders/{args.name}", sampling)
    row = {
        "name": args.name,
        "task": args.task,
        "version": version.id,
        "seeds": args.seeds,
        "inputs": version.config["model"]["inputs"],
        **sampling.effective(version),
        **success_summary(outcomes),
        "highest_stage": stage_breakdown(outcomes, args.task),
        "success_by_seed": {str(o.seed): bool(o.success) for o in outcomes},
        **trained,
        "load_average_start": load_start,
        "load_average_end": os.getloadavg()[0],
        "cpus": os.cpu_count(),
    }
    append_row(args.out / "vision_encoders.json", row)
    summary = f"{row['success']:.0%} [{row['ci_low']:.0%}, {row['ci_high']:.0%}] on {len(seeds)} {args.seeds} seeds"
    print(f"{args.name}: {summary}; highest stage reached {row['highest_stage']}")


def _value(text: str) -> Any:
    """A --set value: JSON when it parses (numbers, lists, true/false/null), else the string itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


if __name__ == "__main__":
    main()
