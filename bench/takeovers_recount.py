"""A `bench.takeovers` result counted again over part of its seeds, with nothing rolled out.

An extended measurement (say 1000 held-out seeds after an earlier 200) holds the earlier seeds too; this reads its
per-seed takeovers, leaves out every seed another `bench.takeovers` result played (`--exclude-seeds-of`), and gives
each champion's takeovers per episode and the first-to-last paired change (the interval `bench.takeovers` uses)
over the seeds left: the new seeds alone.

    python -m bench.takeovers_recount --result T1000.json --exclude-seeds-of T200.json --out FILE
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bench.common import write_json
from bench.takeovers import first_to_last, takeover_counts, takeovers_it_did_not_need

REQUIRED = ("takeovers_by_seed", "success_by_seed")
"""The per-seed fields every champion's row must hold (`success_alone_by_seed` only with `bench.takeovers --alone`)."""


def read_result(path: Path, reader: str = "takeovers_recount") -> dict[str, Any]:
    """A `bench.takeovers` result with every champion's per-seed counts; anything else exits naming `reader`."""
    try:
        result = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SystemExit(f"{reader}: cannot read {path}: {exc}") from exc
    if result.get("bench") != "takeovers" or not result.get("champions"):
        raise SystemExit(f"{reader}: {path} is not a bench.takeovers result with champions")
    if missing := [f for row in result["champions"] for f in REQUIRED if f not in row]:
        raise SystemExit(f"{reader}: {path} lacks {sorted(set(missing))}: re-measure it with bench.takeovers")
    return result


def seeds_played(result: dict[str, Any]) -> set[str]:
    return {seed for row in result["champions"] for seed in row["takeovers_by_seed"]}


def recount(result: dict[str, Any], exclude: set[str]) -> dict[str, Any]:
    """Each champion's row restricted to the seeds not in `exclude`, and the first-to-last change over them."""
    rows = []
    for row in result["champions"]:
        kept = {seed: count for seed, count in row["takeovers_by_seed"].items() if seed not in exclude}
        if exclude and len(kept) == len(row["takeovers_by_seed"]):
            raise ValueError(f"the excluded seeds hold none of policy {row['policy_version']}'s seeds")
        if not kept:
            raise ValueError(f"no seeds of policy {row['policy_version']} are left after the exclusions")
        counted = {
            "policy_version": row["policy_version"],
            "iteration": row["iteration"],
            "excluded": len(row["takeovers_by_seed"]) - len(kept),
        } | takeover_counts(kept, {seed: bool(row["success_by_seed"][seed]) for seed in kept})
        if "success_alone_by_seed" in row:
            counted |= takeovers_it_did_not_need(counted, {seed: row["success_alone_by_seed"][seed] for seed in kept})
        rows.append(counted)
    return {"champions": rows, "first_to_last": first_to_last(rows)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--result", type=Path, required=True, help="a bench.takeovers result")
    parser.add_argument(
        "--exclude-seeds-of",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="leave out every seed this bench.takeovers result played (repeatable)",
    )
    parser.add_argument("--out", type=Path, required=True, help="where the JSON goes")
    args = parser.parse_args()
    source = read_result(args.result)
    exclude = set().union(*(seeds_played(read_result(path)) for path in args.exclude_seeds_of))
    try:
        counted = recount(source, exclude)
    except ValueError as exc:
        raise SystemExit(f"takeovers_recount: {exc}") from exc
    keep = (
        "home",
        "seeds",
        "preset",
        "config",
        "operator",
        "operator_patience",
        "approach_margin_m",
        "max_steps",
        "cfg_beta",
        "execute_steps",
    )
    write_json(
        args.out,
        {
            "bench": "takeovers_recount",
            "result": str(args.result),
            "exclude_seeds_of": [str(p) for p in args.exclude_seeds_of],
        }
        | {key: source.get(key) for key in keep}
        | counted,
    )
    curve = " → ".join(f"{r['takeovers_per_episode']:.3f}" for r in counted["champions"])
    print(f"takeovers per episode on {counted['champions'][0]['episodes']} seeds: {curve}")
    if (change := counted["first_to_last"]) is not None and change["change"] is not None:
        low, high = change["ci"]
        print(f"v{change['from']} → v{change['to']}: {change['change']:+.1%} [{low:+.1%}, {high:+.1%}] (paired, 95%)")


if __name__ == "__main__":
    main()
