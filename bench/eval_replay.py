"""Replay a finished loop's stored eval episodes through fixed and sequential evaluation; compare the two.

Both procedures run the same gates (drift guard, tie rule, throughput) on the same per-seed outcomes, in
iteration order, each keeping its own champion and promoted lineage. Fixed: one look at the maximum (the
pre-sequential procedure). Sequential: looks every `block` seeds. Reports per candidate the episodes used and
the decision of each, the mean eval episodes per candidate, simulated rollouts (candidate plus any champion or
lineage seeds not measured before), and the eval wall time scaled from the run's measured seconds per eval
rollout. Needs a run whose candidates were evaluated on every seed: `python -m bench.flywheel --fixed-eval`.

    python -m bench.eval_replay --home DIR [--config FILE] [--block 20]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True, help="the flywheel home of a finished fixed-eval run")
    parser.add_argument("--config", type=Path, default=None, help="the run's flywheel config")
    parser.add_argument("--block", type=int, default=None, help="sequential block (default: the config's)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "eval_replay.json")
    args = parser.parse_args()

    from sqlalchemy import select

    from flywheel.config import Settings
    from flywheel.evaluate.runner import Evaluator
    from flywheel.scheduler import load_flywheel_config
    from flywheel.store import EpisodeStore
    from flywheel.store.models import EvalRun, Iteration, Job

    config = load_flywheel_config(args.config)
    store = EpisodeStore.open(Settings(home=args.home))
    seeds = config.eval.seed_list()
    block = args.block or config.eval.block_size()
    evaluator = Evaluator(store, config.eval, progress=False)
    with store.db.read() as session:
        runs = session.execute(
            select(EvalRun.iteration, EvalRun.policy_version_id)
            .where(EvalRun.kind == "gate", EvalRun.iteration.is_not(None))
            .order_by(EvalRun.id)
        ).all()
        eval_seconds = sum(
            (j.finished_at - j.started_at).total_seconds()
            for j in session.scalars(select(Job).join(Iteration).where(Job.kind == "eval"))
            if j.finished_at and j.started_at
        )
    candidates = list(dict.fromkeys((int(i), int(v)) for i, v in runs))
    data = {v: evaluator.summary(v, seeds) for _, v in candidates}
    incomplete = [v for v, s in data.items() if s is None]
    if incomplete:
        raise SystemExit(
            f"versions {incomplete} lack stored episodes on all {len(seeds)} eval seeds: replay a run made with "
            "`python -m bench.flywheel --fixed-eval`"
        )
    fixed = _replay(candidates, data, [len(seeds)], config.eval.gates)
    sequential = _replay(candidates, data, _sizes(block, len(seeds)), config.eval.gates)
    rows = [
        {
            "iteration": it,
            "candidate": v,
            "fixed": f["decision"],
            "sequential": s["decision"],
            "fixed_episodes": f["episodes"],
            "sequential_episodes": s["episodes"],
            "sequential_reasons": s["failed"],
        }
        for (it, v), f, s in zip(candidates, fixed["rows"], sequential["rows"], strict=True)
    ]
    per_rollout = eval_seconds / fixed["rollouts"] if fixed["rollouts"] else None
    result = {
        "home": str(args.home),
        "max_episodes": len(seeds),
        "block": block,
        "candidates": len(rows),
        "rows": rows,
        "same_decisions": all(r["fixed"] == r["sequential"] for r in rows),
        "differences": [r for r in rows if r["fixed"] != r["sequential"]],
        "mean_episodes_fixed": sum(r["fixed_episodes"] for r in rows) / len(rows) if rows else None,
        "mean_episodes_sequential": sum(r["sequential_episodes"] for r in rows) / len(rows) if rows else None,
        "rollouts_fixed": fixed["rollouts"],
        "rollouts_sequential": sequential["rollouts"],
        "eval_wall_seconds_fixed": eval_seconds,
        "eval_wall_seconds_sequential_estimate": None if per_rollout is None else per_rollout * sequential["rollouts"],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(
        f"eval replay: {len(rows)} candidates, mean episodes {result['mean_episodes_fixed']} fixed vs "
        f"{result['mean_episodes_sequential']:.1f} sequential; rollouts {fixed['rollouts']} vs "
        f"{sequential['rollouts']}; same decisions: {result['same_decisions']}"
    )


def _sizes(block: int, maximum: int) -> list[int]:
    from flywheel.evaluate.sequential import look_sizes

    return look_sizes(min(block, maximum), maximum)


def _replay(candidates: list[tuple[int, int]], data: dict, sizes: list[int], gates: object) -> dict:
    """One procedure over the run's candidates in order, with its own champion and promoted lineage."""
    from flywheel.evaluate.gates import compare, run_gates
    from flywheel.evaluate.sequential import settled

    champion: int | None = None
    promoted: list[int] = []
    measured: set[tuple[int, int]] = set()  # (version, seed index) already rolled out
    rows = []
    for _, version in candidates:
        best = max(promoted, key=lambda v: (data[v].success_rate, v), default=None) if champion else None
        refs = [r for r in dict.fromkeys([champion, best]) if r is not None and r != version]
        looks = sizes if refs else [sizes[-1]]
        for k, n in enumerate(looks):
            for v in [version, *refs]:
                measured.update((v, i) for i in range(n))
            summary = data[version].prefix(n)
            comps = {
                r: compare(summary, data[r].prefix(n), reference_id=r, look=k, sizes=looks, config=gates) for r in refs
            }
            if settled([c.look for c in comps.values()]):
                break
        verdicts = run_gates(summary, comps.get(champion), gates, comps.get(best))  # type: ignore[arg-type]
        passed = all(v.passed for v in verdicts)
        if passed:
            champion = version
            promoted.append(version)
        rows.append(
            {
                "decision": "promoted" if passed else "rejected",
                "episodes": n,
                "failed": [v.reason for v in verdicts if not v.passed],
            }
        )
    return {"rows": rows, "rollouts": len(measured)}


if __name__ == "__main__":
    main()
