"""Can the scripted expert repair what the policy left? Its recovery rate from the states of a loop's takeovers.

For every intervention episode in a flywheel home, the env is reset to the episode's seed and the recorded actions
are replayed up to the first takeover; the task's expert then drives for the rest of the episode. Reported per
best stage the replay reached before the takeover: how often the expert raised the stage within the simulated
operator's hand-back window (`handback_after_steps`), and how often it finished the task by the episode's end.
Actions are stored as float32, so contacts make the replayed state drift from the recorded one; the states are
those the policy's own actions lead to, not bit-exact copies.

    python -m bench.expert_recovery --home DIR [--limit 200] [--align-handed-peg | --no-align-handed-peg]
        [--out bench/results/expert_recovery.json]

The expert steers a handed-over Insertion peg as the simulated operator's does (`operator.align_handed_peg`'s
default) unless a flag says otherwise: `--align-handed-peg` by the peg's measured axis, `--no-align-handed-peg`
by the plan's heading.

Runs on state observations only (no rendering), in one process.
"""

from __future__ import annotations

import argparse
import os
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.common import RESULTS, headless_defaults, write_json

headless_defaults()

if TYPE_CHECKING:
    from sim.env import AlohaSimEnv


def first_takeover(policy_acting: np.ndarray) -> int | None:
    """The first frame not driven by the policy after at least one frame that was, or None."""
    acting = np.asarray(policy_acting, dtype=bool)
    if not acting.any() or acting.all():
        return None
    handed = np.flatnonzero(~acting)
    after = handed[handed > np.argmax(acting)]
    return int(after[0]) if after.size else None


def recover(
    env: AlohaSimEnv, seed: int, actions: np.ndarray, start: int, window: int, align_handed_peg: bool
) -> dict[str, Any]:
    """Replay `actions[:start]` in `env` from `seed`, then let the task's expert drive to the episode's end."""
    from sim.controllers import ExpertController
    from sim.experts import make_expert

    max_steps = env.config.max_steps
    obs, _ = env.reset(seed=seed)
    best = 0.0
    for action in actions[:start]:
        obs, reward, *_ = env.step(action)
        best = max(best, reward)
    expert = ExpertController(env.config.task, make_expert(env.config.task, align_handed_peg=align_handed_peg))
    expert.reset(env)
    raised_at: int | None = None
    success = False
    for t in range(max_steps - start):
        obs, reward, terminated, truncated, info = env.step(expert.act(obs, env))
        if raised_at is None and reward > best:
            raised_at = t + 1
        success = success or bool(info["is_success"])
        if terminated or truncated:
            break
    return {
        "best_stage": int(best),
        "raised_within_window": raised_at is not None and raised_at <= window,
        "raised_after": raised_at,
        "success": success,
    }


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    from flywheel.evaluate.stats import wilson_interval

    def rates(group: list[dict[str, Any]]) -> dict[str, Any]:
        n = len(group)
        out: dict[str, Any] = {"takeovers": n}
        for key in ("raised_within_window", "success"):
            k = sum(bool(r[key]) for r in group)
            low, high = wilson_interval(k, n) if n else (0.0, 0.0)
            out[key] = {"rate": k / n if n else None, "ci_low": low, "ci_high": high, "count": k}
        return out

    by_stage: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_stage[row["best_stage"]].append(row)
    return {"all": rates(rows), "by_best_stage": {str(s): rates(g) for s, g in sorted(by_stage.items())}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True, help="a flywheel home whose loop collected takeovers")
    parser.add_argument("--limit", type=int, default=200, help="at most this many takeovers (newest first)")
    parser.add_argument("--window", type=int, default=None, help="hand-back window (default: the operator's)")
    parser.add_argument("--max-steps", type=int, default=None, help="episode length (default: the loop's)")
    parser.add_argument(
        "--align-handed-peg",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="steer a handed-over Insertion peg by its measured axis (default: as the simulated operator does)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "expert_recovery.json")
    args = parser.parse_args()

    from flywheel.config import Settings
    from flywheel.scheduler.config import FlywheelConfig
    from flywheel.store import EpisodeFilter, EpisodeStore
    from flywheel.vocab import CONTROLLER_CODES, ControllerKind
    from sim.env import make_env
    from sim.operator import SimOperatorConfig

    operator = SimOperatorConfig()
    window = args.window or operator.handback_after_steps
    align = operator.align_handed_peg if args.align_handed_peg is None else args.align_handed_peg
    max_steps = args.max_steps or FlywheelConfig().max_steps
    store = EpisodeStore.open(Settings(home=args.home), migrate=False)
    policy_code = CONTROLLER_CODES[ControllerKind.POLICY]
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    envs: dict[str, AlohaSimEnv] = {}  # one per task: building an env compiles its model
    for record in store.list_episodes(EpisodeFilter(tag="intervention", limit=args.limit)):
        frames = store.read_record_frames(record, verify=False)
        start = first_takeover(frames.controller == policy_code)
        if start is None:
            continue
        if record.task not in envs:
            envs[record.task] = make_env(record.task, max_steps=max_steps)
        row = recover(envs[record.task], record.env_seed, frames.action, start, window, align)
        rows.append({"episode": record.id, "task": record.task, "takeover_at": start, **row})
    for env in envs.values():
        env.close()
    if not rows:
        raise SystemExit(f"no takeover after policy control in {args.home}")
    result = {
        "bench": "expert_recovery",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "home": str(args.home),
        "tasks": sorted({row["task"] for row in rows}),
        "window": window,
        "align_handed_peg": align,
        "max_steps": max_steps,
        "seconds": time.perf_counter() - started,
        "load_average": os.getloadavg(),
        **summarise(rows),
        "takeovers": rows,
    }
    write_json(args.out, result)
    overall = result["all"]
    print(
        f"{overall['takeovers']} takeovers: stage raised within {window} steps "
        f"{overall['raised_within_window']['rate']:.0%}, task finished {overall['success']['rate']:.0%} "
        + " | ".join(
            f"best stage {s}: {g['raised_within_window']['count']}/{g['takeovers']} raised, "
            f"{g['success']['count']} done"
            for s, g in result["by_best_stage"].items()
        )
    )


if __name__ == "__main__":
    main()
