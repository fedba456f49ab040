"""The vision flywheel's ablation: does collecting takeovers and retraining with RECAP beat the obvious alternatives?

Per task, from camera images and the robot's joints only (the `pixels` preset), with the same demos (the loop seeds
them from the same demo seeds), the same collection seeds and the same simulated operator:

- `recap_loop`: `flywheel run` for N iterations (RECAP); per iteration the champion's success with its 95% interval
  on the gate's eval seeds, takeovers per collected episode and collected frames by controller;
- `bc_loop`: the same loop with `train.method: bc` (HG-DAgger-style: the same kind of data, no advantages);
- `bc_demos`: BC on the demos alone, trained for as many steps as a loop trains in all (bootstrap + N iterations);
- `more_demos`: BC on the demos plus as many extra expert demos as the RECAP loop's operator-controlled frames fill
  (equal operator effort, spent on demos instead of takeovers), for the same number of steps;
- `final`: the loops' last champions, BC on the demos and the equal-effort policy on `--final-episodes` held-out
  seeds that neither training, gating nor the loop's fresh re-measurement ever used.

Writes bench/results/vision.json (the tasks already there are kept, so it can run per task) and vision.png;
`--name` writes a variant (another config, say) under its own name beside them.

    python -m bench.vision --task transfer_cube [--iterations 5] [--final-episodes 200] [--workdir DIR]
        [--preset pixels] [--config FILE] [--name vision] [--loop recap|bc] [--baseline bc_demos|more_demos]
        [--operator-frames N]
    python -m bench.vision --task insertion --adopt bench/results/OTHER.json [--name vision]

`--loop` runs just that loop and stops, writing its rows to OUT/NAME.recap_loop.json (or .bc_loop.json) after
every iteration: start `--loop recap` and `--loop bc` as two processes with the same --workdir to run the loops
side by side, then once more without it for the rest (the loops resume as done).
`--adopt FILE` copies the task's finished run from another results file into OUT/NAME.json, so the comparison
file holds the run that stands for each task (the copy names its source in `adopted_from`).
`--baseline` likewise trains one baseline policy and stops (`more_demos` runs or resumes the RECAP loop first, to
count its operator frames, unless `--operator-frames N` gives that count from a finished run's results).

Long: hours per task on 2 CPU cores. An interrupted run continues with the same --workdir: the loops are
`flywheel run` and resume, the baseline policies are kept once registered; the final rollouts run again.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import RESULTS, headless_defaults, task_names, write_json
from bench.sampling import SamplingOverrides

FINAL_SEED_OFFSET = 500_000
"""Final seeds: `fresh_seeds(n, FINAL_SEED_OFFSET)`, far above the loop's fresh re-measurement seeds (offset 0)."""

headless_defaults()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", required=True, choices=task_names())
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--final-episodes", type=int, default=200)
    parser.add_argument("--preset", default="pixels", help="the loop's preset (default: pixels)")
    parser.add_argument("--config", type=Path, default=None, help="YAML laid over the preset")
    parser.add_argument("--workdir", type=Path, default=None, help="scratch homes (default: a temp dir)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--name", default="vision", help="results file stem: writes OUT/NAME.json and NAME.png (default: vision)"
    )
    parser.add_argument("--workers", type=int, default=2, help="final evaluation worker processes")
    parser.add_argument("--loop", choices=["recap", "bc"], default=None, help="run only this loop, then stop")
    parser.add_argument(
        "--baseline", choices=["bc_demos", "more_demos"], default=None, help="train only this baseline, then stop"
    )
    parser.add_argument(
        "--operator-frames",
        type=int,
        default=None,
        help="with --baseline more_demos: the RECAP loop's operator-controlled frames (the sum of a finished run's "
        "frames_by_controller.expert), instead of running or resuming that loop here",
    )
    parser.add_argument(
        "--adopt",
        type=Path,
        default=None,
        help="copy --task's finished run from this results file (a run written under another --name) into "
        "OUT/NAME.json and stop: the comparison file then holds the run that stands for the task",
    )
    args = parser.parse_args()
    if args.final_episodes < 1 or args.iterations < 1:
        parser.error("--iterations and --final-episodes must be at least 1")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", args.name):
        parser.error(f"--name {args.name!r}: a file stem of letters, digits, '_', '.' and '-'")
    if args.operator_frames is not None and (args.baseline != "more_demos" or args.operator_frames < 0):
        parser.error("--operator-frames is a count (≥ 0) for --baseline more_demos only")

    if args.adopt is not None:
        if args.adopt.resolve() == (args.out / f"{args.name}.json").resolve():
            parser.error("--adopt names the file it would write: give another --name or --out")
        adopt_task(args.adopt, args.out, args.name, args.task)
        print(f"{args.out / args.name}.json: {args.task} adopted from {args.adopt}")
        return
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="flywheel-vision-"))
    start, load_start = time.perf_counter(), os.getloadavg()[0]
    overrides = _config_overrides(args.config)
    config = _loop_config(args.preset, overrides, args.config, args.task)
    setup = {  # not the config file's path
        "preset": args.preset,
        "config_overrides": overrides or None,
        "iterations": args.iterations,  # what `complete` means: a run asked for 3 iterations is complete after 3
        **run_setup(config),
    }
    result: dict[str, Any] = {}

    def write(complete: bool) -> None:
        _write(
            args.out, args.name, args.task, result, setup, complete, time.perf_counter() - start, load_start, workdir
        )

    bc_config = config.model_copy(update={"train": config.train.model_copy(update={"method": "bc"})})
    if args.loop is not None:  # one loop alone, into a file of its own: a parallel loop may be writing the other
        chosen, key = (config if args.loop == "recap" else bc_config), f"{args.loop}_loop"

        def write_loop(complete: bool) -> None:
            _write(
                args.out, f"{args.name}.{key}", args.task, result, setup, complete,
                time.perf_counter() - start, load_start, workdir,
            )  # fmt: skip

        result[key] = _loop(workdir / args.loop, chosen, args.iterations, write_loop, result, key)
        result.update(loop_times({args.loop: _store(workdir / args.loop)}))
        write_loop(complete=True)
        return
    steps = matched_steps(config, args.iterations)
    if args.baseline == "bc_demos":
        _baseline_policy(workdir / "bc_demos", bc_config, steps)
        return
    if args.baseline == "more_demos":  # the extra demos are counted on the finished RECAP loop, unless given
        frames = args.operator_frames
        if frames is None:
            _loop(workdir / "recap", config, args.iterations, lambda complete: None, {}, "recap_loop")
            frames = _operator_frames(_store(workdir / "recap"), config.task)
        _baseline_policy(workdir / "more_demos", bc_config, steps, frames)
        return
    result["recap_loop"] = _loop(workdir / "recap", config, args.iterations, write, result, "recap_loop")
    result["bc_loop"] = _loop(workdir / "bc", bc_config, args.iterations, write, result, "bc_loop")

    from flywheel.collect.seeds import fresh_seeds

    final_seeds = fresh_seeds(args.final_episodes, FINAL_SEED_OFFSET)
    recap_store, bc_store = _store(workdir / "recap"), _store(workdir / "bc")
    result.update(loop_times({"recap": recap_store, "bc": bc_store}))
    more_demos, extra = _baseline_policy(
        workdir / "more_demos", bc_config, steps, _operator_frames(recap_store, config.task)
    )
    policies = {
        "recap": _champion(recap_store),
        "bc": _champion(bc_store),
        "bc_demos": _baseline_policy(workdir / "bc_demos", bc_config, steps)[0],
        "more_demos": more_demos,
    }
    final = {}
    for name, version in policies.items():
        outcomes = policy_rollouts(version, final_seeds, args.workers, f"bench-vision/policy-{version.id}")
        final[name] = {**success_summary(outcomes), "highest_stage": stage_breakdown(outcomes, args.task)}
    result["bc_demos"] = final.pop("bc_demos")
    result["bc_demos"]["steps"] = steps
    result["more_demos"] = {**final.pop("more_demos"), "extra_demos": extra, "steps": steps}
    result["final"] = final
    write(complete=True)
    print(
        f"vision {args.task}: RECAP loop {final['recap']['success']:.0%} [{final['recap']['ci_low']:.0%}, "
        f"{final['recap']['ci_high']:.0%}], BC loop {final['bc']['success']:.0%}, BC on demos "
        f"{result['bc_demos']['success']:.0%}, +{extra} demos {result['more_demos']['success']:.0%} "
        f"on {args.final_episodes} held-out seeds; {(time.perf_counter() - start) / 3600:.1f} h"
    )


def _config_overrides(path: Path | None) -> dict[str, Any]:
    """The mapping in the --config file (empty without one)."""
    from flywheel.train.config import load_config_data

    return load_config_data(path) if path is not None else {}


def _loop_config(preset: str, overrides: dict[str, Any], path: Path | None, task: str) -> Any:
    from flywheel.presets import flywheel_config

    return flywheel_config(preset, {**overrides, "task": task}, source=str(path or ""))


def _store(home: Path) -> Any:
    from flywheel.config import Settings
    from flywheel.store import EpisodeStore

    return EpisodeStore.open(Settings(home=home))


def _loop(home: Path, config: Any, iterations: int, write: Any, result: dict, key: str) -> list[dict]:
    """Run (or resume) the loop in `home`; one row per iteration, written after each."""
    from rich.console import Console

    from bench.flywheel import summary_row
    from flywheel.config import Settings
    from flywheel.scheduler import FlywheelLoop, PhaseContext

    store = _store(home)
    loop = FlywheelLoop(PhaseContext(store, Settings(home=home), config, progress=False), Console())

    def rows() -> list[dict]:
        return [_vision_row(store, summary_row(s)) for s in loop.book.summaries()]

    def progress(_summary: object) -> None:
        result[key] = rows()
        write(complete=False)

    loop.run(iterations, on_summary=progress)
    return rows()


def _vision_row(store: Any, row: dict) -> dict:
    """The issue's per-iteration keys over the loop's own summary row."""
    return {
        "iteration": row["iteration"],
        "champion": row["champion"],
        "champion_success": row["champion_success"],
        "ci_low": row["ci_low"],
        "ci_high": row["ci_high"],
        "takeovers_per_episode": row["interventions_per_episode"],
        "frames_by_controller": _frames_by_controller(store, row["iteration"]),
        "verdict": row["verdict"],
        "episodes_by_tag": row["episodes_by_tag"],
    }


def _frames_by_controller(store: Any, iteration: int) -> dict[str, int]:
    from flywheel.store import EpisodeFilter

    counts: dict[str, int] = {}
    for record in store.list_episodes(EpisodeFilter(iteration=iteration), with_segments=True):
        for segment in record.segments:
            counts[segment.controller] = counts.get(segment.controller, 0) + segment.end - segment.start
    return dict(sorted(counts.items()))


def loop_times(stores: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """Each loop's own times, also when the loops ran side by side or were resumed (`wall_seconds` is this
    invocation's alone): `loop_seconds` from its first episode to its last iteration, pauses included, and
    `loop_busy_seconds`, its jobs' own time."""
    from bench.flywheel import store_busy_seconds, store_span_seconds

    return {
        "loop_seconds": {name: store_span_seconds(store) for name, store in stores.items()},
        "loop_busy_seconds": {name: store_busy_seconds(store) for name, store in stores.items()},
    }


def _operator_frames(store: Any, task: str) -> int:
    """Frames the operator controlled in the loop's intervention episodes: the loop's operator effort."""
    from flywheel.store import EpisodeFilter

    return sum(
        s.end - s.start
        for r in store.list_episodes(EpisodeFilter(task=task, tag="intervention"), with_segments=True)
        for s in r.segments
        if s.controller != "policy"
    )


def _demos_filling(store: Any, task: str, frames: int) -> int:
    """Demos that `frames` operator-controlled frames would fill, at the mean length of the store's demos."""
    from flywheel.store import EpisodeFilter

    demos = store.list_episodes(EpisodeFilter(task=task, tag="demo"))
    mean_length = sum(r.length for r in demos) / max(1, len(demos))
    return round(frames / mean_length) if mean_length else 0


def matched_steps(config: Any, iterations: int) -> int:
    """Policy steps a loop trains in all (its bootstrap, then every iteration's fine-tune): the baselines' budget."""
    return config.bootstrap_train().steps + iterations * config.train.steps


def _baseline_policy(home: Path, bc_config: Any, steps: int, operator_frames: int = 0) -> tuple[Any, int]:
    """BC for `steps` on the loop's demos plus the extra expert demos that `operator_frames` fill, registered in
    its own store (kept once registered, so a rerun reuses it); returns it and how many extra demos it saw."""
    from flywheel.collect import CollectSpec, collect
    from flywheel.collect.seeds import demo_seeds
    from flywheel.registry import PolicyRegistry
    from flywheel.store import EpisodeFilter
    from flywheel.train import run_training
    from flywheel.train.data import load_training_episodes
    from flywheel.train.registration import register_trained_candidate

    cfg = bc_config
    store = _store(home)
    registry = PolicyRegistry(store.db)
    versions = registry.list_versions()
    if versions:
        return versions[-1], store.count(EpisodeFilter(task=cfg.task, tag="demo")) - cfg.demos
    spec = CollectSpec.for_demos(
        cfg.task, obs_mode=cfg.obs_mode, cameras=tuple(cfg.cameras), image_size=tuple(cfg.image_size)
    )
    collect(store, spec, demo_seeds(cfg.demos), workers=cfg.workers, progress=False)  # the loop's demos
    extra = _demos_filling(store, cfg.task, operator_frames)
    collect(store, spec, demo_seeds(cfg.demos + extra), workers=cfg.workers, progress=False)
    assert store.count(EpisodeFilter(task=cfg.task, tag="demo")) == cfg.demos + extra
    train = cfg.bootstrap_train().model_copy(update={"steps": steps})
    result = run_training(train, load_training_episodes(store, cfg.task), home / "train", progress=False)
    return register_trained_candidate(registry, task=cfg.task, config=train, result=result), extra


def _champion(store: Any) -> Any:
    from flywheel.registry import CHAMPION, PolicyRegistry

    registry = PolicyRegistry(store.db)
    champion = registry.alias(CHAMPION)
    if champion is None:
        raise SystemExit(f"no champion in {store}: the loop did not finish")
    return registry.get(champion)


def policy_rollouts(
    version: Any, seeds: list[int], workers: int, source_prefix: str, sampling: SamplingOverrides | None = None
) -> list[Any]:
    """Episodes of `version` acting alone on `seeds` (no operator; nothing stored), in completion order, sampled
    as its checkpoint says unless `sampling` overrides it."""
    from flywheel.collect import CollectSpec
    from flywheel.collect.pool import ProcessPool

    overrides = (sampling or SamplingOverrides()).spec_settings()
    spec = CollectSpec.policy_alone(version, source_prefix, envs_per_worker=16, **overrides)
    return list(ProcessPool(spec, min(workers, len(seeds))).run(seeds))


def stage_breakdown(outcomes: list[Any], task: str) -> dict[str, int]:
    """Episodes by the highest task stage they reached (`sim.tasks` names the stages): where a policy fails."""
    from sim.tasks import task_class

    names = task_class(task).stages
    counts = dict.fromkeys(names, 0)
    for outcome in outcomes:
        if outcome.frames is None:  # the first action was refused (NaN or out of range)
            counts["no valid action"] = counts.get("no valid action", 0) + 1
        else:
            counts[names[int(outcome.frames.reward.max())]] += 1
    return counts


def success_summary(outcomes: list[Any]) -> dict[str, Any]:
    """Success rate of `outcomes` with its 95% Wilson interval."""
    from flywheel.evaluate.stats import wilson_interval

    successes, n = sum(bool(o.success) for o in outcomes), len(outcomes)
    low, high = wilson_interval(successes, n)
    return {"success": successes / n, "ci_low": low, "ci_high": high, "episodes": n}


def _write(
    out: Path,
    name: str,
    task: str,
    result: dict,
    setup: dict[str, Any],
    complete: bool,
    wall: float,
    load_start: float,
    workdir: Path,
) -> None:
    """Merge this task's result into `out`/`name`.json (atomically) and redraw its plot, `name`.png."""
    entry = {
        **result,
        "complete": complete,
        "setup": setup,
        "wall_seconds": wall,
        "load_average_start": load_start,
        "load_average_end": os.getloadavg()[0],
        "workdir": str(workdir),
    }
    store_task_entry(out, name, task, entry)


def adopt_task(source: Path, out: Path, name: str, task: str) -> dict:
    """Copy `task`'s entry, as measured, from another results file of this benchmark (a run written under its own
    `--name`) into `out`/`name`.json, replacing the entry there; the copy records the file it came from."""
    try:
        doc = json.loads(source.read_text())
        entry = doc["tasks"][task]
    except FileNotFoundError:
        raise SystemExit(f"--adopt {source}: no such file") from None
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
        raise SystemExit(f"--adopt {source}: not a bench.vision results file with a {task!r} task") from None
    if not entry.get("complete"):
        raise SystemExit(f"--adopt {source}: its {task!r} run is not complete (no final held-out numbers)")
    if "final" not in entry:
        raise SystemExit(f"--adopt {source}: its {task!r} run has no final held-out numbers (a --loop run?)")
    store_task_entry(out, name, task, {**entry, "adopted_from": entry.get("adopted_from", source.name)})
    return entry


def store_task_entry(out: Path, name: str, task: str, entry: dict) -> None:
    """Put `entry` under `tasks.<task>` of `out`/`name`.json (atomically) and redraw `name`.png. Each task
    records the setup it ran with (tasks may be run with different presets); the top-level `cameras`,
    `image_size` and `wall_seconds` map each task to its own."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    doc = json.loads(path.read_text()) if path.is_file() else {"tasks": {}}
    doc["tasks"][task] = entry
    setups = {t: v.get("setup", {}) for t, v in doc["tasks"].items()}
    doc.update(
        cameras={t: s.get("cameras") for t, s in setups.items()},
        image_size={t: s.get("image_size") for t, s in setups.items()},
        wall_seconds={t: v.get("wall_seconds") for t, v in doc["tasks"].items()},
        machine={"cpus": os.cpu_count(), "platform": platform.platform(), "processor": platform.processor()},
    )
    for stale in ("recorded_cameras", "state_inputs"):  # per task, in `setup`, since tasks may differ
        doc.pop(stale, None)
    write_json(path, doc)
    _plot(doc, out / f"{name}.png")


def run_setup(config: Any) -> dict[str, Any]:
    """What a task's policies read and how they were trained: enough to tell two tasks' runs apart."""
    model = config.train.model
    return {
        "cameras": list(model.inputs.cameras or config.cameras),
        "recorded_cameras": list(config.cameras),
        "state_inputs": list(model.inputs.state or ["all (privileged)"]),
        "image_size": list(config.image_size),
        "encoder": model.encoder.model_dump(mode="json"),
        "critic_observations": model.critic.observations,
        "bootstrap_steps": config.bootstrap_steps,
        "bootstrap_lr": config.bootstrap_train().lr,
        "steps_per_iteration": config.train.steps,
        "lr": config.train.lr,
        "cpu_threads": config.train.cpu_threads,
        "cpu_bf16": config.train.cpu_bf16,
    }


def _recipe(setup: dict) -> str:
    """A title's second line: `preset NAME[ + config], B bootstrap + S steps per iteration`."""
    if not setup.get("preset"):
        return ""
    preset = setup["preset"] + (" + config" if setup.get("config_overrides") else "")
    if setup.get("bootstrap_steps") and setup.get("steps_per_iteration"):
        bootstrap, per_iteration = setup["bootstrap_steps"], setup["steps_per_iteration"]
        return f"\npreset {preset}, {bootstrap} bootstrap + {per_iteration} steps per iteration"
    return f"\npreset {preset}"


def _plot(doc: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = task_names()
    tasks = [t for t in order if t in doc["tasks"]] + sorted(set(doc["tasks"]) - set(order))  # the tasks' own order
    fig, axes = plt.subplots(1, len(tasks), figsize=(6 * len(tasks), 4), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        for key, colour in (("recap_loop", "tab:blue"), ("bc_loop", "tab:orange")):
            rows = [r for r in doc["tasks"][task].get(key, []) if r["champion_success"] is not None]
            if rows:
                its = [r["iteration"] for r in rows]
                rate = [r["champion_success"] for r in rows]
                err = [[p - r["ci_low"] for p, r in zip(rate, rows, strict=True)],
                       [r["ci_high"] - p for p, r in zip(rate, rows, strict=True)]]  # fmt: skip
                ax.errorbar(its, rate, yerr=err, marker="o", capsize=4, color=colour, label=key.replace("_", " "))
        for key, style in (("bc_demos", ":"), ("more_demos", "--")):
            if key in doc["tasks"][task]:
                ax.axhline(doc["tasks"][task][key]["success"], linestyle=style, color="grey", label=key)
        ax.set_title(f"{task} from pixels{_recipe(doc['tasks'][task].get('setup', {}))}", fontsize=10)
        ax.set_xlabel("iteration")
        ax.set_ylabel("champion success (95% CI)")
        ax.set_ylim(0, 1.05)
        if ax.get_legend_handles_labels()[1]:  # a task with nothing measured yet has nothing to label
            ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
