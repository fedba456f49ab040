"""The observation contract: a pixels policy reads camera images and joints only, its checkpoint says so, and every
path that would feed it something else refuses with the episode or camera named."""

from __future__ import annotations

import dataclasses
import json
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from flywheel.collect.runtime import WorkerRuntime
from flywheel.collect.spec import CollectSpec
from flywheel.errors import ConfigError
from flywheel.policy.input_spec import InputSpecError, read_checkpoint_inputs
from flywheel.policy.loading import load_critic, load_critic_norm, load_policy
from flywheel.policy.runner import PolicyRunner
from flywheel.presets import train_config
from flywheel.train import run_training
from flywheel.train.data import EpisodeInfo
from sim import make_env
from sim.env import object_xy_targets, state_layout
from sim.rollout import run_episode

pytestmark = pytest.mark.usefixtures("torch_one_thread")

IMAGE_HW = (24, 32)
PIXELS_MODEL = {
    "inputs": {"state": ["qpos", "qvel"], "cameras": ["top"]},
    "encoder": {"vision": "cnn", "cnn_channels": 8, "cnn_grid": 2, "augment_shift": 2},
    "expert": {"chunk": 4},
    "inference": {"execute_steps": 2},
}


def _demos(obs_mode: str, n: int = 2, steps: int = 12) -> list[tuple[EpisodeInfo, object]]:
    env = make_env("transfer_cube", obs_mode=obs_mode, image_size=IMAGE_HW)  # type: ignore[arg-type]
    try:
        out = []
        for seed in range(n):
            result = run_episode(env, seed, max_steps=steps)
            assert result.frames is not None
            out.append((EpisodeInfo(f"{obs_mode}-{seed}", "transfer_cube", "demo", True), result.frames))
        return out
    finally:
        env.close()


def _pixels_config(object_aux_weight: float = 0.0, steps: int = 3) -> object:
    model = {**PIXELS_MODEL, "encoder": {**PIXELS_MODEL["encoder"], "object_aux_weight": object_aux_weight}}
    return train_config("tiny", {"method": "bc", "steps": steps, "batch_size": 4, "log_every": 1, "model": model})


@pytest.fixture(scope="module")
def pixels_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = _pixels_config()
    return run_training(cfg, _demos("pixels"), tmp_path_factory.mktemp("pixels") / "run", progress=False).checkpoint_dir


@pytest.fixture(scope="module")
def object_aux_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = _pixels_config(object_aux_weight=2.0)
    return run_training(cfg, _demos("pixels"), tmp_path_factory.mktemp("aux") / "run", progress=False).checkpoint_dir


def test_the_checkpoint_says_what_the_policy_reads(pixels_checkpoint: Path) -> None:
    inputs = read_checkpoint_inputs(pixels_checkpoint)
    layout = state_layout("transfer_cube")
    assert inputs.state_names == ("qpos", "qvel") and not inputs.privileged
    assert inputs.cameras == ("top",) and inputs.image_size == IMAGE_HW and inputs.obs_mode == "pixels"
    assert inputs.state_index.tolist() == list(range(layout["qvel"].stop))
    assert load_policy(pixels_checkpoint).spec.state_dim == 28  # the networks are built for the joints only


@pytest.mark.parametrize("checkpoint", ["pixels_checkpoint", "object_aux_checkpoint"])
def test_a_pixels_policy_cannot_see_the_object_pose(checkpoint: str, request: pytest.FixtureRequest) -> None:
    loaded = load_policy(request.getfixturevalue(checkpoint))
    (_, frames) = _demos("pixels", n=1, steps=3)[0]
    obs = {"state": frames.state[2].copy(), "images": {"top": frames.images["top"][2]}}
    moved = {"state": obs["state"].copy(), "images": obs["images"]}
    box = state_layout("transfer_cube")["box_pose"]
    moved["state"][box] += np.array([0.3, -0.2, 0.1, 0.5, 0.5, 0.5, 0.5], np.float32)  # the cube elsewhere

    state, images = loaded.io.inputs([obs])
    state_moved, images_moved = loaded.io.inputs([moved])
    assert torch.equal(state, state_moved) and torch.equal(images["top"], images_moved["top"])  # type: ignore[index]
    a = PolicyRunner(loaded, seed=3).act_chunk(obs)
    b = PolicyRunner(loaded, seed=3).act_chunk(moved)
    np.testing.assert_array_equal(a, b)

    joints_moved = {"state": obs["state"].copy(), "images": obs["images"]}
    joints_moved["state"][0] += 0.5  # the same change to a joint is seen
    assert not torch.equal(loaded.io.inputs([joints_moved])[0], state)


def test_the_object_auxiliary_loss_is_added_in_training_and_recorded(
    object_aux_checkpoint: Path, tmp_path: Path
) -> None:
    loaded = load_policy(object_aux_checkpoint)
    assert loaded.meta["object_aux_weight"] == 2.0 and not loaded.input_spec.privileged
    assert loaded.policy.object_head is not None and loaded.policy.object_head.out_features == 2  # the cube's x, y
    demos = _demos("pixels")
    losses = []
    for weight in (0.0, 2.0):  # same seed: the same networks and batch, and the head's error on top
        run = tmp_path / f"w{weight}"
        run_training(_pixels_config(weight, steps=1), demos, run, progress=False)
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        losses.append(next(r["train/policy_loss"] for r in rows if "train/policy_loss" in r))
    assert losses[1] > losses[0]


def test_object_targets_are_standardised_by_the_spawn_box_and_drop_an_object_gone_from_the_workspace() -> None:
    box = state_layout("transfer_cube")["box_pose"].start
    states = np.zeros((3, box + 7), np.float32)
    states[:, box : box + 2] = [(0.1, 0.5), (0.2, 0.6), (-30.0, -34.0)]  # centre, corner, flung off the table
    targets = object_xy_targets("transfer_cube", states)
    np.testing.assert_allclose(targets[0], 0.0, atol=1e-6)
    np.testing.assert_allclose(targets[1], np.sqrt(3.0), rtol=1e-5)  # half the width over width / sqrt(12)
    assert np.isnan(targets[2]).all()


def test_frames_with_no_object_target_add_nothing_to_the_loss(tmp_path: Path) -> None:
    demos = _demos("pixels")
    losses = []
    for far in (-30.0, 50.0):  # wherever the cube was flung, those frames must not count
        moved = []
        for info, frames in demos:
            state = frames.state.copy()
            state[6:, state_layout("transfer_cube")["box_pose"].start] = far
            moved.append((info, dataclasses.replace(frames, state=state)))
        run = tmp_path / f"far{far}"
        run_training(_pixels_config(2.0, steps=2), moved, run, progress=False)
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        losses.append([r["train/policy_loss"] for r in rows if "train/policy_loss" in r])
    assert np.isfinite(losses[0]).all() and losses[0] == losses[1]


def test_the_object_auxiliary_loss_needs_a_cnn() -> None:
    with pytest.raises(ConfigError, match="object_aux_weight needs vision='cnn'"):
        train_config("tiny", {"model": {"encoder": {"object_aux_weight": 1.0}}})


def test_a_camera_the_env_does_not_render_is_refused_before_any_episode(pixels_checkpoint: Path) -> None:
    base = dict(
        task="transfer_cube",
        operator_mode="none",
        operator_name="eval",
        policy_checkpoint=str(pixels_checkpoint),
        source_prefix="t",
    )
    with pytest.raises(InputSpecError, match=r"reads cameras \['top'\], but the env renders none"):
        WorkerRuntime(CollectSpec(**base, obs_mode="state"))
    with pytest.raises(InputSpecError, match="render \\['top'\\]"):
        WorkerRuntime(CollectSpec(**base, obs_mode="pixels", cameras=("left_wrist",), image_size=IMAGE_HW))
    with pytest.raises(InputSpecError, match="reads 24x32 images, the env renders 48x64"):
        WorkerRuntime(CollectSpec(**base, obs_mode="pixels", image_size=(48, 64)))
    settings = CollectSpec.observation_for(str(pixels_checkpoint))
    assert settings == {"obs_mode": "pixels", "cameras": ("top",), "image_size": IMAGE_HW}
    runtime = WorkerRuntime(CollectSpec(**base, **settings))  # what the checkpoint asks for is accepted
    runtime.env.close()


def test_a_registered_policy_is_collected_in_the_env_its_checkpoint_reads(pixels_checkpoint: Path) -> None:
    version = types.SimpleNamespace(id=7, task="transfer_cube", checkpoint_uri=str(pixels_checkpoint), sha256="ab")
    spec = CollectSpec.for_policy(version, "iteration-3", operator_mode="simulated", iteration=3)
    assert (spec.obs_mode, spec.cameras, spec.image_size) == ("pixels", ("top",), IMAGE_HW)
    assert (spec.policy_version_id, spec.policy_checkpoint, spec.policy_sha256) == (7, str(pixels_checkpoint), "ab")
    assert (spec.operator_mode, spec.iteration, spec.source_key(5)) == ("simulated", 3, "iteration-3/seed-5")
    alone = CollectSpec.policy_alone(version, "eval")
    assert (alone.operator_mode, alone.operator_name, alone.obs_mode) == ("none", "eval", "pixels")
    with pytest.raises(TypeError, match="multiple values for keyword argument 'obs_mode'"):
        CollectSpec.for_policy(version, "x", obs_mode="state")  # the checkpoint, not the caller, says what it reads


def test_state_only_episodes_in_pixels_training_are_refused_by_name(tmp_path: Path) -> None:
    cfg = train_config("tiny", {"method": "bc", "steps": 2, "batch_size": 4, "model": PIXELS_MODEL})
    state_only = (EpisodeInfo("state-only-7", "transfer_cube", "demo", True), _demos("state", n=1, steps=6)[0][1])
    mixed = [*_demos("pixels", n=1, steps=6), state_only]
    with pytest.raises(InputSpecError, match="episode state-only-7 lacks camera images \\['top'\\]"):
        run_training(cfg, mixed, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()  # nothing written
    with pytest.raises(InputSpecError, match="episode state-0 lacks camera images"):
        run_training(cfg, _demos("state", n=1, steps=6), tmp_path / "run2", progress=False)
    unknown = train_config("tiny", {"method": "bc", "model": {**PIXELS_MODEL, "inputs": {"state": ["qpos", "cube"]}}})
    with pytest.raises(InputSpecError, match="state entries \\['cube'\\] are not in transfer_cube's state layout"):
        run_training(unknown, _demos("pixels", n=1, steps=6), tmp_path / "run3", progress=False)


def test_flywheel_run_refuses_a_pixels_loop_over_state_only_episodes(tmp_path: Path) -> None:
    from flywheel.config import Settings
    from flywheel.presets import flywheel_config
    from flywheel.scheduler.phases import PhaseContext
    from flywheel.scheduler.preflight import check_observations
    from flywheel.store import EpisodeStore, NewEpisode

    store = EpisodeStore.open(Settings(home=tmp_path / "home"))
    try:
        pixels = {
            "obs_mode": "pixels",
            "cameras": ["top"],
            "image_size": list(IMAGE_HW),
            "train": {"model": PIXELS_MODEL},
        }
        ctx = PhaseContext(store, Settings(home=tmp_path / "home"), flywheel_config("tiny", pixels), progress=False)
        check_observations(ctx)  # an empty store: fine
        (_, frames) = _demos("state", n=1, steps=4)[0]
        episode = store.add(NewEpisode("transfer_cube", frames, env_seed=1, success=True))
        with pytest.raises(
            InputSpecError,
            match=f"1 transfer_cube episodes without the camera images \\['top'\\].*episodes {episode.id}",
        ):
            check_observations(ctx)
        unrecorded = flywheel_config("tiny", {**pixels, "cameras": ["left_wrist"]})
        with pytest.raises(InputSpecError, match="reads \\['top'\\], which the loop does not record"):
            check_observations(PhaseContext(store, ctx.settings, unrecorded, progress=False))
        state_loop = flywheel_config("tiny", {"train": {"model": PIXELS_MODEL}})
        with pytest.raises(InputSpecError, match="obs_mode is 'state': set obs_mode: pixels"):
            check_observations(PhaseContext(store, ctx.settings, state_loop, progress=False))
    finally:
        store.db.dispose()


def test_flywheel_run_refuses_a_champion_of_another_task(tmp_path: Path) -> None:
    from flywheel.config import Settings
    from flywheel.presets import flywheel_config
    from flywheel.registry import PolicyRegistry
    from flywheel.scheduler.phases import PhaseContext
    from flywheel.scheduler.preflight import check_observations
    from flywheel.store import EpisodeStore

    settings = Settings(home=tmp_path / "home")
    store = EpisodeStore.open(settings)
    try:
        registry = PolicyRegistry(store.db)
        version = registry.register_candidate(
            task="transfer_cube", checkpoint_uri="unread", sha256="0", config={}, data_fingerprint={}, metrics={}
        )
        registry.promote(version.id, actor="test", reason="a transfer_cube home", force=True)
        insertion = flywheel_config("tiny", {"task": "insertion"})
        with pytest.raises(
            ConfigError,
            match=f"champion \\(policy {version.id}\\) is a transfer_cube policy, but this loop runs insertion",
        ):
            check_observations(PhaseContext(store, settings, insertion, progress=False))
    finally:
        store.db.dispose()


def test_the_onnx_graph_takes_the_env_state_and_ignores_the_object_pose(
    pixels_checkpoint: Path, tmp_path: Path
) -> None:
    from flywheel.policy.onnx_export import check_parity, export_onnx, input_names, onnx_session, random_observations

    loaded = load_policy(pixels_checkpoint)
    path = export_onnx(loaded, tmp_path / "policy.onnx", IMAGE_HW)
    assert check_parity(loaded, path, observations=3, image_size=IMAGE_HW).passed
    state, noise, images = random_observations(loaded, 1, IMAGE_HW)
    assert state.shape == (1, state_layout("transfer_cube")["box_pose"].stop)  # the env's whole vector goes in
    session = onnx_session(path)
    feeds = dict(zip(input_names(["top"]), [state, noise, images["top"]], strict=True))
    moved = state.copy()
    moved[0, state_layout("transfer_cube")["box_pose"]] += 0.25
    again = session.run(None, {**feeds, "state": moved})[0]
    np.testing.assert_array_equal(session.run(None, feeds)[0], again)


def test_a_privileged_critic_reads_the_full_state_while_its_policy_still_cannot(tmp_path: Path) -> None:
    """`critic.observations: privileged` (sim only): the critic sees the cube's pose, the policy's inputs stay
    the camera and the joints, and the checkpoint says which critic labelled the data."""
    demos = _demos("pixels", n=2, steps=12)
    model = {**PIXELS_MODEL, "critic": {"hidden_dim": 32, "observations": "privileged"}}
    cfg = train_config("tiny", {"method": "recap", "steps": 2, "critic_steps": 3, "batch_size": 4, "model": model})
    result = run_training(cfg, demos, tmp_path / "run", progress=False)
    loaded = load_policy(result.checkpoint_dir)
    assert loaded.meta["critic_observations"] == "privileged"
    inputs = read_checkpoint_inputs(result.checkpoint_dir)
    assert inputs.state_names == ("qpos", "qvel") and inputs.cameras == ("top",) and not inputs.privileged

    critic = load_critic(result.checkpoint_dir, loaded).eval()
    critic_norm = load_critic_norm(result.checkpoint_dir)
    full_width = max(s.stop for s in state_layout("transfer_cube").values())
    assert critic_norm is not None and critic_norm.state.shift.shape == (full_width,) and not critic.encoder.cameras
    state = demos[0][1].state[5].copy()
    moved = state.copy()
    moved[state_layout("transfer_cube")["box_pose"]] += np.array([0.2, -0.1, 0.0, 0, 0, 0, 0], np.float32)
    with torch.no_grad():
        values = [
            critic.value(critic_norm.state.normalize(torch.from_numpy(s[None])), None, None) for s in (state, moved)
        ]
    assert not torch.equal(values[0], values[1])  # the cube's pose reaches the critic


def test_a_privileged_critic_in_bc_training_is_never_built(tmp_path: Path) -> None:
    model = {**PIXELS_MODEL, "critic": {"observations": "privileged"}}
    cfg = train_config("tiny", {"method": "bc", "steps": 2, "batch_size": 4, "model": model})
    result = run_training(cfg, _demos("pixels", n=1, steps=8), tmp_path / "run", progress=False)
    assert load_critic_norm(result.checkpoint_dir) is None
    assert load_policy(result.checkpoint_dir).meta["critic_observations"] is None
