"""Two `bench.takeovers` results on the same seeds, compared policy by policy: one way of running the champions
against another (a sampling override such as `--execute-steps`, another operator), with nothing rolled out.

For every policy version both results replayed, it gives the takeovers, the episodes with a takeover and the
episodes solved with the operator under each, and the change from `--a` to `--b` with the paired interval
`bench.takeovers` uses for its first-to-last change.

    python -m bench.takeovers_paired --a HORIZON8.json --b HORIZON4.json --out FILE
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bench.common import write_json
from bench.takeovers import first_to_last
from bench.takeovers_recount import read_result

SETTINGS = ("preset", "config", "operator", "max_steps", "cfg_beta", "execute_steps")
"""What each result records about how it ran the champions, set side by side in the output."""


def compare(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Each policy in both results: its counts under `a` and under `b`, and the paired change from `a` to `b`."""
    if a.get("seeds") != b.get("seeds") or a.get("home") != b.get("home"):
        raise ValueError(
            f"the results played different stores or seed sets ({a.get('home')} {a.get('seeds')} against "
            f"{b.get('home')} {b.get('seeds')}): nothing to pair"
        )
    rows_a = {row["policy_version"]: row for row in a["champions"]}
    versions: dict[str, Any] = {}
    for row_b in b["champions"]:
        row_a = rows_a.get(row_b["policy_version"])
        if row_a is None:
            continue
        if row_a["takeovers_by_seed"].keys() != row_b["takeovers_by_seed"].keys():
            raise ValueError(f"policy {row_b['policy_version']} played different seeds in the two results")
        change = first_to_last([row_a, row_b])
        assert change is not None
        versions[str(row_b["policy_version"])] = {
            "episodes": row_b["episodes"],
            **{
                key: {"a": row_a[key], "b": row_b[key]}
                for key in ("takeovers", "episodes_with_takeover", "successes_with_operator")
            },
            "change": change["change"],
            "ci": change["ci"],
        }
    if not versions:
        raise ValueError("the results share no policy version")
    return {"settings": {key: {"a": a.get(key), "b": b.get(key)} for key in SETTINGS}, "versions": versions}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", type=Path, required=True, help="the reference bench.takeovers result")
    parser.add_argument("--b", type=Path, required=True, help="the bench.takeovers result compared with it")
    parser.add_argument("--out", type=Path, required=True, help="where the JSON goes")
    args = parser.parse_args()
    a, b = read_result(args.a, "takeovers_paired"), read_result(args.b, "takeovers_paired")
    try:
        compared = compare(a, b)
    except ValueError as exc:
        raise SystemExit(f"takeovers_paired: {exc}") from exc
    write_json(
        args.out,
        {"bench": "takeovers_paired", "a": str(args.a), "b": str(args.b), "seeds": a["seeds"], "home": a["home"]}
        | compared,
    )
    for version, row in compared["versions"].items():
        low, high = row["ci"]
        counts = {key: f"{row[key]['a']} -> {row[key]['b']}" for key in ("takeovers", "successes_with_operator")}
        print(
            f"v{version}: takeovers {counts['takeovers']} ({row['change']:+.0%} [{low:+.0%}, {high:+.0%}], paired "
            f"95%); solved with the operator {counts['successes_with_operator']} of {row['episodes']}"
        )


if __name__ == "__main__":
    main()
