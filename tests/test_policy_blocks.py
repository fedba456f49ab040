"""The action expert's written-out transformer blocks: same math and parameter names as PyTorch's encoder."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from flywheel.policy.blocks import BlockStack


@pytest.mark.parametrize("train", [False, True])
def test_blocks_match_torch_pre_norm_encoder(train: bool) -> None:
    torch.manual_seed(0)
    dim, heads, layers = 32, 4, 3
    layer = nn.TransformerEncoderLayer(
        dim, heads, dim_feedforward=2 * dim, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
    )
    reference = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
    for p in reference.parameters():
        p.data.normal_(0.0, 0.2)  # the clone-per-layer init would hide a layer mix-up
    blocks = BlockStack(dim, heads, mlp_ratio=2.0, layers=layers, dropout=0.0)
    blocks.load_state_dict(reference.state_dict())  # strict: a checkpoint of either loads into the other
    reference.train(train)
    blocks.train(train)
    x = torch.randn(5, 7, dim)
    with torch.set_grad_enabled(train):
        torch.testing.assert_close(blocks(x), reference(x), atol=1e-5, rtol=1e-5)


def test_blocks_reject_heads_that_do_not_divide_dim() -> None:
    with pytest.raises(ValueError, match="divisible by heads"):
        BlockStack(30, 4, mlp_ratio=2.0, layers=1, dropout=0.0)


def test_cpu_bf16_autocast_attends_in_fp32_and_stays_close_to_fp32() -> None:
    """Under CPU bf16 autocast (`train.cpu_bf16`) attention runs in fp32; the rest rounds to bf16."""
    torch.manual_seed(0)
    stack = BlockStack(64, heads=4, mlp_ratio=4.0, layers=2, dropout=0.0).eval()
    x = torch.randn(8, 12, 64)
    with torch.no_grad():
        reference = stack(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            rounded = stack(x)
    added, reference_added = rounded.float() - x, reference - x
    assert torch.isfinite(added).all()
    assert float((added - reference_added).abs().max()) < 0.05 * float(reference_added.abs().max())
