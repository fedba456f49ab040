"""bench.paired_success: two policies compared seed by seed, replicate pairs pooled."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.paired_success import compare, read_row
from flywheel.evaluate.stats import wilson_interval


def _row(name: str, solved: list[bool], first_seed: int = 100) -> dict:
    return {"name": name, "success_by_seed": {str(first_seed + i): s for i, s in enumerate(solved)}}


def test_only_the_seeds_both_measured_count_and_replicates_pool() -> None:
    a1 = _row("recap-1", [True] * 30 + [False] * 10)  # seeds 100..139
    b1 = _row("bc-1", [False] * 10 + [True] * 10 + [False] * 20, first_seed=110)  # 110..149: 30 shared
    a2, b2 = _row("recap-2", [True, True, False, False]), _row("bc-2", [False, True, True, False])
    result = compare([a1, a2], [b1, b2])
    first, second = result["per_pair"]
    assert (first["seeds"], first["only_a"], first["only_b"]) == (30, 10, 0)  # seeds 110..119: only recap-1
    assert first["ci_low"] > 0
    assert (second["only_a"], second["only_b"], second["difference"]) == (1, 1, 0.0)
    assert second["ci_low"] < 0 < second["ci_high"]
    assert result["pooled"] == pytest.approx(
        {
            "pairs": 34,
            "difference": 10 / 34,
            "only_a": 11,
            "only_b": 1,
            "ci_low": result["pooled"]["ci_low"],
            "ci_high": result["pooled"]["ci_high"],
        }
    )
    assert 0 < result["pooled"]["ci_low"] < 10 / 34 < result["pooled"]["ci_high"]


def test_unmatched_arms_and_rows_without_seeds_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="as many --b as --a"):
        compare([_row("a", [True])], [])
    with pytest.raises(ValueError, match="share no seeds"):
        compare([_row("a", [True])], [_row("b", [True], first_seed=5)])
    old = tmp_path / "old.json"
    old.write_text(json.dumps([{"name": "v6", "success": 0.78}]))
    with pytest.raises(SystemExit, match="no success_by_seed"):
        read_row(str(old))
    with pytest.raises(SystemExit, match="no row named 'v7'"):
        read_row(f"{old}:v7")


def test_the_command_writes_the_comparison(tmp_path: Path) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps([_row("old", [False] * 4), _row("recap", [True, True, True, False])]))
    b.write_text(json.dumps([_row("bc", [True, False, False, False])]))
    out = tmp_path / "paired.json"
    run = subprocess.run(
        [sys.executable, "-m", "bench.paired_success", "--a", f"{a}:recap", "--b", str(b), "--out", str(out)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "recap − bc: 75.0% [" in run.stdout and "= +50.0% [" in run.stdout
    assert json.loads(out.read_text())["pooled"]["difference"] == 0.5


def test_each_arm_gets_its_interval_and_excluded_seeds_drop_out(tmp_path: Path) -> None:
    a = _row("recap", [True] * 180 + [False] * 20)  # seeds 100..299
    b = _row("bc", [True] * 10 + [False] * 190)
    both = compare([a], [b])["per_pair"][0]
    assert both["a_ci"] == pytest.approx(list(wilson_interval(180, 200)))
    assert both["b_ci"] == pytest.approx(list(wilson_interval(10, 200)))
    assert both["intervals_separate"]
    assert compare([b], [a])["per_pair"][0]["intervals_separate"]  # B ahead separates too
    close = compare([_row("a", [True, False])], [_row("b", [False, True])])["per_pair"][0]
    assert not close["intervals_separate"]

    earlier = tmp_path / "earlier.json"
    earlier.write_text(json.dumps([_row("recap-first-100", [True] * 100)]))  # seeds 100..199
    out = tmp_path / "new.json"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.paired_success",
            "--a",
            str(_write(tmp_path, a)),
            "--b",
            str(_write(tmp_path, b)),
            "--exclude-seeds-of",
            str(earlier),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    new = json.loads(out.read_text())["per_pair"][0]
    assert (new["seeds"], new["excluded"], new["a_success"], new["b_success"]) == (100, 100, 0.8, 0.0)  # 200..299
    assert new["a_ci"] == pytest.approx(list(wilson_interval(80, 100)))
    with pytest.raises(ValueError, match="after exclusions"):
        compare([a], [b], frozenset(a["success_by_seed"]))
    with pytest.raises(ValueError, match="hold none of the seeds"):
        compare([a], [b], frozenset({"5"}))  # a wrong file: it would silently exclude nothing


def _write(folder: Path, row: dict) -> Path:
    path = folder / f"{row['name']}.json"
    path.write_text(json.dumps([row]))
    return path
