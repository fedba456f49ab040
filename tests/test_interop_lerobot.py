"""LeRobotDataset v3.0 interop: lerobot's own reader judges our exports; imports round-trip; bad shapes refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from lerobot.datasets.lerobot_dataset import LeRobotDataset
from sqlalchemy import update
from typer.testing import CliRunner

from flywheel.cli.context import CliState
from flywheel.cli.interop import export_app, import_app
from flywheel.config import Settings
from flywheel.interop import lerobot_schema as fmt
from flywheel.interop.lerobot_export import ExportSelection, export_lerobot, select_episodes
from flywheel.interop.lerobot_import import UNKNOWN_SEED, import_lerobot, plan_import
from flywheel.interop.lerobot_schema import InteropError
from flywheel.registry import PolicyRegistry
from flywheel.store import EpisodeFilter, EpisodeRecord, EpisodeStore, NewEpisode
from flywheel.store.models import Episode
from flywheel.vocab import CONTROLLER_CODES, ControllerKind, derive_segments
from tests.conftest import make_frames

CAMERAS = {"top": (8, 12)}
P, H, E = ControllerKind.POLICY, ControllerKind.HUMAN, ControllerKind.EXPERT


def _policy(store: EpisodeStore, task: str = "transfer_cube") -> int:
    return (
        PolicyRegistry(store.db)
        .register_candidate(
            task=task, checkpoint_uri="ckpt", sha256="0" * 64, config={}, data_fingerprint={}, metrics={}
        )
        .id
    )


def _fill(store: EpisodeStore) -> dict[str, EpisodeRecord]:
    """One episode per tag (tiny camera); the intervention one has a triggered human segment and is accepted."""
    policy = _policy(store)
    demo = store.add(NewEpisode("transfer_cube", make_frames(controllers=[E] * 12, cameras=CAMERAS, seed=1), 11, True))
    auto = store.add(
        NewEpisode(
            "transfer_cube",
            make_frames(controllers=[P] * 9, cameras=CAMERAS, seed=2),
            12,
            False,
            policy_version_id=policy,
        )
    )
    frames = make_frames(controllers=[P] * 5 + [H] * 4 + [P] * 3, cameras=CAMERAS, seed=3)
    inter = store.add(
        NewEpisode(
            "transfer_cube",
            frames,
            13,
            True,
            policy_version_id=policy,
            operator="ann",
            segments=derive_segments(frames.controller, triggers={5: "no_progress"}, operators={5: "ann"}),
        )
    )
    with store.db.write() as session:
        session.execute(update(Episode).where(Episode.id == inter.id).values(review_status="accepted"))
    return {"demo": demo, "autonomous": auto, "intervention": store.get(inter.id)}


def _all_rows(root: Path) -> dict[str, torch.Tensor]:
    """Every frame through lerobot's reader and a torch DataLoader, concatenated per key."""
    dataset = LeRobotDataset("test/ds", root=root)
    batches = list(torch.utils.data.DataLoader(dataset, batch_size=7, shuffle=False, num_workers=0))
    keys = [k for k, v in batches[0].items() if isinstance(v, torch.Tensor)]
    return {k: torch.cat([b[k] for b in batches]) for k in keys}


def _second_store(tmp_path: Path, name: str) -> EpisodeStore:
    return EpisodeStore.open(Settings(home=tmp_path / name))


def _write_external(root: Path, state_dim: int, action_dim: int, lengths: list[int], task: str, video: bool = False):
    """A dataset as third parties write it: no controller info, a natural-language task."""
    features = {
        "observation.state": {"dtype": "float32", "shape": (state_dim,), "names": None},
        "observation.images.top": {
            "dtype": "video" if video else "image",
            "shape": (16, 24, 3),
            "names": ["height", "width", "channel"],
        },
        "action": {"dtype": "float32", "shape": (action_dim,), "names": None},
    }
    # h264: SVT-AV1 (lerobot's default codec) dies with SIGFPE on frames this small.
    dataset = LeRobotDataset.create(
        "third/party", fps=50, features=features, root=root, use_videos=video, vcodec="h264"
    )
    rng = np.random.default_rng(7)
    for length in lengths:
        for t in range(length):
            dataset.add_frame(
                {
                    "observation.state": rng.normal(size=state_dim).astype(np.float32),
                    "observation.images.top": np.full((16, 24, 3), 10 * t, dtype=np.uint8),
                    "action": rng.normal(size=action_dim).astype(np.float32),
                    "task": task,
                }
            )
        dataset.save_episode()
    dataset.finalize()


def test_export_is_read_by_lerobot(store: EpisodeStore, tmp_path: Path) -> None:
    episodes = _fill(store)
    records = select_episodes(store, ExportSelection())
    report = export_lerobot(store, records, tmp_path / "out")
    assert (report.episodes, report.frames, report.cameras) == (3, 33, ("top",))

    rows = _all_rows(tmp_path / "out")
    order = [episodes["demo"], episodes["autonomous"], episodes["intervention"]]
    frames = [store.read_frames(r.id) for r in order]
    np.testing.assert_array_equal(rows["observation.state"].numpy(), np.concatenate([f.state for f in frames]))
    np.testing.assert_array_equal(rows["action"].numpy(), np.concatenate([f.action for f in frames]))
    np.testing.assert_array_equal(rows["next.reward"].numpy(), np.concatenate([f.reward for f in frames]))
    images = (rows["observation.images.top"] * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(images, np.concatenate([f.images["top"] for f in frames]))
    codes = np.concatenate([f.controller for f in frames])
    np.testing.assert_array_equal(rows["controller"].numpy(), codes)
    # Intervention: human/expert frames of the intervention episode only (not the demo's expert frames).
    expected = np.zeros(33, dtype=bool)
    expected[12 + 9 + 5 : 12 + 9 + 9] = True
    np.testing.assert_array_equal(rows["intervention"].numpy(), expected)
    ids = np.repeat([r.id for r in order], [12, 9, 12])
    np.testing.assert_array_equal(rows["flywheel.episode_id"].numpy(), ids)
    tags = np.repeat([fmt.TAG_CODE_MAP[t] for t in ("demo", "autonomous", "intervention")], [12, 9, 12])
    np.testing.assert_array_equal(rows["flywheel.tag"].numpy(), tags)
    review = np.repeat([fmt.REVIEW_CODE_MAP[s] for s in ("unreviewed", "unreviewed", "accepted")], [12, 9, 12])
    np.testing.assert_array_equal(rows["flywheel.review_status"].numpy(), review)
    np.testing.assert_array_equal(rows["next.done"].nonzero().flatten().numpy(), [11, 20, 32])

    sidecar = json.loads((tmp_path / "out" / "meta" / "flywheel.json").read_text())
    assert sidecar["codes"]["controller"] == {"policy": 0, "human": 1, "expert": 2}
    inter = sidecar["episodes"][2]
    assert (inter["flywheel_episode_id"], inter["tag"], inter["review_status"]) == (
        episodes["intervention"].id,
        "intervention",
        "accepted",
    )
    assert inter["segments"][1] == {
        "start": 5,
        "end": 9,
        "controller": "human",
        "operator": "ann",
        "trigger": "no_progress",
    }
    info = json.loads((tmp_path / "out" / "meta" / "info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["fps"] == 50
    assert info["features"]["observation.state"]["names"][-7:] == [
        "box.x",
        "box.y",
        "box.z",
        "box.qw",
        "box.qx",
        "box.qy",
        "box.qz",
    ]


def test_export_filters_and_refusals(store: EpisodeStore, tmp_path: Path) -> None:
    episodes = _fill(store)
    chosen = select_episodes(store, ExportSelection(tags=("intervention", "demo"), accepted_only=True))
    assert [r.id for r in chosen] == [episodes["intervention"].id]
    two_tags = select_episodes(store, ExportSelection(tags=("autonomous", "demo"), task="transfer_cube"))
    assert [r.id for r in two_tags] == [episodes["demo"].id, episodes["autonomous"].id]
    assert select_episodes(store, ExportSelection(task="insertion")) == []
    with pytest.raises(InteropError, match="no episodes match"):
        export_lerobot(store, [], tmp_path / "none")

    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("keep me")
    with pytest.raises(InteropError, match="not an empty directory"):
        export_lerobot(store, chosen, tmp_path / "busy")

    state_only = store.add(NewEpisode("transfer_cube", make_frames(controllers=[E] * 5, seed=9), 1, True))
    mixed = [*chosen, state_only]
    with pytest.raises(InteropError, match="--no-images"):
        export_lerobot(store, mixed, tmp_path / "mixed")
    assert not (tmp_path / "mixed").exists() and not list(tmp_path.glob(".mixed*"))
    report = export_lerobot(store, mixed, tmp_path / "mixed", images=False)
    assert report.cameras == () and report.frames == 17
    assert "observation.images.top" not in LeRobotDataset("t/m", root=tmp_path / "mixed").meta.features

    custom = store.add(NewEpisode("stack_blocks", make_frames(controllers=[E] * 4, seed=8), 2, True))
    export_lerobot(store, [custom], tmp_path / "custom")  # not a simulated task: no per-dimension names
    assert LeRobotDataset("t/c", root=tmp_path / "custom").meta.features["observation.state"]["names"] is None


def test_round_trip_preserves_frames_actions_and_tags(store: EpisodeStore, tmp_path: Path) -> None:
    _fill(store)
    export_lerobot(store, select_episodes(store, ExportSelection()), tmp_path / "first")

    other = _second_store(tmp_path, "other")
    with pytest.raises(InteropError, match="pass --policy"):
        import_lerobot(other, tmp_path / "first")
    assert other.count() == 0
    policy = _policy(other)
    report = import_lerobot(other, tmp_path / "first", policy_version_id=policy, importer="ivan")
    assert report.counts_by_tag == {"demo": 1, "autonomous": 1, "intervention": 1} and report.frames == 33
    imported = other.list_episodes(EpisodeFilter(newest_first=False), with_segments=True)
    originals = store.list_episodes(EpisodeFilter(newest_first=False), with_segments=True)
    for new, old in zip(imported, originals, strict=True):
        assert (new.tag, new.task, new.success, new.env_seed, new.length) == (
            old.tag,
            old.task,
            old.success,
            old.env_seed,
            old.length,
        )
        # The importer is the operator of record; the names the dataset gives are kept as claims.
        assert (new.operator, new.claimed_operator) == ("ivan", old.operator)
        assert [(s.start, s.end, s.controller, s.trigger, s.claimed_operator) for s in new.segments] == [
            (s.start, s.end, s.controller, s.trigger, s.operator) for s in old.segments
        ]
        assert all(s.operator is None for s in new.segments)
        a, b = other.read_frames(new.id), store.read_frames(old.id)
        for key in ("state", "action", "reward", "controller", "policy_action", "policy_action_valid"):
            np.testing.assert_array_equal(getattr(a, key), getattr(b, key), err_msg=key)
        np.testing.assert_array_equal(a.images["top"], b.images["top"])
        assert new.policy_version_id == (None if new.tag == "demo" else policy)

    again = import_lerobot(other, tmp_path / "first", policy_version_id=policy)
    assert again.imported == () and len(again.already_present) == 3 and other.count() == 3

    export_lerobot(other, select_episodes(other, ExportSelection()), tmp_path / "second")
    first, second = _all_rows(tmp_path / "first"), _all_rows(tmp_path / "second")
    for key in ("observation.state", "observation.images.top", "action", "controller", "intervention", "flywheel.tag"):
        torch.testing.assert_close(first[key], second[key], rtol=0, atol=0, msg=key)


def test_import_filters_by_tag(sqlite_settings: Settings, tmp_path: Path) -> None:
    source = EpisodeStore.open(sqlite_settings)
    _fill(source)
    export_lerobot(source, select_episodes(source, ExportSelection()), tmp_path / "ds")
    target = _second_store(tmp_path, "target")
    report = import_lerobot(target, tmp_path / "ds", tags=["demo"])
    assert report.skipped == 2 and [r.tag for r in target.list_episodes()] == ["demo"]


def test_external_dataset_imports_as_expert_demos(tmp_path: Path) -> None:
    _write_external(tmp_path / "ext", 35, 14, [6, 4], "Pick up the red cube and hand it over")
    store = _second_store(tmp_path, "home")
    with pytest.raises(InteropError, match="not a flywheel task; pass --task"):
        plan_import(tmp_path / "ext")
    plan = plan_import(tmp_path / "ext", task="transfer_cube", tags=["autonomous"])
    assert plan.episodes == () and len(plan.skipped) == 2
    report = import_lerobot(store, tmp_path / "ext", task="transfer_cube", default_success=False)
    assert report.counts_by_tag["demo"] == 2 and report.frames == 10
    record = store.list_episodes(EpisodeFilter(newest_first=False))[1]
    frames = store.read_frames(record.id)
    assert (record.tag, record.env_seed, record.success, record.policy_version_id) == (
        "demo",
        UNKNOWN_SEED,
        False,
        None,
    )
    assert set(frames.controller.tolist()) == {CONTROLLER_CODES[E]}
    np.testing.assert_array_equal(frames.images["top"][:, 0, 0, 0], 10 * np.arange(4))
    assert not frames.policy_action_valid.any()


def test_external_video_dataset_is_decoded(tmp_path: Path) -> None:
    _write_external(tmp_path / "vid", 35, 14, [5], "transfer_cube", video=True)
    store = _second_store(tmp_path, "home")
    report = import_lerobot(store, tmp_path / "vid", default_controller=ControllerKind.HUMAN)
    frames = store.read_frames(report.imported[0])
    assert frames.images["top"].shape == (5, 16, 24, 3)
    # Lossy codec: within a few grey levels of what was written.
    assert np.abs(frames.images["top"].astype(int) - 10 * np.arange(5)[:, None, None, None]).max() <= 4
    assert set(frames.controller.tolist()) == {CONTROLLER_CODES[H]}


@pytest.mark.parametrize(
    ("state_dim", "action_dim", "task", "message"),
    [
        (35, 7, "transfer_cube", "action has 7 dims, transfer_cube needs 14"),
        (14, 14, "transfer_cube", r"observation.state has 14 dims, transfer_cube records 35 \(qpos 14 \+ qvel 14"),
        (35, 14, "insertion", "observation.state has 35 dims, insertion records 42"),
    ],
)
def test_shape_mismatch_is_refused(tmp_path: Path, state_dim: int, action_dim: int, task: str, message: str) -> None:
    _write_external(tmp_path / "bad", state_dim, action_dim, [3], "anything")
    store = _second_store(tmp_path, "home")
    with pytest.raises(InteropError, match=message):
        import_lerobot(store, tmp_path / "bad", task=task)
    assert store.count() == 0


def test_not_a_dataset_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(InteropError, match=r"no meta/info\.json"):
        plan_import(tmp_path / "empty")
    _write_external(tmp_path / "old", 35, 14, [2], "transfer_cube")
    info_path = tmp_path / "old" / "meta" / "info.json"
    info_path.write_text(json.dumps({**json.loads(info_path.read_text()), "codebase_version": "v2.1"}))
    with pytest.raises(InteropError, match=r"convert it to v3\.0"):
        plan_import(tmp_path / "old")


def _cli() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def root(ctx: typer.Context, home: Path = typer.Option(...)) -> None:
        ctx.obj = CliState(overrides={"home": home})

    app.add_typer(export_app, name="export")
    app.add_typer(import_app, name="import")
    return app


def test_cli_export_and_import(sqlite_settings: Settings, tmp_path: Path) -> None:
    source = EpisodeStore.open(sqlite_settings)
    episodes = _fill(source)
    runner, app = CliRunner(), _cli()
    home = ["--home", str(sqlite_settings.home)]
    result = runner.invoke(app, [*home, "export", "lerobot", "--out", str(tmp_path / "cli"), "--tag", "demo"])
    assert result.exit_code == 0, result.output
    assert "exported 1 episode(s), 12 frames (cameras: top)" in result.output

    result = runner.invoke(app, [*home, "export", "lerobot", "--out", str(tmp_path / "no"), "--task", "insertion"])
    assert isinstance(result.exception, InteropError) and not (tmp_path / "no").exists()

    target = ["--home", str(tmp_path / "target")]
    result = runner.invoke(app, [*target, "import", "lerobot", str(tmp_path / "cli"), "--tag", "demo"])
    assert result.exit_code == 0, result.output
    assert "imported 1 episode(s), 12 frames (demo 1)" in result.output
    imported = _second_store(tmp_path, "target").list_episodes()
    assert [(r.tag, r.length, r.env_seed) for r in imported] == [("demo", 12, episodes["demo"].env_seed)]
