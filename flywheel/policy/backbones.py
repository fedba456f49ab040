"""Frozen pretrained vision(-language) backbones from `transformers`: SigLIP vision tower, PaliGemma prefix.

Weights come from a local directory (`from_pretrained(path, local_files_only=True)`) or a random init from a
config dict (tests, shape benchmarks). Nothing here reaches the network.
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from flywheel.errors import ConfigError
from flywheel.policy.config import BackboneConfig


class Backbone(Protocol):
    """Images (B, C, H, W) uint8-range floats per camera + task text → tokens (B, N, out_dim)."""

    out_dim: int

    def __call__(self, images: list[torch.Tensor], task: str) -> torch.Tensor: ...


def _prepare(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8-range (B, 3, H, W) → SigLIP input: resized to size×size, scaled to [-1, 1]."""
    x = images.float() / 255.0
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x * 2.0 - 1.0


class SiglipBackbone(nn.Module):
    """SigLIP vision tower; the patch tokens of every camera, concatenated."""

    def __init__(self, cfg: BackboneConfig) -> None:
        super().__init__()
        from transformers import SiglipVisionConfig, SiglipVisionModel

        if cfg.path is not None:
            self.model = SiglipVisionModel.from_pretrained(cfg.path, local_files_only=True)
        else:
            self.model = SiglipVisionModel(SiglipVisionConfig(**(cfg.config or {})))
        vc = self.model.config
        self.image_size = cfg.image_size or int(vc.image_size)
        self.out_dim = int(vc.hidden_size)

    def forward(self, images: list[torch.Tensor], task: str) -> torch.Tensor:
        del task  # vision only
        dtype = next(self.model.parameters()).dtype
        tokens = [self.model(pixel_values=_prepare(img, self.image_size).to(dtype)).last_hidden_state for img in images]
        return torch.cat(tokens, dim=1)


class PaliGemmaBackbone(nn.Module):
    """PaliGemma prefix: projected image tokens of every camera followed by the task text, through Gemma.

    Returns the language model's last hidden states over the whole prefix. The text is tokenised with the
    tokenizer stored next to the weights when there is one, otherwise by a byte-level fallback (random-init
    configs have no tokenizer; the backbone is frozen so only consistency matters).
    """

    def __init__(self, cfg: BackboneConfig) -> None:
        super().__init__()
        from transformers import PaliGemmaConfig, PaliGemmaForConditionalGeneration

        self.tokenizer = None
        if cfg.path is not None:
            full = PaliGemmaForConditionalGeneration.from_pretrained(cfg.path, local_files_only=True)
            self.tokenizer = _local_tokenizer(cfg.path)
        else:
            full = PaliGemmaForConditionalGeneration(PaliGemmaConfig(**(cfg.config or {})))
        self.model = full.model  # vision tower + projector + Gemma; the (tied) LM head is not needed
        pc = self.model.config
        self.image_size = cfg.image_size or int(pc.vision_config.image_size)
        self.out_dim = int(pc.text_config.hidden_size)
        self.vocab_size = int(pc.text_config.vocab_size)
        self.max_text_tokens = cfg.max_text_tokens
        self._text_cache: dict[str, list[int]] = {}

    def _token_ids(self, task: str) -> list[int]:
        if task not in self._text_cache:
            text = task.replace("_", " ")
            if self.tokenizer is not None:
                ids = self.tokenizer(text, add_special_tokens=True)["input_ids"]
            else:
                # byte-level fallback; ids ≥ 4 avoid the usual pad/bos/eos/unk slots
                ids = [4 + (b % max(1, self.vocab_size - 4)) for b in text.encode("utf-8")]
            self._text_cache[task] = list(ids)[: self.max_text_tokens]
        return self._text_cache[task]

    def forward(self, images: list[torch.Tensor], task: str) -> torch.Tensor:
        dtype = next(self.model.parameters()).dtype
        batch = images[0].shape[0]
        device = images[0].device
        feats = [self.model.get_image_features(_prepare(img, self.image_size).to(dtype)).to(dtype) for img in images]
        ids = torch.tensor(self._token_ids(task), dtype=torch.long, device=device).expand(batch, -1)
        text = self.model.get_input_embeddings()(ids).to(dtype)
        embeds = torch.cat([*feats, text], dim=1)
        mask = torch.ones(embeds.shape[:2], dtype=torch.long, device=device)
        out = self.model.language_model(inputs_embeds=embeds, attention_mask=mask)
        return out.last_hidden_state


def _local_tokenizer(path: str):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError):
        return None


def build_backbone(cfg: BackboneConfig) -> nn.Module:
    """Build (and freeze, when configured) the backbone named by `cfg.kind`."""
    try:
        module: nn.Module = SiglipBackbone(cfg) if cfg.kind == "siglip" else PaliGemmaBackbone(cfg)
    except (OSError, TypeError, ValueError) as exc:
        raise ConfigError(f"backbone {cfg.kind}: cannot build from {cfg.path or 'config'}: {exc}") from exc
    if cfg.freeze:
        module.requires_grad_(False)
        module.eval()
    return module
