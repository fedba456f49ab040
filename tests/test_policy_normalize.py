"""Normalisation: robust statistics, state clamping, what they are fitted on, and checkpoint round trips."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from flywheel.policy.input_spec import InputSpec, StateEntry
from flywheel.policy.normalize import Normalizer, NormStats
from flywheel.train.data import TrainingEpisode
from flywheel.train.norm_fit import fit_norm_stats
from flywheel.train.synthetic import toy_episode


def test_quantile_scale_ignores_a_few_extreme_frames() -> None:
    rng = np.random.default_rng(0)
    core = rng.uniform(-1.0, 1.0, (2000, 1))
    flung = np.full((10, 1), 500.0)  # 0.5% of frames far away
    robust = Normalizer.fit([core, flung], "quantile")
    plain = Normalizer.fit([core, flung], "mean_std")
    assert robust.scale[0] == pytest.approx(1.0, abs=0.05)
    assert robust.shift[0] == pytest.approx(0.0, abs=0.05)
    assert plain.scale[0] > 30.0  # what the outliers do to mean/std
    y = robust.normalize(torch.tensor([[-0.98], [0.98]], dtype=torch.float32))
    assert torch.allclose(y, torch.tensor([[-1.0], [1.0]]), atol=0.06)


def test_state_clip_bounds_normalised_states_and_round_trips() -> None:
    stats = NormStats.fit([np.array([[0.0], [2.0]])], [np.array([[0.0], [1.0]])], "mean_std", state_clip=3.0)
    y = stats.state.normalize(torch.tensor([[1000.0], [-1000.0], [1.5]]))
    assert y[:2, 0].tolist() == [3.0, -3.0] and y[2, 0].item() == pytest.approx(0.5)
    assert stats.action.denormalize(stats.action.normalize(torch.tensor([[7.0]])))[0, 0].item() == pytest.approx(7.0)
    back = NormStats.from_tensors(stats.to_tensors())
    assert back.state.clip == 3.0 and math.isinf(back.action.clip)
    legacy = {k: v for k, v in stats.to_tensors().items() if k != "state.clip"}
    assert math.isinf(NormStats.from_tensors(legacy).state.clip)


def test_bad_fit_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown normalisation"):
        Normalizer.fit([np.zeros((3, 1))], "zscore")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="zero frames"):
        Normalizer.fit([np.zeros((0, 2))], "mean_std")
    with pytest.raises(ValueError, match="clip"):
        Normalizer.fit([np.zeros((3, 1))], "mean_std", clip=0.0)


WHOLE = InputSpec.whole_state("toy_reach", state_dim=6, action_dim=3)


def _episode(seed: int, controllers: list[str] | str) -> TrainingEpisode:
    return TrainingEpisode(*toy_episode(seed, controllers, length=20))


def _mean(arrays: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(arrays).astype(np.float64).mean(0)


def test_statistics_come_from_demos_then_controlled_frames_then_all() -> None:
    mixed = _episode(1, ["policy"] * 12 + ["human"] * 8)
    demo = _episode(2, "expert")
    auto = _episode(3, "policy")
    data = [mixed, demo, auto]

    by_demos = fit_norm_stats(data, "mean_std", "demos", state_clip=5.0, spec=WHOLE)
    np.testing.assert_allclose(by_demos.action.shift, _mean([demo.frames.action]), atol=1e-6)
    np.testing.assert_allclose(by_demos.state.shift, _mean([demo.frames.state]), atol=1e-6)
    assert by_demos.state.clip == 5.0

    controlled = [mixed.frames.action[12:], demo.frames.action]
    by_control = fit_norm_stats(data, "mean_std", "controlled", state_clip=5.0, spec=WHOLE)
    np.testing.assert_allclose(by_control.action.shift, _mean(controlled), atol=1e-6)
    no_demos = fit_norm_stats([mixed, auto], "mean_std", "demos", state_clip=5.0, spec=WHOLE)
    np.testing.assert_allclose(no_demos.action.shift, _mean([mixed.frames.action[12:]]), atol=1e-6)

    everything = fit_norm_stats(data, "mean_std", "all", state_clip=5.0, spec=WHOLE)
    np.testing.assert_allclose(everything.action.shift, _mean([e.frames.action for e in data]), atol=1e-6)
    only_policy = fit_norm_stats([auto], "mean_std", "demos", state_clip=5.0, spec=WHOLE)
    np.testing.assert_allclose(only_policy.action.shift, _mean([auto.frames.action]), atol=1e-6)


def test_state_statistics_cover_only_the_entries_the_policy_reads() -> None:
    demo = _episode(2, "expert")
    goal_only = InputSpec("toy_reach", 6, (StateEntry("goal", 2, 4),), action_dim=3, privileged=False)
    stats = fit_norm_stats([demo], "mean_std", "demos", state_clip=5.0, spec=goal_only)
    assert stats.state.shift.shape == (2,)
    np.testing.assert_allclose(stats.state.shift, _mean([demo.frames.state[:, 2:4]]), atol=1e-6)
