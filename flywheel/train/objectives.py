"""Loss modules whose `forward` computes per-sample losses, so DDP/FSDP hooks see one forward call."""

from __future__ import annotations

import torch
from torch import nn

from flywheel.policy.critic import IqlCritic
from flywheel.policy.model import FlywheelPolicy
from flywheel.train.dataset import Batch


class PolicyObjective(nn.Module):
    """Flow-matching loss per sample: mean over the valid steps of the chunk."""

    def __init__(self, policy: FlywheelPolicy) -> None:
        super().__init__()
        self.policy = policy

    def forward(self, batch: Batch, indicator: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        ctx = self.policy.context(batch.state, batch.images)
        per_step = self.policy.expert.flow_loss(batch.actions, ctx, indicator, noise, t)
        mask = batch.step_mask
        return (per_step * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


class CriticObjective(nn.Module):
    """IQL (q_loss, v_loss) per sample; backbone tokens come from the policy's frozen backbone."""

    def __init__(self, critic: IqlCritic, policy: FlywheelPolicy) -> None:
        super().__init__()
        self.critic = critic
        self._policy = (policy,)  # not a submodule: its parameters are not the critic's

    def tokens(self, images: dict | None) -> torch.Tensor | None:
        policy = self._policy[0]
        if policy.backbone is None:
            return None
        with torch.no_grad():
            return policy.backbone_tokens(images).detach()

    def forward(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        return self.critic.losses(
            batch.state,
            batch.images,
            self.tokens(batch.images),
            batch.actions,
            batch.chunk_return,
            batch.bootstrap,
            batch.next_state,
            batch.next_images,
            self.tokens(batch.next_images),
        )
