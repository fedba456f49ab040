"""Training reads camera frames memory-mapped from the store's files, verified once, gathered batch by batch."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from flywheel.config import Settings
from flywheel.errors import EpisodeFileError
from flywheel.policy.input_spec import InputSpec
from flywheel.policy.io import PolicyIO
from flywheel.policy.normalize import NormStats
from flywheel.policy.recap import RewardConfig
from flywheel.store import EpisodeStore, NewEpisode
from flywheel.train.data import TrainingEpisode, load_training_episodes
from flywheel.train.dataset import build_frame_table
from flywheel.train.synthetic import toy_episode


def _is_memory_mapped(array: np.ndarray) -> bool:
    base = array
    while isinstance(base, np.ndarray) and not isinstance(base, np.memmap):
        base = base.base
    return isinstance(base, np.memmap)


@pytest.fixture()
def store(tmp_path: Path) -> EpisodeStore:
    store = EpisodeStore.open(Settings(home=tmp_path / "home"))
    for seed in range(3):
        _, frames = toy_episode(seed, length=7 + seed, images=("top",), image_hw=(8, 12))
        store.add(NewEpisode("toy_reach", frames, env_seed=seed, success=True))
    yield store
    store.db.dispose()


def test_training_frames_are_memory_mapped_and_gathered_by_index(store: EpisodeStore) -> None:
    episodes = load_training_episodes(store, "toy_reach")
    assert all(_is_memory_mapped(e.frames.images["top"]) for e in episodes)
    spec = InputSpec.whole_state("toy_reach", 6, 3, cameras=("top",))
    norm = NormStats.fit([e.frames.state for e in episodes], [e.frames.action for e in episodes], "mean_std")
    table = build_frame_table(episodes, PolicyIO(spec, norm), chunk=4, gamma=0.99, reward=RewardConfig())
    everything = np.concatenate([store.read_frames(e.meta.id).images["top"] for e in episodes])
    idx = torch.tensor([0, 6, 7, 16, 23, 1])  # across all three episodes, first and last frames included
    batch = table.batch(idx, torch.device("cpu"))
    assert batch.images is not None
    expected = torch.from_numpy(everything[idx.numpy()]).permute(0, 3, 1, 2).float()
    assert torch.equal(batch.images["top"], expected)


def test_a_corrupted_episode_file_is_refused_before_training(store: EpisodeStore) -> None:
    record = store.list_episodes()[0]
    path = store.files.path_for(record.file_uri, episode_id=record.id)
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.chmod(0o600)
    path.write_bytes(bytes(data))
    with pytest.raises(EpisodeFileError, match=f"episode {record.id} .* fails its sha256"):
        load_training_episodes(store, "toy_reach")


def test_failed_corrections_can_be_left_to_the_critic() -> None:
    """A takeover whose stage never rose is forced positive by default, and left to the advantage when asked."""
    controllers = ["policy"] * 4 + ["expert"] * 4
    meta, frames = toy_episode(5, controllers, length=8)
    frames.reward[:] = [0, 1, 1, 1, 1, 1, 1, 1]  # the expert's frames never pass stage 1: it repaired nothing
    episodes = [TrainingEpisode(meta, frames)]
    spec = InputSpec.whole_state("toy_reach", 6, 3)
    norm = NormStats.fit([frames.state], [frames.action], "mean_std")
    io = PolicyIO(spec, norm)
    default = build_frame_table(episodes, io, chunk=4, gamma=0.99, reward=RewardConfig())
    assert default.forced_positive.tolist() == [False] * 4 + [True] * 4
    left = build_frame_table(
        episodes, io, chunk=4, gamma=0.99, reward=RewardConfig(), failed_corrections_positive=False
    )
    assert not left.forced_positive.any()


def test_the_pre_takeover_window_can_stop_at_the_last_progress() -> None:
    """The frame table marks the policy's frames before a takeover, all of them or only those of the stall."""
    controllers = ["policy"] * 6 + ["expert"] * 2
    meta, frames = toy_episode(5, controllers, length=8)
    frames.reward[:] = [0, 0, 1, 1, 1, 1, 2, 2]  # the policy's last progress is at frame 2
    episodes = [TrainingEpisode(meta, frames)]
    spec = InputSpec.whole_state("toy_reach", 6, 3)
    io = PolicyIO(spec, NormStats.fit([frames.state], [frames.action], "mean_std"))
    whole = build_frame_table(episodes, io, chunk=4, gamma=0.99, reward=RewardConfig(), pre_takeover_steps=5)
    assert whole.forced_negative.tolist() == [False] + [True] * 5 + [False] * 2
    stall = build_frame_table(
        episodes, io, chunk=4, gamma=0.99, reward=RewardConfig(), pre_takeover_steps=5, pre_takeover_since_progress=True
    )
    assert stall.forced_negative.tolist() == [False] * 3 + [True] * 3 + [False] * 2


def test_a_failed_episode_end_bootstraps_only_when_called_a_truncation() -> None:
    """With `failed_episode_end: truncated`, a failed episode's last frames bootstrap from it; a success stays
    terminal."""
    episodes = []
    for seed, success in ((1, True), (2, False)):
        meta, frames = toy_episode(seed, length=6)
        episodes.append(TrainingEpisode(replace(meta, success=success), frames))
    spec = InputSpec.whole_state("toy_reach", 6, 3)
    io = PolicyIO(
        spec, NormStats.fit([e.frames.state for e in episodes], [e.frames.action for e in episodes], "mean_std")
    )
    terminal = build_frame_table(episodes, io, chunk=4, gamma=0.5, reward=RewardConfig())
    assert terminal.bootstrap.tolist() == [0.0625, 0.0625] + [0.0] * 4 + [0.0625, 0.0625] + [0.0] * 4
    truncated = build_frame_table(episodes, io, chunk=4, gamma=0.5, reward=RewardConfig(failed_episode_end="truncated"))
    assert truncated.bootstrap.tolist() == [0.0625, 0.0625] + [0.0] * 4 + [0.0625] * 3 + [0.125, 0.25, 0.5]
    assert truncated.next_idx[-4:].tolist() == [11] * 4


def test_chunks_can_stop_at_a_change_of_control() -> None:
    """By default a frame's chunk runs across a takeover and a hand-back; with `mask_control_changes` every step
    from the first change of controller on is masked, and the episode's end stays masked either way."""
    controllers = ["policy"] * 3 + ["expert"] * 2 + ["policy"] * 3
    meta, frames = toy_episode(7, controllers, length=8)
    episodes = [TrainingEpisode(meta, frames)]
    spec = InputSpec.whole_state("toy_reach", 6, 3)
    io = PolicyIO(spec, NormStats.fit([frames.state], [frames.action], "mean_std"))
    across = build_frame_table(episodes, io, chunk=4, gamma=0.99, reward=RewardConfig())
    assert across.step_mask.sum(dim=1).tolist() == [4.0] * 5 + [3.0, 2.0, 1.0]
    own = build_frame_table(episodes, io, chunk=4, gamma=0.99, reward=RewardConfig(), mask_control_changes=True)
    assert own.step_mask.tolist() == [
        [1, 1, 1, 0],  # policy, then the expert's takeover at frame 3
        [1, 1, 0, 0],
        [1, 0, 0, 0],  # the policy's return at frame 5 stays masked: it comes after the first change
        [1, 1, 0, 0],  # the expert, then the hand-back at frame 5
        [1, 0, 0, 0],
        [1, 1, 1, 0],  # the policy to the episode's end
        [1, 1, 0, 0],
        [1, 0, 0, 0],
    ]
    assert torch.equal(own.action, across.action) and torch.equal(own.chunk_idx, across.chunk_idx)
