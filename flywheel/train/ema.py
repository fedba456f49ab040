"""An exponential moving average of a policy's weights, the checkpoint's policy when `ema_decay` is set.

A short fine-tune ends wherever its last noisy minibatches left it; the average over its last few hundred steps
is a smoother estimate of the same policy (the weight averaging of diffusion and flow-matching policies).
"""

from __future__ import annotations

import torch
from torch import nn


class WeightAverage:
    """`shadow ← decay · shadow + (1 − decay) · weights` after every optimiser step, over every floating-point
    parameter and buffer of the module's state dict; integer buffers are copied."""

    def __init__(self, decay: float, shadow: dict[str, torch.Tensor]) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema decay {decay}: expected 0 < decay < 1")
        self.decay = decay
        self.shadow = shadow

    @classmethod
    def of(cls, module: nn.Module, decay: float) -> WeightAverage:
        """An average that starts at the module's current weights."""
        return cls(decay, {name: value.detach().clone() for name, value in module.state_dict().items()})

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        for name, value in module.state_dict().items():
            shadow = self.shadow[name]
            if shadow.is_floating_point():
                shadow.lerp_(value.detach().to(shadow.dtype), 1.0 - self.decay)
            else:
                shadow.copy_(value)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.shadow
