"""The vision benchmark's results file: each task keeps the setup it ran with, and a second task keeps the first."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from bench.vision import _write, main, matched_steps, run_setup
from flywheel.presets import flywheel_config


def test_each_task_records_its_own_setup(tmp_path: Path) -> None:
    top = {"preset": "pixels", **run_setup(flywheel_config("pixels", {"task": "insertion"}))}
    table = {"preset": "pixels-aux", **run_setup(flywheel_config("pixels-aux", {"task": "transfer_cube"}))}
    row = {"success": 0.5, "ci_low": 0.3, "ci_high": 0.7, "episodes": 20}
    _write(tmp_path, "vision", "insertion", {"bc_demos": row}, top, True, 10.0, 0.0, tmp_path / "a")
    _write(tmp_path, "vision", "transfer_cube", {"bc_demos": row}, table, False, 20.0, 0.0, tmp_path / "b")

    doc = json.loads((tmp_path / "vision.json").read_text())
    assert doc["tasks"]["insertion"]["bc_demos"] == row and doc["tasks"]["insertion"]["complete"]
    assert doc["cameras"] == {"insertion": ["top"], "transfer_cube": ["table"]}
    assert doc["wall_seconds"] == {"insertion": 10.0, "transfer_cube": 20.0}
    setup = doc["tasks"]["transfer_cube"]["setup"]
    assert setup["preset"] == "pixels-aux" and setup["encoder"]["object_aux_weight"] == 1.0
    assert setup["state_inputs"] == ["qpos", "qvel"] and doc["image_size"]["transfer_cube"] == [96, 128]
    assert (tmp_path / "vision.png").stat().st_size > 0


def test_the_baselines_train_as_many_steps_as_a_whole_loop() -> None:
    config = flywheel_config("pixels-aux")
    assert matched_steps(config, 5) == config.bootstrap_steps + 5 * config.train.steps == 8000


def test_the_setup_records_the_bootstrap_and_fine_tune_learning_rates() -> None:
    setup = run_setup(flywheel_config("pixels-aux", {"bootstrap_lr": 3e-4, "train": {"lr": 1e-4}}))
    assert (setup["bootstrap_lr"], setup["lr"]) == (3e-4, 1e-4)


@pytest.mark.parametrize(
    "argv",
    [["--operator-frames", "100"], ["--baseline", "more_demos", "--operator-frames", "-1"], ["--name", "../x"]],
)
def test_bad_arguments_are_refused_before_any_work(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["bench.vision", "--task", "insertion", *argv])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2 and argv[-2] in capsys.readouterr().err


def test_a_loop_run_alone_writes_its_rows_to_a_file_of_its_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out, workdir = tmp_path / "out", tmp_path / "work"
    argv = ["--task", "transfer_cube", "--preset", "tiny", "--iterations", "1", "--loop", "bc"]
    monkeypatch.setattr(sys, "argv", ["bench.vision", *argv, "--workdir", str(workdir), "--out", str(out)])
    main()

    doc = json.loads((out / "vision.bc_loop.json").read_text())
    task = doc["tasks"]["transfer_cube"]
    assert task["complete"] and task["setup"]["preset"] == "tiny" and "recap_loop" not in task
    assert task["setup"]["iterations"] == 1  # complete means the iterations asked for, which the file records
    rows = task["bc_loop"]
    assert [r["iteration"] for r in rows] == [0, 1]
    assert sum(rows[1]["episodes_by_tag"].values()) == 2 and sum(rows[1]["frames_by_controller"].values()) > 0
    assert not (out / "vision.json").exists()  # the comparison file is written only by the plain command
    span, busy = task["loop_seconds"]["bc"], task["loop_busy_seconds"]["bc"]
    assert 0 < busy <= span <= task["wall_seconds"]  # the jobs' own time, within the loop's span


def test_a_finished_run_is_adopted_into_the_comparison_file_as_measured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    setup = {"preset": "pixels-aux-long", **run_setup(flywheel_config("pixels-aux-long", {"task": "insertion"}))}
    other = {"preset": "pixels-aux", **run_setup(flywheel_config("pixels-aux", {"task": "transfer_cube"}))}
    row = {"success": 0.7, "ci_low": 0.6, "ci_high": 0.8, "episodes": 200}
    _write(tmp_path, "headline", "insertion", {"final": {"recap": row}}, setup, True, 30.0, 1.5, tmp_path / "w")
    _write(tmp_path, "vision", "transfer_cube", {"bc_demos": row}, other, True, 20.0, 0.0, tmp_path / "b")
    _write(tmp_path, "vision", "insertion", {"bc_demos": row}, other, True, 5.0, 0.0, tmp_path / "old")
    _write(tmp_path, "unfinished", "insertion", {}, setup, False, 1.0, 0.0, tmp_path / "u")
    _write(tmp_path, "one_loop", "insertion", {"recap_loop": []}, setup, True, 1.0, 0.0, tmp_path / "l")

    def run(*argv: str) -> int | str | None:
        monkeypatch.setattr(sys, "argv", ["bench.vision", "--task", "insertion", "--out", str(tmp_path), *argv])
        try:
            main()
        except SystemExit as exc:
            return exc.code
        return None

    assert run("--adopt", str(tmp_path / "headline.json")) is None
    doc = json.loads((tmp_path / "vision.json").read_text())
    adopted = doc["tasks"]["insertion"]
    assert adopted["final"]["recap"] == row and adopted["adopted_from"] == "headline.json"
    assert adopted["wall_seconds"] == 30.0 and adopted["load_average_start"] == 1.5  # as measured, not now
    assert doc["wall_seconds"] == {"transfer_cube": 20.0, "insertion": 30.0}
    assert doc["tasks"]["transfer_cube"]["bc_demos"] == row  # the other task is kept

    assert "not complete" in str(run("--adopt", str(tmp_path / "unfinished.json")))
    assert "no final held-out numbers" in str(run("--adopt", str(tmp_path / "one_loop.json")))
    assert "no such file" in str(run("--adopt", str(tmp_path / "missing.json")))
    assert "not a bench.vision results file" in str(run("--adopt", str(tmp_path / "vision.png")))
    assert run("--adopt", str(tmp_path / "vision.json")) == 2 and "--name" in capsys.readouterr().err
    assert json.loads((tmp_path / "vision.json").read_text()) == doc  # a refused adoption writes nothing
