"""ONNX export: the whole inference path as one graph, checked against PyTorch (and the runner) with ONNX Runtime."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from flywheel.config import Settings
from flywheel.policy.expert import NEGATIVE
from flywheel.policy.loading import LoadedPolicy, load_policy
from flywheel.policy.onnx_export import check_parity, export_onnx, onnx_session, reference_actions
from flywheel.policy.runner import PolicyRunner
from flywheel.presets import train_config
from flywheel.registry import PolicyRegistry
from flywheel.store import EpisodeStore
from flywheel.train import TrainResult, run_training
from flywheel.train.synthetic import toy_episode

SMALL = {"expert": {"chunk": 6, "layers": 2}, "inference": {"execute_steps": 3, "num_steps": 5}}  # over tiny's model
STATE_DIM, ACTION_DIM, CHUNK = 6, 3, 6


def _train(out: Path, method: str = "recap", cfg_beta: float = 1.0, pixels: bool = False) -> TrainResult:
    model = {**SMALL, "inference": {**SMALL["inference"], "cfg_beta": cfg_beta}}
    if pixels:
        model["encoder"] = {"vision": "cnn", "cnn_channels": 4, "cnn_grid": 2}
    cams = ("top",) if pixels else ()
    eps = [toy_episode(i, length=10, images=cams, image_hw=(40, 56)) for i in range(2)]
    eps.append(toy_episode(7, ["policy"] * 5 + ["expert"] * 5, 10, images=cams, image_hw=(40, 56)))
    raw = {"method": method, "steps": 6, "critic_steps": 3, "batch_size": 8, "warmup_steps": 1}
    return run_training(train_config("tiny", {**raw, "model": model}), eps, out, progress=False)


@pytest.fixture(scope="module")
def state_policy(tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(tmp_path_factory.mktemp("recap"))
    finally:
        torch.set_num_threads(threads)


def _runner_noise(seed: int) -> np.ndarray:
    """The noise `PolicyRunner(seed=seed)` draws for its first chunk."""
    return torch.randn((1, CHUNK, ACTION_DIM), generator=torch.Generator().manual_seed(seed)).numpy()


def test_state_policy_parity(state_policy: TrainResult, tmp_path: Path, torch_one_thread: None) -> None:
    loaded = load_policy(state_policy.checkpoint_dir, expected_sha256=state_policy.sha256)
    assert loaded.meta["conditioned"]  # RECAP: sampled with the positive indicator
    path = export_onnx(loaded, tmp_path / "policy.onnx")
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    assert [i.name for i in model.graph.input] == ["state", "noise"]
    assert [o.name for o in model.graph.output] == ["actions"]

    report = check_parity(loaded, path, observations=8, tolerance=1e-4)
    assert report.passed and report.max_abs_diff < 1e-4, report

    # the runner is the judge: same observation and the runner's own noise → the same chunk
    session = onnx_session(path)
    rng = np.random.default_rng(3)
    for seed in range(4):
        state = rng.normal(size=(1, STATE_DIM)).astype(np.float32)
        expected = PolicyRunner(loaded, seed=seed).act_chunk({"state": state[0]})
        got = session.run(None, {"state": state, "noise": _runner_noise(seed)})[0][0]
        assert got.shape == (CHUNK, ACTION_DIM)
        assert np.abs(got - expected).max() < 1e-4
        # the comparison can fail: other noise, or the negative indicator, give other actions
        other = session.run(None, {"state": state, "noise": _runner_noise(seed + 100)})[0][0]
        assert np.abs(other - expected).max() > 1e-3
        negative = _sample(loaded, state, _runner_noise(seed), NEGATIVE)
        assert np.abs(negative - got).max() > 1e-3
    # an outlier state (50 standard deviations out) is clamped to ±state_clip in the graph, as in PyTorch
    assert math.isfinite(loaded.norm.state.clip)
    norm = loaded.norm.state
    outlier = (norm.shift + 50.0 * norm.scale)[None].astype(np.float32)
    expected = PolicyRunner(loaded, seed=0).act_chunk({"state": outlier[0]})
    got = session.run(None, {"state": outlier, "noise": _runner_noise(0)})[0][0]
    assert np.abs(got - expected).max() < 1e-4


def _sample(loaded: LoadedPolicy, state: np.ndarray, noise: np.ndarray, indicator: int) -> np.ndarray:
    s = loaded.norm.state.normalize(torch.from_numpy(state))
    chunk = loaded.policy.sample_chunk(s, None, torch.from_numpy(noise), 5, indicator=indicator)
    return loaded.norm.action.denormalize(chunk)[0].numpy()


@pytest.mark.parametrize("variant", ["guided", "pixels"])
def test_guided_and_pixel_policies_export(variant: str, tmp_path: Path, torch_one_thread: None) -> None:
    pixels = variant == "pixels"
    result = _train(tmp_path / "run", method="bc" if pixels else "recap", cfg_beta=2.0, pixels=pixels)
    loaded = load_policy(result.checkpoint_dir)
    assert PolicyRunner(loaded).cfg_beta == (None if pixels else 2.0)
    size = (40, 56)  # the CNN pools a 3x4 map to 2x2: uneven bins, exported as exact matrix products
    path = export_onnx(loaded, tmp_path / "p.onnx", image_size=size)
    report = check_parity(loaded, path, observations=4, image_size=size)
    assert report.max_abs_diff < 1e-4, report
    if pixels:
        inputs = {i.name: i for i in onnx.load(str(path)).graph.input}
        assert list(inputs) == ["state", "noise", "image_top"]
        state, noise, images = (np.zeros((1, STATE_DIM), np.float32), _runner_noise(0), {})
        image = np.random.default_rng(0).integers(0, 256, (1, *size, 3), dtype=np.uint8)
        images["top"] = image
        got = onnx_session(path).run(None, {"state": state, "noise": noise, "image_top": image})[0]
        np.testing.assert_allclose(got, reference_actions(loaded, state, noise, images), atol=1e-4)


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flywheel", "--home", str(home), "export", "onnx", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cli_exports_the_champion_and_names_a_bad_id(state_policy: TrainResult, tmp_path: Path) -> None:
    home = tmp_path / "home"
    store = EpisodeStore.open(Settings(home=home))
    registry = PolicyRegistry(store.db)
    version = registry.register_candidate(
        task="toy_reach",
        checkpoint_uri=str(state_policy.checkpoint_dir),
        sha256=state_policy.sha256,
        config={},
        data_fingerprint={},
        metrics={},
    )
    registry.promote(version.id, actor="test", reason="onnx test", force=True)
    store.db.dispose()
    out = tmp_path / "exported" / "champion.onnx"
    done = _cli(home, "--policy", "champion", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert out.is_file() and "max-abs-diff" in done.stdout and f"policy {version.id}" in done.stdout
    onnx.checker.check_model(str(out))
    missing = _cli(home, "--policy", "42", "--out", str(tmp_path / "x.onnx"))
    assert missing.returncode == 2 and "policy version 42 does not exist" in missing.stderr, missing.stderr
    assert not (tmp_path / "x.onnx").exists()
