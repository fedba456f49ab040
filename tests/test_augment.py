"""Random-shift augmentation: the crop it takes, the batch it changes, and its draws replayed on resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from flywheel.policy.checkpoint import read_tensors
from flywheel.presets import train_config
from flywheel.train import run_training
from flywheel.train.augment import draw_shift_offsets, random_shift, shift_batch
from flywheel.train.dataset import Batch
from tests.test_policy_inputs import PIXELS_MODEL, _demos

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _images(b: int = 2) -> torch.Tensor:
    return torch.arange(b * 3 * 6 * 8, dtype=torch.float32).reshape(b, 3, 6, 8)


def test_the_centre_offset_is_the_identity_and_others_shift_with_edges_repeated() -> None:
    images = _images()
    assert torch.equal(random_shift(images, torch.full((2, 2), 2), pad=2), images)
    down_right = random_shift(images, torch.tensor([[0, 0], [4, 4]]), pad=2)
    # offset 0: content moves down/right by pad, the first rows/cols repeat the edge
    assert torch.equal(down_right[0, :, 2:, 2:], images[0, :, :-2, :-2])
    assert torch.equal(down_right[0, :, 0], down_right[0, :, 2])
    # offset 2·pad: content moves up/left
    assert torch.equal(down_right[1, :, :-2, :-2], images[1, :, 2:, 2:])


def test_shift_batch_shifts_images_and_next_images_with_their_own_offsets() -> None:
    images, nxt = _images(), _images() + 1000
    batch = Batch(
        state=torch.zeros(2, 1),
        images={"top": images},
        actions=torch.zeros(2, 1, 1),
        step_mask=torch.ones(2, 1),
        chunk_return=torch.zeros(2),
        bootstrap=torch.zeros(2),
        next_state=torch.zeros(2, 1),
        next_images={"top": nxt},
    )
    offsets = torch.tensor([[[2, 2], [0, 0]], [[0, 0], [2, 2]]])  # (B, 2 * cameras, 2)
    out = shift_batch(batch, offsets, pad=2)
    assert torch.equal(out.images["top"][0], images[0]) and not torch.equal(out.images["top"][1], images[1])
    assert not torch.equal(out.next_images["top"][0], nxt[0]) and torch.equal(out.next_images["top"][1], nxt[1])
    assert out.state is batch.state


def test_offsets_come_from_the_generator_alone() -> None:
    a = draw_shift_offsets(torch.Generator().manual_seed(3), 5, 2, 4)
    torch.manual_seed(0)
    b = draw_shift_offsets(torch.Generator().manual_seed(3), 5, 2, 4)
    assert a.shape == (5, 4, 2) and torch.equal(a, b) and int(a.min()) >= 0 and int(a.max()) <= 8


@pytest.mark.parametrize("cpu_bf16", [False, True])
def test_an_augmented_pixels_run_resumed_mid_way_matches_an_uninterrupted_one(tmp_path: Path, cpu_bf16: bool) -> None:
    """The shift offsets are drawn from the step's generator: a resumed run sees the same crops, in fp32 and under
    CPU bf16 autocast."""
    episodes = _demos("pixels", n=2, steps=10)
    cfg = train_config(
        "tiny",
        {"method": "recap", "steps": 6, "critic_steps": 4, "checkpoint_every": 3, "batch_size": 4,
         "model": PIXELS_MODEL, "cpu_bf16": cpu_bf16},
    )  # fmt: skip
    full = run_training(cfg, episodes, tmp_path / "full", progress=False)
    part = run_training(cfg, episodes, tmp_path / "part", progress=False, should_stop=lambda n: n >= 7)
    assert not part.completed
    torch.manual_seed(12345)  # the global generator must not matter
    resumed = run_training(cfg, episodes, tmp_path / "part", progress=False)
    assert resumed.completed and all(torch.isfinite(torch.tensor(v)) for v in resumed.metrics.values())
    for name in ("policy", "critic"):
        a, b = read_tensors(full.checkpoint_dir, name), read_tensors(resumed.checkpoint_dir, name)
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=f"{name}.{key}")
