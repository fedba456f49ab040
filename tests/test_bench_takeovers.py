"""bench/takeovers.py: every champion of a finished run replayed on fixed seeds with the run's own operator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.takeovers import first_to_last, main, needed_takeovers_by_seed, takeovers_it_did_not_need
from flywheel.presets import flywheel_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def finished_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("takeovers") / "home"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "flywheel", "--home", str(home), "run", "--preset", "tiny", "--iterations", "1"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr
    return home


def _run(monkeypatch: pytest.MonkeyPatch, *argv: str) -> None:
    monkeypatch.setattr(sys, "argv", ["bench.takeovers", *argv])
    main()


def test_champions_replayed_with_the_runs_operator(
    finished_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "takeovers.json"
    _run(monkeypatch, "--home", str(finished_home), "--preset", "tiny", "--episodes", "2", "--workers", "1",
         "--versions", "1", "--out", str(out))  # fmt: skip
    doc = json.loads(out.read_text())
    tiny = flywheel_config("tiny", {})
    assert doc["preset"] == "tiny" and doc["max_steps"] == tiny.max_steps != flywheel_config("quickstart", {}).max_steps
    (row,) = doc["champions"]
    assert row["policy_version"] == 1 and row["episodes"] == 2
    assert row["takeovers_per_episode"] == row["takeovers"] / 2 and row["episodes_with_takeover"] <= 2
    assert 0 < row["longest_episode_steps"] <= tiny.max_steps  # the run's episode length, not the quickstart's
    assert len(row["takeovers_by_seed"]) == 2 and sum(row["takeovers_by_seed"].values()) == row["takeovers"]
    assert doc["first_to_last"] is None  # one champion: nothing to compare
    assert "solved_alone" not in row and len(row["success_by_seed"]) == 2


def test_alone_sets_each_takeover_beside_the_champions_own_outcome(
    finished_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "takeovers.json"
    _run(monkeypatch, "--home", str(finished_home), "--preset", "tiny", "--episodes", "3", "--workers", "1",
         "--versions", "1", "--alone", "--out", str(out))  # fmt: skip
    (row,) = json.loads(out.read_text())["champions"]
    alone = row["success_alone_by_seed"]
    assert alone.keys() == row["takeovers_by_seed"].keys() and row["solved_alone"] == sum(alone.values())
    taken_over = {seed for seed, count in row["takeovers_by_seed"].items() if count}
    assert row["episodes_with_takeover_solved_alone"] == sum(alone[seed] for seed in taken_over)
    assert row["takeovers_in_episodes_solved_alone"] <= row["takeovers"]


def test_sampling_overrides_reach_every_champion_and_are_recorded(
    finished_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "takeovers.json"
    _run(monkeypatch, "--home", str(finished_home), "--preset", "tiny", "--episodes", "2", "--workers", "1",
         "--versions", "1", "--execute-steps", "2", "--out", str(out))  # fmt: skip
    doc = json.loads(out.read_text())
    (row,) = doc["champions"]
    assert doc["execute_steps"] == 2 and doc["cfg_beta"] is None
    assert row["sampling"]["execute_steps"] == 2 and row["sampling"]["cfg_beta"] == 1.0  # the checkpoint's β
    _run(monkeypatch, "--home", str(finished_home), "--preset", "tiny", "--episodes", "1", "--workers", "1",
         "--versions", "1", "--execute-steps", "256", "--out", str(out))  # fmt: skip
    (row,) = json.loads(out.read_text())["champions"]
    chunk = flywheel_config("tiny", {}).train.model.expert.chunk
    assert row["sampling"]["execute_steps"] == chunk  # capped at the chunk, as the runner caps it


def test_takeovers_it_did_not_need_counts_only_episodes_solved_alone() -> None:
    row = {"takeovers_by_seed": {"1": 2, "2": 0, "3": 1, "4": 1}}
    alone = {"1": True, "2": True, "3": False, "4": True}
    counted = takeovers_it_did_not_need(row, alone)
    assert counted["solved_alone"] == 3
    assert counted["episodes_with_takeover_solved_alone"] == 2 and counted["takeovers_in_episodes_solved_alone"] == 3


def test_first_to_last_also_compares_the_takeovers_each_champion_needed() -> None:
    seeds = [str(s) for s in range(40)]
    first = {"policy_version": 1, "takeovers_by_seed": dict.fromkeys(seeds, 1)}
    last = {"policy_version": 4, "takeovers_by_seed": dict.fromkeys(seeds, 1)}
    assert first_to_last([first, last])["change"] == 0.0 and "needed" not in first_to_last([first, last])
    first["success_alone_by_seed"] = dict.fromkeys(seeds, False)
    last["success_alone_by_seed"] = {s: int(s) % 4 != 0 for s in seeds}  # solves 3 in 4 of its taken-over seeds
    assert needed_takeovers_by_seed(last) == {s: int(int(s) % 4 == 0) for s in seeds}
    compared = first_to_last([first, last])
    assert compared["change"] == 0.0 and compared["needed"]["change"] == pytest.approx(-0.75)
    low, high = compared["needed"]["ci"]
    assert low <= -0.75 <= high < 0


def test_a_version_that_was_never_champion_is_refused(
    finished_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "takeovers.json"
    with pytest.raises(SystemExit, match=r"versions \[99\] were never champion"):
        _run(monkeypatch, "--home", str(finished_home), "--versions", "99", "--out", str(out))
    with pytest.raises(SystemExit, match="no-such-preset"):
        _run(monkeypatch, "--home", str(finished_home), "--preset", "no-such-preset", "--out", str(out))
    assert not out.exists()


def test_stage_only_takeover_and_closing_parts() -> None:
    from bench.takeover_approach import describe, first_stage_only_takeover

    stages = np.array([0] * 5 + [2] * 30)
    assert first_stage_only_takeover(stages, (10, 10, 20, 10)) == 26  # 20 steps after the stage rose at step 5
    assert first_stage_only_takeover(stages, (10, 10, 40, 10)) is None
    closing = describe(stages, np.linspace(0.2, 0.1, 35), (10, 10, 20, 10), window=10)
    assert closing["best_stage"] == 2 and closing["closing"] and closing["steps_left"] == 9
    still = describe(stages, np.full(35, 0.12), (10, 10, 20, 10), window=10)
    assert not still["closing"] and still["closed_mm"] == 0.0
