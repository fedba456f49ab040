"""The headless defaults fill in what the environment leaves unset and never override a user's choice."""

from __future__ import annotations

from pathlib import Path

import pytest

from flywheel.cli.console import console_env
from flywheel.config import Settings
from flywheel.headless import HEADLESS_ENV, headless_defaults


def test_defaults_fill_only_unset_variables() -> None:
    environ = {"MUJOCO_GL": "osmesa"}
    headless_defaults(environ)
    assert environ["MUJOCO_GL"] == "osmesa"
    assert {name: environ[name] for name in HEADLESS_ENV if name != "MUJOCO_GL"} == {
        "WANDB_MODE": "offline",
        "HF_HUB_OFFLINE": "1",
    }


def test_console_process_gets_the_defaults_unless_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(home=tmp_path)
    monkeypatch.delenv("MUJOCO_GL", raising=False)
    monkeypatch.setenv("WANDB_MODE", "online")
    env = console_env(settings)
    assert env["MUJOCO_GL"] == HEADLESS_ENV["MUJOCO_GL"]
    assert env["WANDB_MODE"] == "online"
