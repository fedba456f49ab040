"""bf16 inference of the action expert: packed oneDNN weights, fp32 residual stream, the `auto` precision rule."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import numpy as np
import pytest
import torch

from flywheel.collect.spec import PolicyPrecision
from flywheel.policy.blocks import BlockStack
from flywheel.policy.config import Precision
from flywheel.policy.packed_bf16 import BF16_MIN_ROWS, PackedBlockStack, onednn_packing_available, resolve_precision
from flywheel.policy.runner import PolicyRunner, plan_chunks
from tests.live_support import random_observations

PACKINGS = [
    pytest.param(True, marks=pytest.mark.skipif(not onednn_packing_available(), reason="no oneDNN weight packing")),
    False,
]


@pytest.mark.parametrize("pack", PACKINGS)
def test_packed_stack_matches_the_fp32_blocks_up_to_bf16_rounding(pack: bool) -> None:
    torch.manual_seed(0)
    stack = BlockStack(64, heads=4, mlp_ratio=4.0, layers=3, dropout=0.0).eval()  # default init, unit norm gains
    for layer in stack.layers:
        layer.self_attn.in_proj_weight.data *= 2.0  # peaked attention: a wrong scale or head layout shows
    packed = PackedBlockStack(stack, pack=pack)
    assert packed.packed is pack
    for batch in (1, 5, 33):  # one packed weight serves every batch size
        x = torch.randn(batch, 22, 64)
        with torch.no_grad():
            reference = stack(x)
        out = packed(x)
        assert out.dtype == torch.float32 and out.shape == x.shape
        # Compare what the blocks add to the residual stream, not the stream itself.
        added, reference_added = out - x, reference - x
        error = (added - reference_added).abs().max().item()
        assert 0.0 < error < 0.03 * reference_added.abs().max().item()  # rounded like bf16, not fp32, and no more


def test_packed_attention_is_not_blind_to_a_wrong_scale() -> None:
    """The tolerance above separates right from wrong: the same stack with attention unscaled falls outside it."""
    torch.manual_seed(0)
    stack = BlockStack(64, heads=4, mlp_ratio=4.0, layers=1, dropout=0.0).eval()
    stack.layers[0].self_attn.in_proj_weight.data *= 2.0
    x = torch.randn(3, 22, 64)
    with torch.no_grad():
        reference_added = stack(x) - x
    wrong = PackedBlockStack(stack, pack=False)
    q_rows = slice(0, 64)  # scaling q by √head_dim cancels the 1/√head_dim inside attention
    wrong.blocks[0].qkv.weight[q_rows] *= 4.0
    wrong.blocks[0].qkv.bias[q_rows] *= 4.0
    error = ((wrong(x) - x) - reference_added).abs().max().item()
    assert error > 0.03 * reference_added.abs().max().item()


def test_auto_precision_is_bf16_only_for_batches_on_amx_cpus() -> None:
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert resolve_precision("auto", cpu, rows=BF16_MIN_ROWS, amx=True) == "bf16"
    assert resolve_precision("auto", cpu, rows=BF16_MIN_ROWS - 1, amx=True) == "fp32"
    assert resolve_precision("auto", cpu, rows=64, amx=False) == "fp32"
    assert resolve_precision("auto", gpu, rows=64, amx=True) == "fp32"
    assert resolve_precision("bf16", cpu, rows=1, amx=False) == "bf16"
    assert resolve_precision("fp32", cpu, rows=64, amx=True) == "fp32"
    assert get_args(PolicyPrecision) == get_args(Precision)  # the collect spec spells out the same choices


def test_bf16_batched_re_plan_stays_close_to_fp32(tiny_policy: tuple[Path, str]) -> None:
    loaded = PolicyRunner.load(tiny_policy[0]).loaded
    observations = random_observations(loaded.spec.state_dim, 6)
    bf16 = [PolicyRunner(loaded, seed=s, precision="bf16") for s in range(6)]
    fp32 = [PolicyRunner(loaded, seed=s, precision="fp32") for s in range(6)]
    plan_chunks(bf16, observations)
    plan_chunks(fp32, observations)
    assert loaded._packed_blocks is not None  # built once, shared by the runners of this checkpoint
    scale = loaded.norm.action.denormalize(torch.ones(1, loaded.spec.action_dim)).abs().max().item()
    for a, b, obs in zip(bf16, fp32, observations, strict=True):
        np.testing.assert_allclose(a.act(obs), b.act(obs), atol=0.02 * scale)
    with pytest.raises(ValueError, match="share one loaded policy"):
        plan_chunks([bf16[0], fp32[0]], observations[:2])


def test_lockstep_collection_re_plans_in_bf16(tiny_policy: tuple[Path, str]) -> None:
    from flywheel.collect.runtime import WorkerRuntime
    from flywheel.collect.spec import CollectSpec

    checkpoint, sha256 = tiny_policy
    spec = CollectSpec(
        task="transfer_cube",
        operator_mode="none",
        policy_checkpoint=str(checkpoint),
        policy_sha256=sha256,
        max_steps=30,
        source_prefix="bf16",
        envs_per_worker=4,
        precision="bf16",
    )
    runtime = WorkerRuntime(spec)
    try:
        outcomes = {o.seed: o for o in runtime.run_many([1, 2, 3, 4, 5])}
        assert runtime.policy is not None and runtime.policy.policy.loaded._packed_blocks is not None
    finally:
        runtime.close()
    assert sorted(outcomes) == [1, 2, 3, 4, 5]
    for outcome in outcomes.values():
        assert outcome.error is None and outcome.frames is not None and len(outcome.frames) == 30
        assert np.isfinite(outcome.frames.action).all()
