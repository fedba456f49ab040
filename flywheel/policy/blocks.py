"""Pre-norm transformer blocks for the action expert, written out with functional ops.

The math and parameter names are those of `nn.TransformerEncoderLayer(norm_first=True, activation="gelu")` inside
an `nn.TransformerEncoder`, so checkpoints written with either load into the other. Written out, a block skips
PyTorch's per-call fast-path eligibility checks (they walk every submodule on every call and cost more than the
block's own arithmetic at the small batches of closed-loop control) and uses `scaled_dot_product_attention`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SelfAttention(nn.Module):
    """Multi-head self-attention with a packed input projection (the parameter layout of nn.MultiheadAttention)."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention: dim {dim} must be divisible by heads {heads}")
        self.heads = heads
        self.dropout = dropout
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        q, k, v = qkv.view(batch, tokens, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        dropout = self.dropout if self.training else 0.0
        if q.device.type == "cpu" and q.dtype == torch.bfloat16:
            # the CPU's bf16 attention kernel is several times slower than fp32 at these sizes (bench.train_step)
            attended = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), dropout_p=dropout).to(q.dtype)
        else:
            attended = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout)
        return self.out_proj(attended.transpose(1, 2).reshape(batch, tokens, dim))


class PreNormBlock(nn.Module):
    """x + Attn(LN(x)), then x + MLP(LN(x)) with a GELU MLP; dropout after attention and in the MLP."""

    def __init__(self, dim: int, heads: int, mlp_dim: int, dropout: float) -> None:
        super().__init__()
        self.p = dropout
        self.norm1 = nn.LayerNorm(dim)
        self.self_attn = SelfAttention(dim, heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.linear1 = nn.Linear(dim, mlp_dim)
        self.linear2 = nn.Linear(mlp_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + F.dropout(self.self_attn(self.norm1(x)), self.p, self.training)
        hidden = F.dropout(F.gelu(self.linear1(self.norm2(x))), self.p, self.training)
        return x + F.dropout(self.linear2(hidden), self.p, self.training)


class BlockStack(nn.Module):
    """`layers` pre-norm blocks applied in turn (no final norm)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, layers: int, dropout: float) -> None:
        super().__init__()
        mlp_dim = max(1, int(dim * mlp_ratio))
        self.layers = nn.ModuleList(PreNormBlock(dim, heads, mlp_dim, dropout) for _ in range(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x
