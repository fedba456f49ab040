"""DrQ's random-shift image augmentation for training batches.

The offsets are drawn from the training step's generator (see `flywheel.train.trainer`), like every other random
draw of a step, so a run resumed from a checkpoint augments exactly as an uninterrupted run would.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from flywheel.train.dataset import Batch


def draw_shift_offsets(generator: torch.Generator, batch_size: int, cameras: int, pad: int) -> torch.Tensor:
    """(B, 2·cameras, 2) integer offsets in [0, 2·pad]: per sample, one (row, col) for each camera's image and
    one for each camera's next image."""
    return torch.randint(0, 2 * pad + 1, (batch_size, 2 * cameras, 2), generator=generator)


def random_shift(images: torch.Tensor, offsets: torch.Tensor, pad: int) -> torch.Tensor:
    """Pad each image by `pad` (edge pixels repeated) and crop it back at its offset (B, 2): (B, C, H, W) → same."""
    _, _, h, w = images.shape
    padded = F.pad(images, (pad, pad, pad, pad), mode="replicate")
    crops = [padded[i, :, r : r + h, c : c + w] for i, (r, c) in enumerate(offsets.tolist())]
    return torch.stack(crops)


def shift_batch(batch: Batch, offsets: torch.Tensor, pad: int) -> Batch:
    """`batch` with every camera's images and next images shifted by `offsets` from `draw_shift_offsets`."""
    if batch.images is None:
        return batch
    cameras = sorted(batch.images)

    def shifted(images: dict[str, torch.Tensor] | None, first: int) -> dict[str, torch.Tensor] | None:
        if images is None:
            return None
        return {cam: random_shift(images[cam], offsets[:, first + i], pad) for i, cam in enumerate(cameras)}

    return dataclasses.replace(
        batch, images=shifted(batch.images, 0), next_images=shifted(batch.next_images, len(cameras))
    )
