"""Pixel policies: small CNN, and frozen SigLIP / PaliGemma backbones built from tiny random configs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from flywheel.policy.model import FlywheelPolicy
from flywheel.policy.runner import PolicyRunner
from flywheel.presets import train_config
from flywheel.train import run_training
from flywheel.train.synthetic import toy_episode

SIGLIP = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "image_size": 32,
    "patch_size": 16,
}
PALIGEMMA = {
    "vision_config": SIGLIP,
    "text_config": {
        "model_type": "gemma",
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "head_dim": 16,
        "vocab_size": 300,
    },
    "projection_dim": 32,
    "image_token_index": 299,
}


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.mark.parametrize(
    "encoder",
    [
        {"vision": "cnn", "cnn_channels": 8, "cnn_grid": 2},
        {"vision": "backbone", "backbone": {"kind": "siglip", "config": SIGLIP}},
        {"vision": "backbone", "backbone": {"kind": "paligemma", "config": PALIGEMMA}},
    ],
    ids=["cnn", "siglip", "paligemma"],
)
def test_pixel_policy_trains_and_acts(tmp_path: Path, encoder: dict) -> None:
    eps = [toy_episode(i, length=6, images=("top", "wrist"), image_hw=(24, 32)) for i in range(2)]
    eps.append(toy_episode(5, ["policy"] * 3 + ["human"] * 3, length=6, images=("top", "wrist"), image_hw=(24, 32)))
    model = {"encoder": encoder, "expert": {"chunk": 4}, "inference": {"execute_steps": 2}}  # over tiny's model
    cfg = train_config("tiny", {"steps": 2, "critic_steps": 2, "batch_size": 4, "model": model})
    res = run_training(cfg, eps, tmp_path / "run", progress=False)
    assert np.isfinite(res.metrics["train/policy_loss"]) and np.isfinite(res.metrics["train/q_loss"])
    runner = PolicyRunner.load(res.checkpoint_dir, expected_sha256=res.sha256)
    frames = eps[0][1]
    obs = {"state": frames.state[0], "images": {c: frames.images[c][0] for c in ("top", "wrist")}}
    assert runner.act(obs).shape == (3,)
    assert runner.act_chunk(obs).shape == (4, 3)
    with pytest.raises(ValueError, match="camera images"):
        runner.act_chunk({"state": frames.state[0]})
    if encoder["vision"] == "backbone":
        pol = runner.loaded.policy
        assert pol.backbone_frozen
        assert not any(p.requires_grad for p in pol.backbone.parameters())
        torch.manual_seed(cfg.seed)  # the trainer's init: same seed → same random backbone
        fresh = FlywheelPolicy(cfg.model, runner.loaded.spec)
        before, after = fresh.state_dict(), pol.state_dict()
        for k, v in before.items():
            if k.startswith("backbone."):
                torch.testing.assert_close(after[k], v, msg=k)  # frozen: untouched by training
        assert not torch.equal(after["encoder.backbone_proj.1.weight"], before["encoder.backbone_proj.1.weight"])
