"""Pixels training on this CPU: seconds per step in fp32 against bf16 autocast (`train.cpu_bf16`), per phase.

Renders a few scripted pixels demos of the task, builds two `pixels`-preset trainers over them (fp32 and bf16,
same seed, so the same initial weights and the same batches) and times IQL critic steps and policy steps in rounds
that alternate the two, so both see the same machine load. Then trains both as BC from that same start for
`--quality-steps` steps and reports each one's mean policy loss over the last quarter: the cheap check that bf16
rounding does not hold the learning back (success rates need rollouts: `python -m bench.vision_encoders
--set cpu_bf16=true`).

    python -m bench.train_step [--task transfer_cube] [--threads 1] [--demos 4] [--steps 5] [--rounds 3]
        [--quality-steps 200]

Writes bench/results/train_step.json and prints one line per phase.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import RESULTS, headless_defaults, task_names, write_json

headless_defaults()


def render_demos(task: str, count: int) -> list[Any]:
    """`count` scripted pixels demos at the `pixels` preset's camera and image size."""
    from flywheel.presets import flywheel_config
    from flywheel.train.data import EpisodeInfo
    from sim import make_env
    from sim.rollout import run_episode

    loop = flywheel_config("pixels")
    env = make_env(task, obs_mode="pixels", cameras=tuple(loop.cameras), image_size=tuple(loop.image_size))
    try:
        demos = []
        for seed in range(count):
            result = run_episode(env, seed)
            assert result.frames is not None
            demos.append((EpisodeInfo(f"demo-{seed}", task, "demo", bool(result.success)), result.frames))
        return demos
    finally:
        env.close()


def median_step_seconds(step: Callable[[int], Any], steps: int) -> float:
    times = []
    for s in range(steps):
        start = time.perf_counter()
        step(s)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="transfer_cube", choices=task_names())
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--demos", type=int, default=4)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per phase, precision and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quality-steps", type=int, default=200, help="BC steps per precision for the loss check")
    parser.add_argument("--out", type=Path, default=RESULTS / "train_step.json")
    args = parser.parse_args()
    if min(args.threads, args.demos, args.steps, args.rounds) < 1 or args.quality_steps < 0:
        parser.error("--threads, --demos, --steps and --rounds must be at least 1, --quality-steps at least 0")

    import torch

    from flywheel.presets import train_config
    from flywheel.train.trainer import Trainer

    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()[0]
    demos = render_demos(args.task, args.demos)
    scratch = Path(tempfile.mkdtemp(prefix="flywheel-train-step-"))

    def trainer(method: str, bf16: bool) -> Trainer:
        config = train_config("pixels", {"method": method, "cpu_bf16": bf16, "cpu_threads": args.threads})
        return Trainer(config, demos, scratch / f"{method}-{bf16}", None, False)

    precisions = {"fp32": False, "bf16": True}
    recap = {name: trainer("recap", bf16) for name, bf16 in precisions.items()}
    seconds: dict[str, dict[str, list[float]]] = {"critic": {}, "policy": {}}
    for _ in range(args.rounds):
        for name, run in recap.items():
            seconds["critic"].setdefault(name, []).append(median_step_seconds(run.critic_step, args.steps))
    for run in recap.values():
        run.compute_labels()
    for _ in range(args.rounds):
        for name, run in recap.items():
            seconds["policy"].setdefault(name, []).append(median_step_seconds(run.policy_step, args.steps))

    phases: dict[str, Any] = {}
    for phase, by_precision in seconds.items():
        fp32, bf16 = statistics.median(by_precision["fp32"]), statistics.median(by_precision["bf16"])
        phases[phase] = {"fp32_seconds": fp32, "bf16_seconds": bf16, "bf16_speedup": fp32 / bf16}
        print(f"{phase} step: fp32 {fp32:.3f} s, bf16 {bf16:.3f} s ({fp32 / bf16:.2f}x)")

    quality: dict[str, Any] = {}
    if args.quality_steps:
        for name, bf16 in precisions.items():
            bc = trainer("bc", bf16)
            bc.compute_labels()
            losses = [bc.policy_step(s)["train/policy_loss"] for s in range(args.quality_steps)]
            tail = losses[-max(1, args.quality_steps // 4) :]
            quality[name] = {"final_quarter_mean_loss": statistics.fmean(tail), "steps": args.quality_steps}
        print(f"BC loss after {args.quality_steps} steps: " + ", ".join(f"{k} {v['final_quarter_mean_loss']:.4f}"
                                                                      for k, v in quality.items()))  # fmt: skip

    result = {
        "task": args.task,
        "preset": "pixels",
        "batch_size": recap["fp32"].config.batch_size,
        "threads": args.threads,
        "demos": args.demos,
        "steps_per_round": args.steps,
        "rounds": args.rounds,
        "phases": phases,
        "quality": quality,
        "load_average_start": load_start,
        "load_average_end": os.getloadavg()[0],
        "machine": {
            "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "avx512_bf16": bool(getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()),
            "amx": bool(getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()),
            "torch": torch.__version__,
        },
    }
    write_json(args.out, result)


if __name__ == "__main__":
    main()
