"""Observation encoders: state MLP, a small CNN for pixels (grid tokens or spatial-softmax keypoints), a projection
of frozen backbone tokens. Training's image augmentation is applied to the batch (`flywheel.train.augment`)."""

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


class SpatialSoftmax(nn.Module):
    """Per channel, the softmax-weighted mean image position (x, y in [-1, 1]): (B, C, h, w) → (B, C, 2)."""

    def __init__(self) -> None:
        super().__init__()
        self.temperature = nn.Parameter(torch.ones(1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        _, _, h, w = features.shape
        attention = torch.softmax(features.flatten(2) / self.temperature, dim=-1)  # (B, C, h*w)
        ys = torch.linspace(-1.0, 1.0, h, device=features.device, dtype=features.dtype)
        xs = torch.linspace(-1.0, 1.0, w, device=features.device, dtype=features.dtype)
        grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1).reshape(h * w, 2)
        return attention @ grid


class SmallCnn(nn.Module):
    """Four conv blocks (stride 2; the last one stride 1 when `downsample` is 8), then either adaptive pooling to a
    grid, (B, 3, H, W) uint8 range → (B, grid², 2C), or spatial-softmax keypoints flattened into one feature vector,
    → (B, 1, 4C)."""

    def __init__(self, channels: int, grid: int, pool: str = "avg", downsample: int = 16) -> None:
        super().__init__()
        if downsample not in (8, 16):
            raise ValueError(f"downsample must be 8 or 16, got {downsample}")
        c = channels
        last_stride = 2 if downsample == 16 else 1
        self.net = nn.Sequential(
            nn.Conv2d(3, c, 5, stride=2, padding=2), nn.GroupNorm(4, c), nn.GELU(),
            nn.Conv2d(c, c, 3, stride=2, padding=1), nn.GroupNorm(4, c), nn.GELU(),
            nn.Conv2d(c, 2 * c, 3, stride=2, padding=1), nn.GroupNorm(4, 2 * c), nn.GELU(),
            nn.Conv2d(2 * c, 2 * c, 3, stride=last_stride, padding=1), nn.GroupNorm(4, 2 * c), nn.GELU(),
        )  # fmt: skip
        self.keypoints = SpatialSoftmax() if pool == "spatial_softmax" else None
        self.pool = None if self.keypoints is not None else nn.AdaptiveAvgPool2d(grid)
        self.out_dim = 4 * c if self.keypoints is not None else 2 * c
        self.tokens = 1 if self.keypoints is not None else grid**2

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.net(images.float() / 127.5 - 1.0)
        if self.keypoints is not None:
            return self.keypoints(x).flatten(1).unsqueeze(1)
        assert self.pool is not None
        return self.pool(x).flatten(2).transpose(1, 2)


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
            self.cnn = SmallCnn(cfg.cnn_channels, cfg.cnn_grid, cfg.cnn_pool, cfg.cnn_downsample)
            self.cnn_proj = nn.Linear(self.cnn.out_dim, dim)
            self.camera_embed = nn.Parameter(torch.zeros(len(self.cameras), 1, dim))
            self.cnn_pos = nn.Parameter(torch.randn(1, self.cnn.tokens, dim) * 0.02)
        elif cfg.vision == "backbone":
            if backbone_dim is None:
                raise ValueError("encoder: vision='backbone' needs the backbone's output width")
            self.backbone_proj = nn.Sequential(nn.LayerNorm(backbone_dim), nn.Linear(backbone_dim, dim))

    def camera_features(self, images: dict[str, torch.Tensor] | None) -> torch.Tensor:
        """The CNN's features of every camera, (B, cameras, tokens, out_dim)."""
        if self.cnn is None:
            raise ValueError("encoder: camera features need vision='cnn'")
        if images is None:
            raise ValueError(f"encoder: pixel observations needed for cameras {self.cameras}")
        return torch.stack([self.cnn(images[cam]) for cam in self.cameras], dim=1)

    def forward(
        self,
        state: torch.Tensor,
        images: dict[str, torch.Tensor] | None = None,
        backbone_tokens: torch.Tensor | None = None,
        features: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Context tokens; `features` (from `camera_features`) spares computing the CNN again."""
        tokens = [self.state_mlp(state).unsqueeze(1)]
        if self.cnn is not None:
            features = self.camera_features(images) if features is None else features
            for i in range(len(self.cameras)):
                tokens.append(self.cnn_proj(features[:, i]) + self.cnn_pos + self.camera_embed[i])
        if self.backbone_proj is not None:
            if backbone_tokens is None:
                raise ValueError("encoder: backbone tokens needed")
            tokens.append(self.backbone_proj(backbone_tokens.float()))
        return torch.cat(tokens, dim=1)
