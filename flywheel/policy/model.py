"""The policy network: (optional frozen backbone) → observation encoder → flow-matching action expert."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from flywheel.policy.backbones import build_backbone
from flywheel.policy.config import ModelConfig
from flywheel.policy.encoders import ObservationEncoder
from flywheel.policy.expert import POSITIVE, Blocks, FlowMatchingExpert


@dataclass(frozen=True)
class PolicySpec:
    """Shapes the networks are built for (stored with the checkpoint)."""

    state_dim: int
    action_dim: int
    cameras: tuple[str, ...] = ()
    task: str = ""


class FlywheelPolicy(nn.Module):
    """Works in normalised state/action space; normalisation lives in `NormStats` outside the module."""

    def __init__(self, cfg: ModelConfig, spec: PolicySpec) -> None:
        super().__init__()
        self.cfg = cfg
        self.spec = spec
        enc = cfg.encoder
        self.backbone: nn.Module | None = None
        backbone_dim = None
        if enc.vision == "backbone":
            assert enc.backbone is not None  # validated by EncoderConfig
            self.backbone = build_backbone(enc.backbone)
            backbone_dim = int(self.backbone.out_dim)
        cameras = list(spec.cameras) if enc.vision != "none" else []
        if enc.vision != "none" and not cameras:
            raise ValueError(f"policy: encoder vision={enc.vision!r} needs at least one camera in the data")
        self.encoder = ObservationEncoder(enc, spec.state_dim, cameras, cfg.expert.dim, backbone_dim)
        self.expert = FlowMatchingExpert(cfg.expert, spec.action_dim)
        self.object_head: nn.Linear | None = None
        if enc.object_aux_weight > 0:
            from sim.env import object_xy_index

            assert self.encoder.cnn is not None  # validated by EncoderConfig
            width = len(cameras) * self.encoder.cnn.tokens * self.encoder.cnn.out_dim
            self.object_head = nn.Linear(width, len(object_xy_index(spec.task)))

    @property
    def backbone_frozen(self) -> bool:
        return self.backbone is not None and not any(p.requires_grad for p in self.backbone.parameters())

    def train(self, mode: bool = True) -> FlywheelPolicy:
        super().train(mode)
        if self.backbone_frozen:
            self.backbone.eval()  # type: ignore[union-attr]
        return self

    def backbone_tokens(self, images: dict[str, torch.Tensor] | None) -> torch.Tensor | None:
        """Backbone tokens for the configured cameras (no graph when the backbone is frozen)."""
        if self.backbone is None:
            return None
        if images is None:
            raise ValueError("policy: the backbone needs camera images")
        imgs = [images[c] for c in self.encoder.cameras]
        if self.backbone_frozen:
            with torch.no_grad():
                return self.backbone(imgs, self.spec.task).detach()
        return self.backbone(imgs, self.spec.task)

    def context(
        self,
        state: torch.Tensor,
        images: dict[str, torch.Tensor] | None,
        backbone_tokens: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Context tokens (B, N, dim) from a normalised state and images (B, 3, H, W)."""
        if backbone_tokens is None and self.backbone is not None:
            backbone_tokens = self.backbone_tokens(images)
        return self.encoder(state, images, backbone_tokens)

    @torch.no_grad()
    def sample_chunk(
        self,
        state: torch.Tensor,
        images: dict[str, torch.Tensor] | None,
        noise: torch.Tensor,
        num_steps: int | None = None,
        indicator: int = POSITIVE,
        cfg_beta: float | None = None,
        blocks: Blocks | None = None,
    ) -> torch.Tensor:
        """Normalised action chunk (B, H, A); `cfg_beta=None` samples conditionally without guidance.

        `blocks`: an inference form of the expert's transformer stack to sample with (see `packed_bf16`).
        """
        ctx = self.context(state, images)
        steps = num_steps or self.cfg.inference.num_steps
        return self.expert.sample(ctx, noise, steps, indicator=indicator, cfg_beta=cfg_beta, blocks=blocks)
