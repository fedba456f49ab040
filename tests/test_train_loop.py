"""Trainer end to end on the toy task: overfit, indicator effect, resume, NaN, checkpoint integrity, runner."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sqlalchemy import update

from flywheel.config import Settings
from flywheel.errors import StoreError
from flywheel.policy.checkpoint import CheckpointError, read_tensors
from flywheel.policy.expert import NEGATIVE, POSITIVE
from flywheel.policy.input_spec import InputSpecError
from flywheel.policy.runner import PolicyRunner
from flywheel.presets import train_config
from flywheel.store import EpisodeStore, NewEpisode
from flywheel.store.models import Episode
from flywheel.train import run_training
from flywheel.train.data import data_fingerprint, usable_episodes
from flywheel.train.ema import WeightAverage
from flywheel.train.errors import ResumeMismatchError, TrainingDivergedError
from flywheel.train.synthetic import expert_action, toy_episode

# the tiny preset, wide enough to learn the toy task
SMALL = {
    "encoder": {"hidden_dim": 64},
    "expert": {"chunk": 4, "dim": 64, "layers": 2, "heads": 4},
    "critic": {"hidden_dim": 64},
    "inference": {"execute_steps": 2, "num_steps": 8},
}


def _cfg(**kw: object) -> object:
    base = {"batch_size": 32, "log_every": 10, "warmup_steps": 10, "checkpoint_every": 500, "model": SMALL}
    return train_config("tiny", {**base, **kw})


def test_overfits_tiny_dataset(tmp_path: Path) -> None:
    eps = [toy_episode(i, length=12) for i in range(2)]
    cfg = _cfg(method="bc", steps=400, lr=2e-3, min_lr_ratio=0.05)
    res = run_training(cfg, eps, tmp_path / "run", progress=False)
    assert res.completed and res.metrics["train/policy_loss"] < 0.1
    runner = PolicyRunner.load(res.checkpoint_dir, expected_sha256=res.sha256)
    errs = []
    for _, frames in eps:
        for t in range(0, 8):
            chunk = runner.act_chunk({"state": frames.state[t]})
            errs.append(np.abs(chunk[:, :2] - frames.action[t : t + 4, :2]).max())
    assert float(np.median(errs)) < 0.03, errs
    assert res.data_fingerprint["counts_by_tag"] == {"demo": 2}


def test_the_training_progress_line_names_the_phase_under_way(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLYWHEEL_PROGRESS_INTERVAL_S", "1e-9")  # a plain line per step: the output is no terminal
    eps = [toy_episode(i, length=12) for i in range(2)]
    run_training(_cfg(method="recap", steps=3, critic_steps=2, wandb=False), eps, tmp_path / "run", progress=True)
    captured = capsys.readouterr()
    printed = (captured.out + captured.err).splitlines()
    lines = [line.split(",")[0] for line in printed if line.startswith("training (")]
    # one count over both phases (2 critic + 3 policy steps), each line naming the phase it was in
    assert lines[:2] == ["training (critic): 1/5 (20%)", "training (critic): 2/5 (40%)"]
    assert lines[-1] == "training (policy): 5/5 (100%)"


def test_indicator_changes_sampled_actions(tmp_path: Path) -> None:
    """Policy frames move away from the goal (low advantage); expert frames move toward it (forced positive)."""
    eps = [toy_episode(i, length=16) for i in range(12)]
    eps += [toy_episode(100 + i, "policy", length=16) for i in range(12)]
    cfg = _cfg(method="recap", steps=500, critic_steps=300, lr=2e-3, indicator_dropout=0.2)
    res = run_training(cfg, eps, tmp_path / "run", progress=False)
    assert 0.4 < res.metrics["train/positive_fraction"] < 0.9
    runner = PolicyRunner.load(res.checkpoint_dir)
    pol = runner.loaded.policy
    states = torch.from_numpy(np.stack([f.state[0] for _, f in eps[:12]]))
    s = runner.loaded.norm.state.normalize(states)
    noise = torch.randn((12, 4, 3), generator=torch.Generator().manual_seed(1))
    out = {}
    for ind in (POSITIVE, NEGATIVE):
        chunk = runner.loaded.norm.action.denormalize(pol.sample_chunk(s, None, noise, 8, indicator=ind))
        out[ind] = chunk[:, 0, :2].numpy()
    good = np.stack([expert_action(x) for x in states.numpy()])
    cos_pos = (out[POSITIVE] * good).sum(1) / (np.linalg.norm(out[POSITIVE], axis=1) * np.linalg.norm(good, axis=1))
    cos_neg = (out[NEGATIVE] * good).sum(1) / (np.linalg.norm(out[NEGATIVE], axis=1) * np.linalg.norm(good, axis=1))
    assert cos_pos.mean() > 0.5 and cos_neg.mean() < -0.3, (cos_pos, cos_neg)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return {**read_tensors(path, "policy"), **{f"c.{k}": v for k, v in read_tensors(path, "critic").items()}}


@pytest.mark.parametrize("stop_at", [6, 15])  # inside the critic phase, inside the policy phase
def test_resume_matches_uninterrupted_run(tmp_path: Path, stop_at: int) -> None:
    eps = [toy_episode(i, length=12) for i in range(3)] + [toy_episode(9, ["policy"] * 6 + ["expert"] * 6, 12)]
    cfg = _cfg(method="recap", steps=12, critic_steps=8, checkpoint_every=5, grad_accum=2)
    full = run_training(cfg, eps, tmp_path / "full", progress=False)
    part = run_training(cfg, eps, tmp_path / "part", progress=False, should_stop=lambda n: n >= stop_at)
    assert not part.completed
    resumed = run_training(cfg, eps, tmp_path / "part", progress=False)
    assert resumed.completed
    a, b = _weights(full.checkpoint_dir), _weights(resumed.checkpoint_dir)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)


@pytest.mark.parametrize("stop_at", [6, 15])  # before the average starts, while it runs
def test_a_weight_averaged_run_resumes_to_the_same_average(tmp_path: Path, stop_at: int) -> None:
    eps = [toy_episode(i, length=12) for i in range(3)] + [toy_episode(9, ["policy"] * 6 + ["expert"] * 6, 12)]
    cfg = _cfg(method="recap", steps=12, critic_steps=8, checkpoint_every=4, ema_decay=0.9)
    full = run_training(cfg, eps, tmp_path / "full", progress=False)
    part = run_training(cfg, eps, tmp_path / "part", progress=False, should_stop=lambda n: n >= stop_at)
    resumed = run_training(cfg, eps, tmp_path / "part", progress=False)
    a, b = _weights(full.checkpoint_dir), _weights(resumed.checkpoint_dir)
    assert not part.completed and a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)

    plain = run_training(
        _cfg(method="recap", steps=12, critic_steps=8, checkpoint_every=4), eps, tmp_path / "plain", progress=False
    )
    live = read_tensors(sorted((tmp_path / "full" / "checkpoints").iterdir())[-1], "policy")  # the last step's
    averaged, last = read_tensors(full.checkpoint_dir, "policy"), read_tensors(plain.checkpoint_dir, "policy")
    moved = [k for k in last if last[k].is_floating_point() and not torch.equal(last[k], averaged[k])]
    assert moved and all(torch.equal(live[k], last[k]) for k in last)  # the same run, its average saved instead


def test_the_weight_average_follows_its_decay() -> None:
    module = torch.nn.Linear(2, 1)
    with torch.no_grad():
        module.weight.fill_(0.0)
    average = WeightAverage.of(module, decay=0.75)
    with torch.no_grad():
        module.weight.fill_(4.0)
    average.update(module)  # 0.75 * 0 + 0.25 * 4
    assert torch.allclose(average.state_dict()["weight"], torch.full((1, 2), 1.0))
    with pytest.raises(ValueError, match="decay"):
        WeightAverage.of(module, decay=1.0)


def test_resume_with_other_config_is_refused(tmp_path: Path) -> None:
    eps = [toy_episode(i, length=10) for i in range(2)]
    run_training(_cfg(method="bc", steps=4), eps, tmp_path / "r", progress=False, should_stop=lambda n: n >= 2)
    with pytest.raises(ResumeMismatchError, match="different training config"):
        run_training(_cfg(method="bc", steps=5), eps, tmp_path / "r", progress=False)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from flywheel.policy import expert as expert_mod

    real = expert_mod.FlowMatchingExpert.flow_error
    calls = {"n": 0}

    def poisoned(self, *args, **kwargs):
        calls["n"] += 1
        out = real(self, *args, **kwargs)
        return out * float("nan") if calls["n"] == 8 else out

    monkeypatch.setattr(expert_mod.FlowMatchingExpert, "flow_error", poisoned)
    eps = [toy_episode(i, length=10) for i in range(2)]
    cfg = _cfg(method="bc", steps=20, checkpoint_every=3)
    with pytest.raises(TrainingDivergedError, match=r"step 7 \(micro-batch 0, frames \[") as info:
        run_training(cfg, eps, tmp_path / "r", progress=False)
    assert "policy-00000006" in str(info.value)
    good = tmp_path / "r" / "checkpoints" / "policy-00000006"
    PolicyRunner.load(good)  # still loads and verifies
    assert not (tmp_path / "r" / "final").exists()


def test_checkpoint_sha_mismatch_is_rejected(tmp_path: Path) -> None:
    eps = [toy_episode(i, length=10) for i in range(2)]
    res = run_training(_cfg(method="bc", steps=2), eps, tmp_path / "r", progress=False)
    with pytest.raises(CheckpointError, match="does not match the registered"):
        PolicyRunner.load(res.checkpoint_dir, expected_sha256="0" * 64)
    weights = res.checkpoint_dir / "policy.safetensors"
    blob = bytearray(weights.read_bytes())
    blob[-3] ^= 0xFF
    weights.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match=r"policy.safetensors fails its sha256"):
        PolicyRunner.load(res.checkpoint_dir)


def test_runner_receding_horizon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    eps = [toy_episode(i, length=10) for i in range(2)]
    res = run_training(_cfg(method="bc", steps=2), eps, tmp_path / "r", progress=False)
    runner = PolicyRunner.load(res.checkpoint_dir, execute_steps=3)
    calls = []
    real = runner.act_chunk
    monkeypatch.setattr(runner, "act_chunk", lambda obs: calls.append(1) or real(obs))
    obs = {"state": eps[0][1].state[0]}
    actions = [runner.act(obs) for _ in range(7)]
    assert len(calls) == 3 and actions[0].shape == (3,) and actions[0].dtype == np.float32
    runner.reset()
    runner.act(obs)
    assert len(calls) == 4
    with pytest.raises(InputSpecError, match="state vector of size 2, but this policy reads toy_reach's env state"):
        runner.act_chunk({"state": np.zeros(2, np.float32)})


def test_rejected_and_empty_datasets_are_clear_errors() -> None:
    eps = [toy_episode(i, length=5, review_status="rejected") for i in range(2)]
    with pytest.raises(StoreError, match="all 2 episodes are rejected"):
        usable_episodes(eps, "task x")
    with pytest.raises(StoreError, match="no episodes"):
        usable_episodes([], "task x")
    mixed = [*eps, toy_episode(5, length=5)]
    kept = usable_episodes(mixed, "task x")
    assert [e.meta.id for e in kept] == ["toy-5"]
    fp = data_fingerprint(kept)
    assert fp["episode_ids"] == ["toy-5"] and fp["frames"] == 5


def test_load_training_episodes_from_a_store(sqlite_settings: Settings) -> None:
    from flywheel.train import load_training_episodes

    store = EpisodeStore.open(sqlite_settings)

    ids = {}
    for seed, (status, ctrl) in enumerate(
        [("accepted", "expert"), ("unreviewed", "expert"), ("rejected", "expert"), ("accepted", "human")]
    ):
        _, frames = toy_episode(seed, ctrl, length=5, review_status=status)
        ids[seed] = store.add(NewEpisode("toy_reach", frames, env_seed=seed, success=True)).id
        with store.db.write() as session:
            session.execute(update(Episode).where(Episode.id == ids[seed]).values(review_status=status))
    _, other_task = toy_episode(9, length=5)
    store.add(NewEpisode("other_task", other_task, env_seed=9, success=True))

    got = load_training_episodes(store, "toy_reach")
    assert sorted(e.meta.id for e in got) == [ids[0], ids[1], ids[3]]
    for episode in got:
        np.testing.assert_array_equal(episode.frames.state, store.read_frames(episode.meta.id).state)
    got = load_training_episodes(store, "toy_reach", include_unreviewed=False)
    assert sorted(e.meta.id for e in got) == [ids[0], ids[3]]
    with pytest.raises(StoreError, match="no episodes"):
        load_training_episodes(store, "toy_reach", tags=["intervention"])
    store.db.dispose()


def test_metrics_logged_offline_to_wandb_and_jsonl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    monkeypatch.setenv("WANDB_MODE", "offline")
    eps = [toy_episode(i, length=10) for i in range(2)] + [toy_episode(8, ["policy"] * 5 + ["human"] * 5, 10)]
    cfg = _cfg(method="recap", steps=2, critic_steps=2, wandb=True, log_every=1)
    run_training(cfg, eps, tmp_path / "r", progress=True)
    rows = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    keys = set().union(*rows)
    for name in (
        "train/loss",
        "train/v_loss",
        "train/q_loss",
        "train/policy_loss",
        "train/lr",
        "train/adv_mean",
        "train/adv_std",
        "train/positive_fraction",
    ):
        assert name in keys, name
    assert any((tmp_path / "r" / "wandb").glob("offline-run-*"))


def test_loss_weights_set_emphasis_not_step_size(tmp_path: Path) -> None:
    """Scaling every source weight by 3 changes nothing: the loss is a weighted mean over the dataset's weights."""
    eps = [toy_episode(i, length=12) for i in range(2)] + [toy_episode(5, "policy", length=12)]
    runs = {}
    for scale in (1.0, 3.0):
        weights = {"demo": scale, "autonomous": scale, "intervention": scale}
        cfg = _cfg(method="bc", steps=20, source_weights=weights)
        runs[scale] = run_training(cfg, eps, tmp_path / f"w{scale}", progress=False)
    assert runs[3.0].metrics["train/policy_loss"] == pytest.approx(runs[1.0].metrics["train/policy_loss"], rel=1e-4)
    a, b = (read_tensors(runs[s].checkpoint_dir, "policy") for s in (1.0, 3.0))
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
