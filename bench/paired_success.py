"""Two policies' success on the same seeds, compared seed by seed: the difference with Tango's paired 95% interval.

    python -m bench.paired_success --a R/vision_encoders.json --b C/vision_encoders.json --out FILE
    python -m bench.paired_success --a R1.json --a R2.json --b C1.json --b C2.json --out FILE
    python -m bench.paired_success --a R1000.json --b C1000.json --exclude-seeds-of R200.json --out FILE

Each file is a `bench.vision_encoders` result (its last row, or the row named `FILE:NAME`) with `success_by_seed`.
Repeated `--a`/`--b` pair up in order (replicate runs of two arms on the same seeds): their seed pairs pool, so
the interval counts episode-to-episode noise and not how much two training runs of one arm differ — the per-pair
rows show that. Each pair also gets both arms' own success with its Wilson 95% interval on the shared seeds, and
whether those intervals separate. `--exclude-seeds-of` leaves out the seeds an earlier measurement played (to read
an extended measurement's new seeds alone). Writes one JSON object; nothing is rolled out.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bench.common import write_json


def read_row(source: str) -> dict[str, Any]:
    """The `bench.vision_encoders` row at `FILE` (its last) or `FILE:NAME` (the last row so named)."""
    path, _, name = source.partition(":")
    rows = json.loads(Path(path).read_text())
    rows = rows if isinstance(rows, list) else [rows]
    matching = [r for r in rows if not name or r.get("name") == name]
    if not matching:
        raise SystemExit(f"{path}: no row named {name!r}")
    row = matching[-1]
    if "success_by_seed" not in row:
        raise SystemExit(f"{source}: the row has no success_by_seed (re-measure it with bench.vision_encoders)")
    return row


def compare(
    a_rows: list[dict[str, Any]], b_rows: list[dict[str, Any]], exclude: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """A minus B, over the seeds each pair of rows shares (less `exclude`), pooled over the pairs."""
    from flywheel.evaluate.stats import paired_difference, paired_score_interval, wilson_interval

    if len(a_rows) != len(b_rows) or not a_rows:
        raise ValueError("give as many --b as --a (at least one each)")
    pairs: list[dict[str, Any]] = []
    only_a, only_b, n = 0, 0, 0
    for a, b in zip(a_rows, b_rows, strict=True):
        shared = set(a["success_by_seed"]) & set(b["success_by_seed"])
        if exclude and not shared & exclude:
            raise ValueError(f"the excluded seeds hold none of the seeds {a['name']} and {b['name']} share")
        seeds = sorted(shared - exclude, key=int)
        if not seeds:
            raise ValueError(f"{a['name']} and {b['name']} share no seeds (after exclusions)")
        a_solved = [bool(a["success_by_seed"][s]) for s in seeds]
        b_solved = [bool(b["success_by_seed"][s]) for s in seeds]
        paired = paired_difference(a_solved, b_solved)
        wins, losses = paired.candidate_only, paired.champion_only
        low, high = paired_score_interval(wins, losses, len(seeds))
        a_ci, b_ci = wilson_interval(sum(a_solved), len(seeds)), wilson_interval(sum(b_solved), len(seeds))
        pairs.append(
            {
                "a": a["name"],
                "b": b["name"],
                "seeds": len(seeds),
                "excluded": len(shared & exclude),
                "a_success": sum(a_solved) / len(seeds),
                "a_ci": list(a_ci),
                "b_success": sum(b_solved) / len(seeds),
                "b_ci": list(b_ci),
                "intervals_separate": a_ci[0] > b_ci[1] or b_ci[0] > a_ci[1],
                "difference": paired.difference,
                "ci_low": low,
                "ci_high": high,
                "only_a": wins,
                "only_b": losses,
            }
        )
        only_a, only_b, n = only_a + wins, only_b + losses, n + len(seeds)
    low, high = paired_score_interval(only_a, only_b, n)
    pooled = {"pairs": n, "difference": (only_a - only_b) / n, "ci_low": low, "ci_high": high}
    return {
        "bench": "paired_success",
        "per_pair": pairs,
        "pooled": pooled | {"only_a": only_a, "only_b": only_b},
    }


def _interval(bounds: list[float]) -> str:
    return f"[{bounds[0]:.1%}, {bounds[1]:.1%}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", action="append", required=True, help="FILE or FILE:NAME (repeat for replicates)")
    parser.add_argument("--b", action="append", required=True, help="FILE or FILE:NAME, paired with --a in order")
    parser.add_argument(
        "--exclude-seeds-of",
        action="append",
        default=[],
        metavar="FILE[:NAME]",
        help="leave out every seed this row (the file's last, or the one named) measured (repeatable)",
    )
    parser.add_argument("--out", type=Path, required=True, help="where the JSON goes")
    args = parser.parse_args()
    exclude = frozenset(seed for source in args.exclude_seeds_of for seed in read_row(source)["success_by_seed"])
    result = compare([read_row(s) for s in args.a], [read_row(s) for s in args.b], exclude)
    result |= {"a": args.a, "b": args.b, "exclude_seeds_of": args.exclude_seeds_of}
    write_json(args.out, result)
    for pair in result["per_pair"]:
        print(
            f"{pair['a']} − {pair['b']}: {pair['a_success']:.1%} {_interval(pair['a_ci'])} − "
            f"{pair['b_success']:.1%} {_interval(pair['b_ci'])} = {pair['difference']:+.1%} "
            f"[{pair['ci_low']:+.1%}, {pair['ci_high']:+.1%}] on {pair['seeds']} seeds"
            + (" (the intervals separate)" if pair["intervals_separate"] else "")
        )
    pooled = result["pooled"]
    print(f"pooled: {pooled['difference']:+.1%} [{pooled['ci_low']:+.1%}, {pooled['ci_high']:+.1%}]")


if __name__ == "__main__":
    main()
