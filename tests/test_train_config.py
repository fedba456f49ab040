"""Training config validation: unknown keys and bad values fail before any work."""

from __future__ import annotations

from pathlib import Path

import pytest

from flywheel.errors import ConfigError
from flywheel.train.config import TrainConfig, load_config, parse_config


def test_defaults_are_valid() -> None:
    cfg = TrainConfig()
    assert cfg.method == "recap" and cfg.model.critic.expectile == 0.7
    assert cfg.source_weights == {"demo": 1.0, "autonomous": 1.0, "intervention": 0.5}  # the quickstart's


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"stepz": 10}, "stepz"),
        ({"model": {"expert": {"chunkk": 4}}}, "model.expert.chunkk"),
        ({"lr": -1.0}, "lr"),
        ({"method": "ppo"}, "method"),
        ({"model": {"critic": {"expectile": 1.5}}}, "model.critic.expectile"),
        ({"source_weights": {"teleop": 1.0}}, "teleop"),
        ({"batch_size": 10, "grad_accum": 3}, "grad_accum"),
        ({"model": {"expert": {"chunk": 4}, "inference": {"execute_steps": 8}}}, "execute_steps"),
        ({"model": {"encoder": {"vision": "backbone"}}}, "backbone"),
        ({"method": "awr", "critic_steps": 0}, "critic_steps"),
    ],
)
def test_bad_config_is_a_clear_error(data: dict, needle: str) -> None:
    with pytest.raises(ConfigError, match="invalid training config") as info:
        parse_config(data)
    assert needle in str(info.value)


def test_load_yaml_and_json(tmp_path: Path) -> None:
    y = tmp_path / "t.yaml"
    y.write_text("method: bc\nsteps: 7\nmodel:\n  expert:\n    chunk: 8\n  inference:\n    execute_steps: 4\n")
    cfg = load_config(y)
    assert (cfg.method, cfg.steps, cfg.model.expert.chunk) == ("bc", 7, 8)
    j = tmp_path / "t.json"
    j.write_text('{"method": "awr", "awr_beta": 2.0}')
    assert load_config(j).awr_beta == 2.0
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: [1, 2\n")
    with pytest.raises(ConfigError, match="cannot parse"):
        load_config(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(lst)
