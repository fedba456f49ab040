"""Flow-matching action expert: transformer blocks over an action chunk, conditioned on flow time and the
advantage indicator; Euler sampling with optional classifier-free guidance.

Convention (rectified flow): x_t = (1 - t)·ε + t·a, target velocity v = a - ε, sampling integrates t: 0 → 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from flywheel.policy.blocks import BlockStack
from flywheel.policy.config import ExpertConfig

NEGATIVE, POSITIVE, UNCONDITIONAL = 0, 1, 2

Blocks = Callable[[torch.Tensor], torch.Tensor]
"""The transformer stack as a function of the token sequence (B, T, dim) → (B, T, dim)."""


def time_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of flow time t ∈ [0, 1]: (B,) → (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = (t.float() * 1000.0)[:, None] * freqs[None]
    emb = torch.cat([angles.sin(), angles.cos()], dim=-1)
    return emb if dim % 2 == 0 else torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)


class FlowMatchingExpert(nn.Module):
    """Predicts the flow velocity of a noisy action chunk given context tokens, time and indicator."""

    def __init__(self, cfg: ExpertConfig, action_dim: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.action_dim = action_dim
        d = cfg.dim
        self.action_in = nn.Linear(action_dim, d)
        self.pos = nn.Parameter(torch.randn(1, cfg.chunk, d) * 0.02)
        self.time_mlp = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, d))
        self.indicator = nn.Embedding(3, d)
        self.ctx_norm = nn.LayerNorm(d)
        self.blocks = BlockStack(d, cfg.heads, cfg.mlp_ratio, cfg.layers, cfg.dropout)
        self.out_norm = nn.LayerNorm(d)
        self.out = nn.Linear(d, action_dim)

    def velocity(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        indicator: torch.Tensor,
        ctx: torch.Tensor,
        blocks: Blocks | None = None,
    ) -> torch.Tensor:
        """x_t (B, H, A), t (B,), indicator (B,) in {0, 1, 2}, ctx (B, N, dim) → velocity (B, H, A).

        `blocks` replaces `self.blocks` with an equivalent inference form of them (e.g. packed bf16 weights).
        """
        cond = self.time_mlp(time_embedding(t, self.cfg.dim)) + self.indicator(indicator)
        acts = self.action_in(x_t) + self.pos[:, : x_t.shape[1]] + cond[:, None]
        seq = torch.cat([self.ctx_norm(ctx), cond[:, None], acts], dim=1)
        hidden = (blocks if blocks is not None else self.blocks)(seq)[:, -x_t.shape[1] :]
        return self.out(self.out_norm(hidden))

    def flow_error(
        self,
        actions: torch.Tensor,
        ctx: torch.Tensor,
        indicator: torch.Tensor,
        noise: torch.Tensor,
        t: torch.Tensor,
    ) -> torch.Tensor:
        """Per-sample, per-step, per-dimension squared velocity error (B, H, A)."""
        tt = t[:, None, None]
        x_t = (1.0 - tt) * noise + tt * actions
        pred = self.velocity(x_t, t, indicator, ctx)
        return (pred.float() - (actions - noise).float()).pow(2)

    @torch.no_grad()
    def sample(
        self,
        ctx: torch.Tensor,
        noise: torch.Tensor,
        num_steps: int,
        indicator: int = POSITIVE,
        cfg_beta: float | None = None,
        blocks: Blocks | None = None,
    ) -> torch.Tensor:
        """K Euler steps from `noise` (B, H, A). With `cfg_beta`, velocity = v_u + β(v_c - v_u)."""
        batch = ctx.shape[0]
        cond = torch.full((batch,), indicator, dtype=torch.long, device=ctx.device)
        guided = cfg_beta is not None
        if guided:
            ctx2 = torch.cat([ctx, ctx], dim=0)
            ind2 = torch.cat([cond, torch.full_like(cond, UNCONDITIONAL)], dim=0)
        x = noise
        dt = 1.0 / num_steps
        for k in range(num_steps):
            t = torch.full((batch,), k * dt, device=ctx.device)
            if guided:
                v_c, v_u = self.velocity(torch.cat([x, x]), torch.cat([t, t]), ind2, ctx2, blocks).chunk(2)
                v = v_u + cfg_beta * (v_c - v_u)
            else:
                v = self.velocity(x, t, cond, ctx, blocks)
            x = x + dt * v
        return x
