"""The pixels encoder's CNN: its feature-map resolution and config."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from flywheel.policy.config import EncoderConfig
from flywheel.policy.encoders import SmallCnn


@pytest.mark.parametrize(("downsample", "feature_map"), [(16, (6, 8)), (8, (12, 16))])
def test_cnn_downsample_sets_the_keypoint_map(downsample: int, feature_map: tuple[int, int]) -> None:
    cnn = SmallCnn(channels=8, grid=2, pool="spatial_softmax", downsample=downsample)
    images = torch.randint(0, 256, (2, 3, 96, 128), dtype=torch.uint8)
    assert tuple(cnn.net(images.float()).shape[-2:]) == feature_map
    assert cnn(images).shape == (2, 1, cnn.out_dim) and cnn.out_dim == 32


def test_cnn_downsample_is_validated() -> None:
    with pytest.raises(ValidationError, match="cnn_downsample"):
        EncoderConfig(vision="cnn", cnn_downsample=4)
