"""bf16 inference of the action expert's transformer stack on CPUs with bf16 matrix units (AMX).

On a CPU with AMX tiles the expert's matrix products run several times faster in bf16 than in fp32, and
oneDNN runs them fastest on weights reordered once into its own blocked layout (`mkldnn._reorder_linear_weight`, the
op PyTorch's inductor packs CPU weights with), with the MLP's GELU fused into the first product. The residual stream
and the layer norms stay fp32; the products and the attention logits round to bf16, so a sampled chunk differs from
the fp32 one by rounding (about 1e-3 in normalised action units), not by a change of model. Sharply peaked
attention amplifies that rounding: with logits scaled so that the top weight averages 0.8, a block's output moved
by 8% of its range (0.4% at the default initialisation).

The packed products hold a copy of the weights: build the stack from a loaded (frozen) checkpoint, never from a model
that is still training.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from flywheel.policy.blocks import BlockStack, PreNormBlock
from flywheel.policy.config import Precision

BF16_MIN_ROWS = 4
"""`auto` samples batches of at least this many episodes in bf16: below it the dtype conversions cost more than
the bf16 products save (measured: 0.9x at one row, 1.15x at 4, 1.35x at 8, 2x at 32)."""


def amx_cpu() -> bool:
    """Whether this CPU has AMX tiles (where the speedups were measured; AVX512-BF16 alone is not assumed)."""
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)  # private: absent means "not known to"
    return bool(probe is not None and probe())


def resolve_precision(precision: Precision, device: torch.device, rows: int, amx: bool | None = None) -> str:
    """`fp32` or `bf16` for sampling `rows` episodes on `device`.

    `auto` picks bf16 on a CPU with AMX for at least `BF16_MIN_ROWS` rows, fp32 otherwise.
    """
    if precision != "auto":
        return precision
    if device.type != "cpu" or rows < BF16_MIN_ROWS:
        return "fp32"
    return "bf16" if (amx_cpu() if amx is None else amx) else "fp32"


def onednn_packing_available() -> bool:
    """Whether oneDNN can pack bf16 weights here: the ops exist in this PyTorch build and the CPU has the AVX512
    subsets oneDNN's bf16 kernels need (elsewhere the bf16 products use plain `F.linear`)."""
    ops = torch.ops.mkldnn
    if not (
        torch.backends.mkldnn.is_available()
        and hasattr(ops, "_reorder_linear_weight")
        and hasattr(ops, "_linear_pointwise")
        and hasattr(ops, "_is_mkldnn_bf16_supported")
    ):
        return False
    return bool(ops._is_mkldnn_bf16_supported())


class PackedLinear:
    """`y = x Wᵀ + b` (optionally GELU(y)) in bf16, on weights packed once for oneDNN when it can."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, gelu: bool = False, pack: bool = True) -> None:
        weight = weight.detach().to(torch.bfloat16).contiguous()
        self.packed = pack
        self.weight = torch.ops.mkldnn._reorder_linear_weight(weight) if pack else weight
        self.bias = bias.detach().to(torch.bfloat16).contiguous()
        self.gelu = gelu

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.packed:
            if self.gelu:  # exact (erf) GELU, as `F.gelu` in the training graph
                return torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, "gelu", [], "none")
            return torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, "none", [], "")
        y = F.linear(x, self.weight, self.bias)
        return F.gelu(y) if self.gelu else y


class PackedBlock:
    """One `PreNormBlock` in eval mode: x + Attn(LN(x)), then x + MLP(LN(x)), products in bf16."""

    def __init__(self, block: PreNormBlock, pack: bool) -> None:
        attn = block.self_attn
        self.heads = attn.heads
        self.norm1 = block.norm1
        self.norm2 = block.norm2
        self.qkv = PackedLinear(attn.in_proj_weight, attn.in_proj_bias, pack=pack)
        self.out = PackedLinear(attn.out_proj.weight, attn.out_proj.bias, pack=pack)
        self.mlp_in = PackedLinear(block.linear1.weight, block.linear1.bias, gelu=True, pack=pack)
        self.mlp_out = PackedLinear(block.linear2.weight, block.linear2.bias, pack=pack)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        head_dim = dim // self.heads
        h = self.norm1(x).to(torch.bfloat16)
        q, k, v = self.qkv(h).view(batch, tokens, 3, self.heads, head_dim).permute(2, 0, 3, 1, 4)
        # Explicit attention: at a few dozen tokens it is faster than the fused CPU kernel. The logits are bf16, as
        # under autocast (q and k already carry the bf16 product's rounding); softmax normalises them in fp32.
        weights = torch.softmax((q * head_dim**-0.5) @ k.transpose(-1, -2), dim=-1, dtype=torch.float32)
        attended = (weights.to(torch.bfloat16) @ v).transpose(1, 2).reshape(batch, tokens, dim)
        x = x + self.out(attended)  # fp32 + bf16 adds in fp32
        return x + self.mlp_out(self.mlp_in(self.norm2(x).to(torch.bfloat16)))


class PackedBlockStack:
    """A `BlockStack`'s forward pass (eval mode, fp32 in and out) with bf16 products on packed weights."""

    def __init__(self, stack: BlockStack, pack: bool | None = None) -> None:
        pack = onednn_packing_available() if pack is None else pack
        self.packed = pack
        self.blocks = [PackedBlock(layer, pack) for layer in stack.layers]  # type: ignore[arg-type]

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        for block in self.blocks:
            x = block(x)
        return x
