"""IQL critic over action chunks: twin Q(s, A) with Polyak target nets, V(s) by expectile regression."""

from __future__ import annotations

import copy

import torch
from torch import nn

from flywheel.policy.config import CriticConfig, EncoderConfig
from flywheel.policy.encoders import ObservationEncoder, mlp


def expectile_loss(diff: torch.Tensor, expectile: float) -> torch.Tensor:
    """Element-wise |τ - 1[diff < 0]| · diff², diff = target - prediction."""
    weight = torch.where(diff < 0, 1.0 - expectile, expectile)
    return weight * diff.pow(2)


class ChunkQ(nn.Module):
    """Q(features, flattened normalised action chunk) → scalar."""

    def __init__(self, feat_dim: int, chunk_dim: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.net = mlp(feat_dim + chunk_dim, hidden, 1, layers)

    def forward(self, feat: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([feat, actions.flatten(1)], dim=-1)).squeeze(-1)


class IqlCritic(nn.Module):
    """Own trainable observation head over the shared (frozen, detached) backbone tokens, twin Q, V."""

    def __init__(
        self,
        cfg: CriticConfig,
        enc_cfg: EncoderConfig,
        state_dim: int,
        action_dim: int,
        chunk: int,
        cameras: list[str],
        backbone_dim: int | None,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        h = cfg.hidden_dim
        self.encoder = ObservationEncoder(enc_cfg, state_dim, cameras, h, backbone_dim)
        self.q1 = ChunkQ(h, chunk * action_dim, h, cfg.layers)
        self.q2 = ChunkQ(h, chunk * action_dim, h, cfg.layers)
        self.v = mlp(h, h, 1, cfg.layers)
        self.target_encoder = copy.deepcopy(self.encoder).requires_grad_(False)
        self.target_q1 = copy.deepcopy(self.q1).requires_grad_(False)
        self.target_q2 = copy.deepcopy(self.q2).requires_grad_(False)

    def features(self, state: torch.Tensor, images: dict | None, tokens: torch.Tensor | None) -> torch.Tensor:
        return self.encoder(state, images, tokens).mean(dim=1)

    def value(self, state: torch.Tensor, images: dict | None, tokens: torch.Tensor | None) -> torch.Tensor:
        return self.v(self.features(state, images, tokens)).squeeze(-1)

    def target_q(
        self, state: torch.Tensor, images: dict | None, tokens: torch.Tensor | None, actions: torch.Tensor
    ) -> torch.Tensor:
        """min of the two target Qs (no graph)."""
        with torch.no_grad():
            feat = self.target_encoder(state, images, tokens).mean(dim=1)
            return torch.minimum(self.target_q1(feat, actions), self.target_q2(feat, actions))

    def losses(
        self,
        state: torch.Tensor,
        images: dict | None,
        tokens: torch.Tensor | None,
        actions: torch.Tensor,
        chunk_return: torch.Tensor,
        bootstrap: torch.Tensor,
        next_state: torch.Tensor,
        next_images: dict | None,
        next_tokens: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample (q_loss, v_loss).

        Q target = Σ_{k<H} γ^k r_{t+k} + bootstrap · V(s_{t+H}), where bootstrap = γ^H, or 0 when the episode
        ends inside the chunk. V regresses the `expectile` of min target Q.
        """
        feat = self.features(state, images, tokens)
        with torch.no_grad():
            v_next = self.value(next_state, next_images, next_tokens)
            q_target = chunk_return + bootstrap * v_next
        tq = self.target_q(state, images, tokens, actions)
        v = self.v(feat).squeeze(-1)
        v_loss = expectile_loss(tq - v, self.cfg.expectile)
        q_loss = (self.q1(feat, actions) - q_target).pow(2) + (self.q2(feat, actions) - q_target).pow(2)
        return q_loss, v_loss

    @torch.no_grad()
    def advantage(
        self, state: torch.Tensor, images: dict | None, tokens: torch.Tensor | None, actions: torch.Tensor
    ) -> torch.Tensor:
        """A = min target Q(s, A) − V(s)."""
        return self.target_q(state, images, tokens, actions) - self.value(state, images, tokens)

    @torch.no_grad()
    def polyak_update(self) -> None:
        """θ' ← (1 − τ)·θ' + τ·θ for the target encoder and Qs."""
        tau = self.cfg.tau
        for online, target in (
            (self.encoder, self.target_encoder),
            (self.q1, self.target_q1),
            (self.q2, self.target_q2),
        ):
            for p, tp in zip(online.parameters(), target.parameters(), strict=True):
                tp.lerp_(p.detach(), tau)
