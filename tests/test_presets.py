"""Named presets: each validates, the quickstart is the loop's old defaults, overrides lay over a preset, unknown
names suggest the closest one, and the CLI lists them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flywheel.cli import app
from flywheel.errors import ConfigError
from flywheel.presets import PRESETS, UnknownPresetError, flywheel_config, get_preset, train_config
from flywheel.scheduler.config import FlywheelConfig, load_flywheel_config
from flywheel.train.config import TrainConfig


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_validates(name: str) -> None:
    config = flywheel_config(name)
    assert isinstance(config, FlywheelConfig)
    assert train_config(name) == config.train


def test_quickstart_is_the_schema_defaults_and_the_loops_tuned_recipe() -> None:
    """`flywheel train` (TrainConfig()) and `flywheel run` (FlywheelConfig()) train with one set of defaults: the
    recipe the loop was tuned with (before presets, only `flywheel run` used it)."""
    quick = train_config("quickstart")
    assert quick == TrainConfig() == FlywheelConfig().train
    assert flywheel_config("quickstart") == FlywheelConfig()
    expected = {
        "method": "recap",
        "steps": 1000,
        "critic_steps": 500,
        "batch_size": 64,
        "warmup_steps": 50,
        "checkpoint_every": 250,
        "log_every": 50,
        "cpu_threads": 1,
        "advantage_quantile": 0.7,
        "pre_takeover_negative_steps": 60,
        "source_weights": {"demo": 1.0, "autonomous": 1.0, "intervention": 0.5},
    }
    assert {k: getattr(quick, k) for k in expected} == expected


def test_bootstrap_is_the_loops_first_training() -> None:
    quick = flywheel_config("quickstart")
    assert train_config("bootstrap") == quick.bootstrap_train()
    assert train_config("bootstrap").steps == quick.bootstrap_steps != quick.train.steps


def test_bootstrap_lr_sets_the_first_training_only() -> None:
    config = flywheel_config("quickstart", {"bootstrap_lr": 3e-4, "train": {"lr": 1e-4}})
    assert (config.bootstrap_train().lr, config.train.lr) == (3e-4, 1e-4)  # fine-tunes keep their own
    unset = flywheel_config("quickstart", {"train": {"lr": 1e-4}})
    assert unset.bootstrap_train().lr == unset.train.lr == 1e-4  # unset: train.lr
    with pytest.raises(ConfigError, match="bootstrap_lr"):
        flywheel_config("quickstart", {"bootstrap_lr": 0.0})


def test_tiny_is_small_and_overridable() -> None:
    tiny = train_config("tiny", {"method": "bc", "model": {"expert": {"chunk": 4}, "inference": {"execute_steps": 4}}})
    assert (tiny.method, tiny.model.expert.chunk, tiny.model.expert.dim) == ("bc", 4, 32)
    assert tiny.model.critic.hidden_dim == 32  # untouched nested keys keep the preset's value
    with pytest.raises(ConfigError, match=r"preset 'tiny'.*model.expert.chunk"):
        train_config("tiny", {"model": {"expert": {"chunk": 0}}})


@pytest.mark.parametrize("name", ["pixels", "pixels-aux", "pixels-aux-long"])
def test_the_pixels_presets_read_their_recorded_cameras_and_the_joints_only(name: str) -> None:
    config = flywheel_config(name)
    inputs = config.train.model.inputs
    assert config.obs_mode == "pixels" and inputs.state == ["qpos", "qvel"]  # no object pose, no privileged state
    assert inputs.cameras and set(inputs.cameras) <= set(config.cameras)
    assert config.train.model.critic.observations == "policy"  # the critic sees what the policy sees


def test_pixels_aux_is_pixels_from_the_table_camera_with_the_object_loss() -> None:
    base, aux = flywheel_config("pixels"), flywheel_config("pixels-aux")
    assert aux.cameras == aux.train.model.inputs.cameras == ["table"]
    assert (aux.train.model.encoder.cnn_downsample, aux.train.model.encoder.object_aux_weight) == (8, 1.0)
    assert base.train.model.encoder.object_aux_weight == 0.0
    assert aux.eval == base.eval and aux.bootstrap_steps == base.bootstrap_steps  # the same loop and gates


def test_pixels_aux_long_differs_from_pixels_aux_in_its_schedule_alone() -> None:
    long = flywheel_config("pixels-aux-long")
    assert (long.bootstrap_steps, long.bootstrap_train().lr) == (8000, 3e-4)
    assert (long.train.lr, long.train.failed_corrections_positive) == (1e-4, False)
    schedule = {"bootstrap_steps": 8000, "bootstrap_lr": 3e-4}
    train = {"lr": 1e-4, "failed_corrections_positive": False}
    assert long == flywheel_config("pixels-aux", {**schedule, "train": train})
    assert long != flywheel_config("pixels-aux")


def test_unknown_preset_suggests_the_closest() -> None:
    with pytest.raises(UnknownPresetError, match="unknown preset 'quikstart'; did you mean 'quickstart'"):
        get_preset("quikstart")
    with pytest.raises(UnknownPresetError, match="known presets: quickstart, bootstrap, tiny"):
        get_preset("zzz")


def test_run_config_names_a_preset_and_overrides_it(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("preset: tiny\ndemos: 5\ntrain: {steps: 7}\n")
    config = load_flywheel_config(path)
    assert (config.demos, config.train.steps, config.train.critic_steps) == (5, 7, 10)
    assert load_flywheel_config(path, preset="tiny") == config
    with pytest.raises(ConfigError, match="names preset 'tiny' but --preset is 'quickstart'"):
        load_flywheel_config(path, preset="quickstart")
    plain = tmp_path / "plain.yaml"
    plain.write_text("demos: 5\n")
    assert load_flywheel_config(plain, preset="tiny").train == train_config("tiny")
    assert load_flywheel_config(plain).train == TrainConfig()
    path.write_text("preset: tyni\n")
    with pytest.raises(UnknownPresetError, match="did you mean 'tiny'"):
        load_flywheel_config(path)


def test_cli_lists_presets_and_refuses_unknown_ones(tmp_path: Path) -> None:
    runner = CliRunner()
    listed = runner.invoke(app, ["presets"])
    assert listed.exit_code == 0, listed.output
    assert all(name in listed.output for name in PRESETS)
    as_json = runner.invoke(app, ["presets", "--json"])
    assert json.loads(as_json.output)["tiny"]["train"]["model"]["expert"]["dim"] == 32
    # exit code 2 and the one-line error come from the console script's main(), so run the module
    proc = subprocess.run(
        [sys.executable, "-m", "flywheel", "--home", str(tmp_path), "train", "--preset", "tinny"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "did you mean 'tiny'" in proc.stderr


def test_run_task_is_checked_and_the_flag_overrides_the_file(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("preset: tiny\ntask: transfer_cube\n")
    assert load_flywheel_config(path, task="insertion").task == "insertion"
    assert load_flywheel_config(path).task == "transfer_cube"
    with pytest.raises(ConfigError, match="unknown task 'insrtion': use one of insertion, transfer_cube"):
        load_flywheel_config(path, task="insrtion")
    path.write_text("task: cube\n")
    with pytest.raises(ConfigError, match="unknown task 'cube'"):
        load_flywheel_config(path)
    home = tmp_path / "home"
    proc = subprocess.run(
        [sys.executable, "-m", "flywheel", "run", "--home", str(home), "--preset", "tiny", "--task", "cube"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "unknown task 'cube'" in proc.stderr
    assert not home.exists()  # refused before the store was created
