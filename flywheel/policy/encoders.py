"""Observation encoders: state MLP, a small CNN for pixels, a projection of frozen backbone tokens."""

from __future__ import annotations

import torch
from torch import nn

from flywheel.policy.config import EncoderConfig


def mlp(in_dim: int, hidden: int, out_dim: int, layers: int, dropout: float = 0.0) -> nn.Sequential:
    """`layers` hidden Linear+GELU blocks followed by a Linear to `out_dim`."""
    mods: list[nn.Module] = []
    d = in_dim
    for _ in range(layers):
        mods += [nn.Linear(d, hidden), nn.GELU()]
        if dropout:
            mods.append(nn.Dropout(dropout))
        d = hidden
    mods.append(nn.Linear(d, out_dim))
    return nn.Sequential(*mods)


class SmallCnn(nn.Module):
    """Four stride-2 conv blocks then adaptive pooling to a grid: (B, 3, H, W) uint8 range → (B, grid², C)."""

    def __init__(self, channels: int, grid: int) -> None:
        super().__init__()
        c = channels
        self.net = nn.Sequential(
            nn.Conv2d(3, c, 5, stride=2, padding=2), nn.GroupNorm(4, c), nn.GELU(),
            nn.Conv2d(c, c, 3, stride=2, padding=1), nn.GroupNorm(4, c), nn.GELU(),
            nn.Conv2d(c, 2 * c, 3, stride=2, padding=1), nn.GroupNorm(4, 2 * c), nn.GELU(),
            nn.Conv2d(2 * c, 2 * c, 3, stride=2, padding=1), nn.GroupNorm(4, 2 * c), nn.GELU(),
            nn.AdaptiveAvgPool2d(grid),
        )  # fmt: skip
        self.out_dim = 2 * c

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float() / 127.5 - 1.0
        return self.net(x).flatten(2).transpose(1, 2)


class ObservationEncoder(nn.Module):
    """Normalised state (+ camera images, or precomputed backbone tokens) → context tokens (B, N, dim)."""

    def __init__(
        self, cfg: EncoderConfig, state_dim: int, cameras: list[str], dim: int, backbone_dim: int | None
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.cameras = list(cameras)
        self.state_mlp = mlp(state_dim, cfg.hidden_dim, dim, cfg.state_layers, cfg.dropout)
        self.cnn: SmallCnn | None = None
        self.backbone_proj: nn.Module | None = None
        if cfg.vision == "cnn":
            self.cnn = SmallCnn(cfg.cnn_channels, cfg.cnn_grid)
            self.cnn_proj = nn.Linear(self.cnn.out_dim, dim)
            self.camera_embed = nn.Parameter(torch.zeros(len(self.cameras), 1, dim))
            self.cnn_pos = nn.Parameter(torch.randn(1, cfg.cnn_grid**2, dim) * 0.02)
        elif cfg.vision == "backbone":
            if backbone_dim is None:
                raise ValueError("encoder: vision='backbone' needs the backbone's output width")
            self.backbone_proj = nn.Sequential(nn.LayerNorm(backbone_dim), nn.Linear(backbone_dim, dim))

    def forward(
        self,
        state: torch.Tensor,
        images: dict[str, torch.Tensor] | None = None,
        backbone_tokens: torch.Tensor | None = None,
    ) -> torch.Tensor:
        tokens = [self.state_mlp(state).unsqueeze(1)]
        if self.cnn is not None:
            if images is None:
                raise ValueError(f"encoder: pixel observations needed for cameras {self.cameras}")
            for i, cam in enumerate(self.cameras):
                feat = self.cnn_proj(self.cnn(images[cam]))
                tokens.append(feat + self.cnn_pos + self.camera_embed[i])
        if self.backbone_proj is not None:
            if backbone_tokens is None:
                raise ValueError("encoder: backbone tokens needed")
            tokens.append(self.backbone_proj(backbone_tokens.float()))
        return torch.cat(tokens, dim=1)
