"""`flywheel import lerobot` treats a dataset as data: names checked, claims kept as claims, no path out of it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from flywheel.config import Settings
from flywheel.identity import InvalidNameError, os_user
from flywheel.interop.lerobot_export import ExportSelection, export_lerobot, select_episodes
from flywheel.interop.lerobot_import import import_lerobot
from flywheel.interop.lerobot_schema import InteropError
from flywheel.store import EpisodeStore, NewEpisode
from flywheel.vocab import ControllerKind
from tests.conftest import make_frames
from tests.test_interop_lerobot import _fill, _second_store, _write_external

MARKDOWN_NAME = "![pwned](https://attacker.example/x.png) **click [here](https://attacker.example)**"


def _nothing_written(store: EpisodeStore) -> None:
    assert store.count() == 0 and list(store.files.iter_uris()) == []


def test_markdown_operator_names_in_a_dataset_are_refused(store: EpisodeStore, tmp_path: Path) -> None:
    _fill(store)
    export_lerobot(store, select_episodes(store, ExportSelection(tags=("demo",))), tmp_path / "ds")
    sidecar = tmp_path / "ds" / "meta" / "flywheel.json"
    data = json.loads(sidecar.read_text())
    data["episodes"][0]["operator"] = MARKDOWN_NAME
    sidecar.write_text(json.dumps(data))
    target = _second_store(tmp_path, "target")
    with pytest.raises(InteropError, match=r"episode 0 names operator .* not a valid name"):
        import_lerobot(target, tmp_path / "ds")
    _nothing_written(target)


def test_the_importer_is_the_operator_of_record(tmp_path: Path) -> None:
    _write_external(tmp_path / "ext", 35, 14, [4], "transfer_cube")
    store = _second_store(tmp_path, "home")
    record = store.get(import_lerobot(store, tmp_path / "ext").imported[0])
    assert (record.operator, record.claimed_operator) == (os_user(), None)


def test_a_camera_name_is_checked_where_episodes_enter(sqlite_settings: Settings) -> None:
    store = EpisodeStore.open(sqlite_settings)
    frames = make_frames(controllers=[ControllerKind.EXPERT] * 3, cameras={"../../top": (4, 4)})
    with pytest.raises(InvalidNameError, match="camera name"):
        store.add(NewEpisode("transfer_cube", frames, 0, True))
    _nothing_written(store)


@pytest.mark.parametrize("template", ["data_path", "video_path"])
def test_path_templates_outside_the_dataset_are_refused(tmp_path: Path, template: str) -> None:
    root = tmp_path / "vid"
    _write_external(root, 35, 14, [3], "transfer_cube", video=True)
    outside = tmp_path / "outside"
    shutil.copytree(root, outside)
    info_path = root / "meta" / "info.json"
    info = json.loads(info_path.read_text())
    info[template] = str(outside / info[template])  # absolute, and a real file: only the check stops it
    info_path.write_text(json.dumps(info))
    store = _second_store(tmp_path, "home")
    with pytest.raises(InteropError, match="points outside the dataset"):
        import_lerobot(store, root)
    _nothing_written(store)


def test_a_symlink_out_of_the_dataset_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "ext"
    _write_external(root, 35, 14, [3], "transfer_cube")
    data_file = next((root / "data").rglob("*.parquet"))
    elsewhere = tmp_path / "elsewhere.parquet"
    shutil.move(data_file, elsewhere)
    data_file.symlink_to(elsewhere)
    store = _second_store(tmp_path, "home")
    with pytest.raises(InteropError, match="leads outside the dataset"):
        import_lerobot(store, root)
    _nothing_written(store)
