"""Export stored episodes to a LeRobotDataset v3.0, written by lerobot's own writer.

Per frame: `observation.state`, `observation.images.<camera>` (lossless PNG image features), `action`,
`next.reward`, `next.done`, `controller` (int code), `intervention` (human/expert frame inside a policy
episode), the policy's proposal (`policy_action`, `policy_action_valid`) and the episode's flywheel id, tag and
review status as int codes. The code tables and per-episode facts are in `meta/flywheel.json`.
The dataset is built in a hidden sibling directory and renamed into place only once complete.
"""

from __future__ import annotations

import shutil
import uuid
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from lerobot.datasets.lerobot_dataset import LeRobotDataset
from lerobot.utils.utils import SuppressProgressBars

from flywheel.errors import FlywheelError
from flywheel.interop import lerobot_schema as fmt
from flywheel.interop.lerobot_schema import EpisodeMeta, InteropError, SegmentMeta, Sidecar
from flywheel.store import EpisodeFilter, EpisodeRecord, EpisodeStore
from flywheel.store.files import IMAGE_PREFIX
from flywheel.vocab import CONTROLLER_CODES, ControllerKind, EpisodeFrames, Tag, parse_tag

POLICY_CODE = CONTROLLER_CODES[ControllerKind.POLICY]


@dataclass(frozen=True)
class ExportSelection:
    """Which episodes to export: any of `tags` (all when empty), one task, only accepted ones."""

    tags: tuple[str, ...] = ()
    task: str | None = None
    accepted_only: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"tags": list(self.tags), "task": self.task, "accepted_only": self.accepted_only}


@dataclass(frozen=True)
class ExportReport:
    root: Path
    episodes: int
    frames: int
    cameras: tuple[str, ...]


@dataclass(frozen=True)
class _Layout:
    state_dim: int
    action_dim: int
    cameras: dict[str, tuple[int, int]]


def select_episodes(store: EpisodeStore, selection: ExportSelection) -> list[EpisodeRecord]:
    """Episodes matching `selection`, oldest first (with segments, for the sidecar)."""
    for tag in selection.tags:
        parse_tag(tag)
    found: dict[int, EpisodeRecord] = {}
    for tag in selection.tags or (None,):
        filters = EpisodeFilter(
            task=selection.task,
            tag=tag,
            review_status="accepted" if selection.accepted_only else None,
            newest_first=False,
        )
        found.update((r.id, r) for r in store.list_episodes(filters, with_segments=True))
    return sorted(found.values(), key=lambda r: r.id)


def export_lerobot(
    store: EpisodeStore,
    records: Sequence[EpisodeRecord],
    out: Path,
    *,
    repo_id: str | None = None,
    images: bool = True,
    selection: ExportSelection | None = None,
    image_writer_threads: int = 4,
    on_episode: Callable[[EpisodeRecord], None] | None = None,
) -> ExportReport:
    """Write `records` (sha256-verified on read) as a LeRobotDataset at `out` (a new or empty directory)."""
    out = Path(out).resolve()
    if not records:
        raise InteropError("no episodes match the selection; nothing to export (see `flywheel episodes list`)")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InteropError(f"{out} already exists and is not an empty directory; choose a new --out")
    layout = _check_layout(store, records, images)
    features = _features(layout, {r.task for r in records})
    temp = out.parent / f".{out.name}.partial-{uuid.uuid4().hex[:8]}"
    out.parent.mkdir(parents=True, exist_ok=True)
    frames_written = 0
    try:
        with SuppressProgressBars(), warnings.catch_warnings():
            # lerobot's stats histogram casts bool features to uint8 and warns about it for every episode.
            warnings.filterwarnings("ignore", message="Converting input from bool", category=RuntimeWarning)
            dataset = LeRobotDataset.create(
                repo_id or f"flywheel/{out.name}",
                fps=fmt.FPS,
                features=features,
                root=temp,
                robot_type=fmt.ROBOT_TYPE,
                use_videos=False,
                image_writer_threads=image_writer_threads if layout.cameras else 0,
            )
            try:
                metas = []
                for index, record in enumerate(records):
                    frames = store.read_record_frames(record)
                    _add_episode(dataset, record, frames, tuple(layout.cameras))
                    dataset.save_episode()
                    metas.append(_episode_meta(index, record))
                    frames_written += len(frames)
                    if on_episode is not None:
                        on_episode(record)
            finally:
                dataset.stop_image_writer()
                dataset.finalize()
        selection_dict = selection.as_dict() if selection else {}
        Sidecar(episodes=tuple(metas), filters=selection_dict).write(temp)
        if out.exists():
            out.rmdir()
        temp.rename(out)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return ExportReport(out, len(records), frames_written, tuple(layout.cameras))


def _check_layout(store: EpisodeStore, records: Sequence[EpisodeRecord], images: bool) -> _Layout:
    """All episodes must share state/action sizes and cameras (read from file headers, no frame data)."""
    first: _Layout | None = None
    for record in records:
        arrays = store.files.open_arrays(record.file_uri, episode_id=record.id)
        cameras = (
            {
                k[len(IMAGE_PREFIX) :]: (int(v.shape[1]), int(v.shape[2]))
                for k, v in sorted(arrays.items())
                if k.startswith(IMAGE_PREFIX)
            }
            if images
            else {}
        )
        layout = _Layout(int(arrays["state"].shape[1]), int(arrays["action"].shape[1]), cameras)
        if first is None:
            first = layout
        elif layout != first:
            raise InteropError(
                f"episode {record.id} ({record.task}: state {layout.state_dim}, action {layout.action_dim}, "
                f"cameras {layout.cameras}) differs from episode {records[0].id} (state {first.state_dim}, "
                f"action {first.action_dim}, cameras {first.cameras}); one dataset needs one layout: "
                "narrow the selection with --task, or drop cameras with --no-images"
            )
    assert first is not None
    return first


def _features(layout: _Layout, tasks: set[str]) -> dict[str, dict[str, Any]]:
    state_names: list[str] | None = None
    action_names: list[str] | None = None
    if len(tasks) == 1:
        from flywheel.interop.task_shapes import task_shapes

        try:
            shapes = task_shapes(next(iter(tasks)))
        except FlywheelError:  # not a simulated task: export without per-dimension names
            shapes = None
        if shapes is not None and shapes.state_dim == layout.state_dim:
            state_names = list(shapes.state_names)
        if shapes is not None and shapes.action_dim == layout.action_dim:
            action_names = list(shapes.action_names)
    features = {fmt.STATE: fmt.vector(layout.state_dim, state_names)}
    for camera, (height, width) in layout.cameras.items():
        features[fmt.IMAGE_PREFIX + camera] = fmt.image(height, width)
    features[fmt.ACTION] = fmt.vector(layout.action_dim, action_names)
    features[fmt.REWARD] = fmt.scalar("float32")
    features[fmt.DONE] = fmt.scalar("bool")
    features[fmt.CONTROLLER] = fmt.scalar("int64")
    features[fmt.INTERVENTION] = fmt.scalar("bool")
    features[fmt.POLICY_ACTION] = fmt.vector(layout.action_dim, action_names)
    features[fmt.POLICY_ACTION_VALID] = fmt.scalar("bool")
    features[fmt.EPISODE_ID] = fmt.scalar("int64")
    features[fmt.TAG] = fmt.scalar("int64")
    features[fmt.REVIEW] = fmt.scalar("int64")
    return features


def _add_episode(
    dataset: LeRobotDataset, record: EpisodeRecord, frames: EpisodeFrames, cameras: tuple[str, ...]
) -> None:
    length = len(frames)
    controller = frames.controller.astype(np.int64)
    intervention = (controller != POLICY_CODE) & (record.tag == Tag.INTERVENTION)
    done = np.arange(length) == length - 1
    per_episode = {
        fmt.EPISODE_ID: np.array([record.id], dtype=np.int64),
        fmt.TAG: np.array([fmt.TAG_CODE_MAP[record.tag]], dtype=np.int64),
        fmt.REVIEW: np.array([fmt.REVIEW_CODE_MAP[record.review_status]], dtype=np.int64),
    }
    for t in range(length):
        frame: dict[str, Any] = {
            fmt.STATE: frames.state[t],
            fmt.ACTION: frames.action[t],
            fmt.REWARD: frames.reward[t : t + 1],
            fmt.DONE: done[t : t + 1],
            fmt.CONTROLLER: controller[t : t + 1],
            fmt.INTERVENTION: intervention[t : t + 1],
            fmt.POLICY_ACTION: frames.policy_action[t],
            fmt.POLICY_ACTION_VALID: frames.policy_action_valid[t : t + 1],
            **per_episode,
            "task": record.task,
        }
        for camera in cameras:
            frame[fmt.IMAGE_PREFIX + camera] = frames.images[camera][t]
        dataset.add_frame(frame)


def _episode_meta(index: int, record: EpisodeRecord) -> EpisodeMeta:
    return EpisodeMeta(
        episode_index=index,
        flywheel_episode_id=record.id,
        task=record.task,
        tag=record.tag,
        review_status=record.review_status,
        success=record.success,
        env_seed=record.env_seed,
        policy_version_id=record.policy_version_id,
        iteration=record.iteration,
        operator=record.operator,
        created_at=record.created_at.isoformat(),
        segments=tuple(SegmentMeta(s.start, s.end, s.controller, s.operator, s.trigger) for s in record.segments),
    )
