"""bench.takeovers_recount: a takeovers result counted again over the seeds an earlier one did not play."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.takeovers_recount import recount


def _champion(version: int, takeovers: list[int], first_seed: int = 0) -> dict:
    seeds = [str(first_seed + i) for i in range(len(takeovers))]
    return {
        "policy_version": version,
        "iteration": version - 1,
        "takeovers_by_seed": dict(zip(seeds, takeovers, strict=True)),
        "success_by_seed": {seed: count < 2 for seed, count in zip(seeds, takeovers, strict=True)},
    }


def _result(*champions: dict) -> dict:
    return {"bench": "takeovers", "seeds": "fresh_seeds(n, 500000)", "champions": list(champions)}


def test_only_the_new_seeds_are_counted(tmp_path: Path) -> None:
    # seeds 0..3 were played before; on them v5 needed as many takeovers as v1, on 4..7 none
    full = _result(_champion(1, [1, 1, 2, 0, 1, 1, 2, 0]), _champion(5, [1, 1, 2, 0, 0, 0, 0, 0]))
    earlier = _result(_champion(1, [1, 1, 2, 0]), _champion(5, [1, 1, 2, 0]))
    counted = recount(full, {"0", "1", "2", "3"})
    first, last = counted["champions"]
    assert (first["episodes"], first["takeovers"], first["episodes_with_takeover"]) == (4, 4, 3)
    assert (last["takeovers"], last["successes_with_operator"]) == (0, 4)
    assert set(last["takeovers_by_seed"]) == {"4", "5", "6", "7"}
    assert counted["first_to_last"]["change"] == -1.0
    assert recount(full, set())["first_to_last"]["change"] == pytest.approx(4 / 8 - 1)
    with pytest.raises(ValueError, match="no seeds of policy 1"):
        recount(full, {str(s) for s in range(8)})

    paths = {name: tmp_path / f"{name}.json" for name in ("full", "earlier", "out")}
    paths["full"].write_text(json.dumps(full))
    paths["earlier"].write_text(json.dumps(earlier))
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.takeovers_recount",
            "--result",
            str(paths["full"]),
            "--exclude-seeds-of",
            str(paths["earlier"]),
            "--out",
            str(paths["out"]),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "on 4 seeds: 1.000 → 0.000" in run.stdout
    written = json.loads(paths["out"].read_text())
    assert [c["excluded"] for c in written["champions"]] == [4, 4] and written["first_to_last"]["change"] == -1.0
    with pytest.raises(ValueError, match="hold none of policy 1"):
        recount(full, {"99"})


def test_outcomes_alone_are_restricted_too() -> None:
    first, last = _champion(1, [1, 1, 2, 2]), _champion(5, [1, 1, 0, 1])
    first["success_alone_by_seed"] = {"0": False, "1": False, "2": False, "3": True}  # seed 3 needed no takeover
    last["success_alone_by_seed"] = {"0": False, "1": False, "2": True, "3": False}
    counted = recount(_result(first, last), {"0", "1"})
    assert counted["champions"][0]["success_alone_by_seed"] == {"2": False, "3": True}
    assert counted["first_to_last"]["needed"]["change"] == pytest.approx(1 / 2 - 1)  # needed: 2 → 1 on seeds 2, 3


def test_a_file_that_is_not_a_takeovers_result_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"bench": "vision_encoders"}))
    run = subprocess.run(
        [sys.executable, "-m", "bench.takeovers_recount", "--result", str(other), "--out", str(tmp_path / "o.json")],
        capture_output=True,
        text=True,
    )
    assert run.returncode != 0 and "not a bench.takeovers result" in run.stderr
    assert not (tmp_path / "o.json").exists()
