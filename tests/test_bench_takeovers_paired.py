"""bench.takeovers_paired: two takeovers results on the same seeds, compared policy by policy."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.takeovers_paired import compare

ROOT = Path(__file__).resolve().parents[1]


def _champion(version: int, takeovers: list[int]) -> dict:
    seeds = [str(i) for i in range(len(takeovers))]
    return {
        "policy_version": version,
        "iteration": version - 1,
        "episodes": len(takeovers),
        "takeovers": sum(takeovers),
        "episodes_with_takeover": sum(1 for t in takeovers if t),
        "successes_with_operator": sum(1 for t in takeovers if t < 2),
        "takeovers_by_seed": dict(zip(seeds, takeovers, strict=True)),
        "success_by_seed": {seed: t < 2 for seed, t in zip(seeds, takeovers, strict=True)},
    }


def _result(
    *champions: dict, execute_steps: int | None = None, seeds: str = "eval_seeds(n, 5000)", home: str = "/h"
) -> dict:
    return {
        "bench": "takeovers",
        "home": home,
        "seeds": seeds,
        "execute_steps": execute_steps,
        "champions": list(champions),
    }


def test_each_shared_policy_is_paired_seed_by_seed() -> None:
    a = _result(_champion(1, [2, 2, 0, 1]), _champion(4, [1, 1, 0, 1]))
    b = _result(_champion(4, [0, 1, 0, 1]), execute_steps=4)
    compared = compare(a, b)
    assert list(compared["versions"]) == ["4"]  # v1 was not replayed under b
    row = compared["versions"]["4"]
    assert row["takeovers"] == {"a": 3, "b": 2} and row["episodes_with_takeover"] == {"a": 3, "b": 2}
    assert row["change"] == pytest.approx(2 / 3 - 1) and row["ci"][0] <= row["change"] <= row["ci"][1]
    assert compared["settings"]["execute_steps"] == {"a": None, "b": 4}


def test_results_that_cannot_be_paired_are_refused() -> None:
    a = _result(_champion(1, [1, 0]))
    with pytest.raises(ValueError, match="different seed sets"):
        compare(a, _result(_champion(1, [1, 0]), seeds="fresh_seeds(n, 500000)"))
    with pytest.raises(ValueError, match=r"different stores.*--pair"):
        compare(a, _result(_champion(1, [1, 0]), home="/other"))
    with pytest.raises(ValueError, match="--pair 1:3"):
        compare(a, _result(_champion(1, [1, 0]), home="/other"), [(1, 3)])
    with pytest.raises(ValueError, match="different seeds"):
        compare(a, _result(_champion(1, [1, 0, 0])))
    with pytest.raises(ValueError, match="share no policy"):
        compare(a, _result(_champion(2, [1, 0])))


def test_named_pairs_compare_versions_of_two_stores() -> None:
    a = _result(_champion(1, [2, 1, 1, 0]), _champion(4, [1, 1, 0, 0]))
    b = _result(_champion(1, [1, 0, 1, 0]), home="/other")
    compared = compare(a, b, [(1, 1), (4, 1)])
    assert list(compared["versions"]) == ["1:1", "4:1"]
    assert compared["versions"]["1:1"]["takeovers"] == {"a": 4, "b": 2}
    assert compared["versions"]["4:1"]["change"] == pytest.approx(0.0)
    assert compared["settings"]["home"] == {"a": "/h", "b": "/other"}


def test_the_command_writes_the_comparison_and_refuses_a_non_result(tmp_path: Path) -> None:
    a, b, out = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "out.json"
    a.write_text(json.dumps(_result(_champion(1, [1, 1, 0]))))
    b.write_text(json.dumps(_result(_champion(1, [0, 1, 0]), execute_steps=4)))
    cmd = [sys.executable, "-m", "bench.takeovers_paired", "--a", str(a), "--b", str(b), "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "v1: takeovers 2 -> 1" in done.stdout
    written = json.loads(out.read_text())
    assert written["bench"] == "takeovers_paired" and written["versions"]["1"]["takeovers"] == {"a": 2, "b": 1}
    b.write_text(json.dumps({"bench": "vision"}))
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode != 0 and "takeovers_paired:" in done.stderr and "not a bench.takeovers result" in done.stderr
