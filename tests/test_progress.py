"""Progress where nobody watches a terminal: plain lines in a log while long work runs, not only at its end."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from flywheel.errors import ConfigError
from flywheel.progress import (
    LOG_LINE_INTERVAL_ENV,
    LOG_LINE_INTERVAL_S,
    LoggedProgress,
    episode_progress,
    log_line_interval,
)
from flywheel.progress import work_progress as work_bar

ROOT = Path(__file__).resolve().parents[1]


def _run_bar(console: Console, interval_s: float, steps: int) -> str:
    with work_bar(console=console) as bar:
        bar._interval_s = interval_s
        task = bar.add_task("scan", total=steps)
        for _ in range(steps):
            bar.advance(task)
    return console.file.getvalue()  # type: ignore[attr-defined]


def _log_console() -> Console:
    return Console(file=io.StringIO(), force_terminal=False, width=80)


def test_a_log_gets_a_plain_line_per_interval_and_one_when_the_task_finishes() -> None:
    every_step = _run_bar(_log_console(), interval_s=0.0, steps=3).splitlines()
    plain = [line for line in every_step if line.startswith("scan: ")]
    assert [line.split(",")[0] for line in plain] == ["scan: 1/3 (33%)", "scan: 2/3 (67%)", "scan: 3/3 (100%)"]
    assert "left" in plain[0] and "left" not in plain[-1]  # a finished task has nothing left

    hourly = _run_bar(_log_console(), interval_s=3600.0, steps=3)
    assert "━" not in hourly  # no bar in a log, only its lines
    assert [line for line in hourly.splitlines() if line.startswith("scan: ")] == [
        next(line for line in hourly.splitlines() if line.startswith("scan: 3/3 (100%)"))
    ]


def test_a_terminal_keeps_the_live_bar_alone() -> None:
    console = Console(file=io.StringIO(), force_terminal=True, width=80)
    assert "scan: 1/3" not in _run_bar(console, interval_s=0.0, steps=3)


def test_episode_lines_carry_successes_and_takeovers() -> None:
    bar = episode_progress()
    bar._interval_s = 0.0
    task = bar.add_task("insertion (policy 1)", total=4, successes=0, interventions=0)
    bar.update(task, advance=1, successes=1, interventions=2)
    line = bar.log_line(bar.tasks[task])
    assert line.startswith("insertion (policy 1): 1/4 (25%)") and line.endswith("success 1, takeovers 2")


def test_the_interval_comes_from_the_environment_or_is_refused() -> None:
    assert log_line_interval({}) == LOG_LINE_INTERVAL_S
    assert log_line_interval({LOG_LINE_INTERVAL_ENV: "2.5"}) == 2.5
    for bad in ("soon", "0", "-1"):
        with pytest.raises(ConfigError, match=LOG_LINE_INTERVAL_ENV):
            log_line_interval({LOG_LINE_INTERVAL_ENV: bad})


def test_a_command_writing_to_a_log_shows_its_progress_as_it_goes(tmp_path: Path) -> None:
    """`flywheel demos` with stdout in a pipe (as under nohup or a job runner) prints lines, not only a last bar."""
    env = {**os.environ, "FLYWHEEL_HOME": str(tmp_path / "home"), LOG_LINE_INTERVAL_ENV: "0.001"}
    done = subprocess.run(
        [sys.executable, "-m", "flywheel", "demos", "--n", "3", "--workers", "1"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if "(expert demos): " in line]
    assert [line.split(": ", 1)[1].split(",")[0] for line in lines] == ["1/3 (33%)", "2/3 (67%)", "3/3 (100%)"]
    assert lines[-1].endswith("success 3, takeovers 0")


def test_time_left_is_the_mean_rate_of_this_run_not_of_work_done_before() -> None:
    clock = [0.0]
    bar = LoggedProgress(console=_log_console(), get_time=lambda: clock[0])
    task = bar.add_task("train", total=100, completed=50)  # resumed halfway
    clock[0] = 20.0
    bar.update(task, advance=10)  # 10 steps in 20 s: 40 left take 80 s
    assert bar._time_left(bar.tasks[task]) == pytest.approx(80.0)
