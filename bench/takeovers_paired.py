"""Two `bench.takeovers` results on the same seeds, compared policy by policy: one way of running the champions
against another (a sampling override such as `--execute-steps`, another operator), with nothing rolled out.

For every policy version both results replayed, it gives the takeovers, the episodes with a takeover and the
episodes solved with the operator under each, and the change from `--a` to `--b` with the paired interval
`bench.takeovers` uses for its first-to-last change. Results from two stores (two runs replayed on the same seeds)
pair only the versions `--pair A:B` names (repeatable), version A of `--a`'s store with version B of `--b`'s.

    python -m bench.takeovers_paired --a HORIZON8.json --b HORIZON4.json --out FILE
    python -m bench.takeovers_paired --a TABLE.json --b WRIST.json --pair 1:1 --out FILE
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


def compare(a: dict[str, Any], b: dict[str, Any], pairs: list[tuple[int, int]] | None = None) -> dict[str, Any]:
    """Each policy in both results (or each `pairs` entry: version A of `a`, version B of `b`): its counts under
    `a` and under `b`, and the paired change from `a` to `b`."""
    if a.get("seeds") != b.get("seeds"):
        raise ValueError(f"the results played different seed sets ({a.get('seeds')} against {b.get('seeds')})")
    if pairs is None and a.get("home") != b.get("home"):
        raise ValueError(
            f"the results replayed different stores ({a.get('home')} against {b.get('home')}): name the versions "
            "to pair with --pair A:B"
        )
    rows_a = {row["policy_version"]: row for row in a["champions"]}
    rows_b = {row["policy_version"]: row for row in b["champions"]}
    if pairs is None:
        pairs = [(version, version) for version in rows_b if version in rows_a]
    elif missing := [f"{va}:{vb}" for va, vb in pairs if va not in rows_a or vb not in rows_b]:
        raise ValueError(f"--pair {', '.join(missing)}: the results did not replay those versions")
    versions: dict[str, Any] = {}
    for version_a, version_b in pairs:
        row_a, row_b = rows_a[version_a], rows_b[version_b]
        if row_a["takeovers_by_seed"].keys() != row_b["takeovers_by_seed"].keys():
            raise ValueError(f"policies {version_a}:{version_b} played different seeds in the two results")
        change = first_to_last([row_a, row_b])
        assert change is not None
        name = (
            str(version_b) if version_a == version_b and a.get("home") == b.get("home") else f"{version_a}:{version_b}"
        )
        versions[name] = {
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
    settings = {key: {"a": a.get(key), "b": b.get(key)} for key in ("home", *SETTINGS)}
    return {"settings": settings, "versions": versions}


def parse_pair(text: str) -> tuple[int, int]:
    """`A:B` → (A, B), two policy versions."""
    try:
        version_a, version_b = (int(part) for part in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected A:B, two policy versions (e.g. 1:1)") from None
    return version_a, version_b


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", type=Path, required=True, help="the reference bench.takeovers result")
    parser.add_argument("--b", type=Path, required=True, help="the bench.takeovers result compared with it")
    parser.add_argument(
        "--pair",
        type=parse_pair,
        action="append",
        default=None,
        metavar="A:B",
        help="pair version A of --a's store with version B of --b's (repeatable; needed when the stores differ)",
    )
    parser.add_argument("--out", type=Path, required=True, help="where the JSON goes")
    args = parser.parse_args()
    a, b = read_result(args.a, "takeovers_paired"), read_result(args.b, "takeovers_paired")
    try:
        compared = compare(a, b, args.pair)
    except ValueError as exc:
        raise SystemExit(f"takeovers_paired: {exc}") from exc
    write_json(
        args.out,
        {"bench": "takeovers_paired", "a": str(args.a), "b": str(args.b), "seeds": a["seeds"]} | compared,
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
