"""Import a local LeRobotDataset (v3.0) into the store through `EpisodeStore.add`.

Controllers come from the dataset's `controller` feature when it has one (flywheel exports do), so tags
round-trip; a plain external dataset has no controller information and every frame counts as `expert`
(or `human`), which makes each episode a `demo`. Data whose state/action sizes are not the task's are refused
before anything is written. Each episode gets a source key derived from the dataset's metadata, so a re-run
(or a resumed, killed import) skips what is already stored instead of duplicating it.

A dataset is data, not instructions: every file it names or holds (path templates, symbolic links) must lie
inside its root, camera and operator names must follow `flywheel.identity`'s pattern, and the operators it
names are stored as claims (`claimed_operator`) while `operator` records who ran the import.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from lerobot.datasets.lerobot_dataset import LeRobotDataset, LeRobotDatasetMetadata
from lerobot.utils.utils import SuppressProgressBars

from flywheel.identity import NAME_RULE, acting_operator, is_valid_name
from flywheel.interop import lerobot_schema as fmt
from flywheel.interop.lerobot_schema import EpisodeMeta, InteropError, Sidecar
from flywheel.interop.task_shapes import TaskShapes, known_tasks, task_shapes
from flywheel.store import EpisodeRecord, EpisodeStore, NewEpisode
from flywheel.vocab import (
    CONTROLLER_BY_CODE,
    CONTROLLER_CODES,
    ControllerKind,
    EpisodeFrames,
    Tag,
    derive_segments,
    derive_tag,
    parse_tag,
)

UNKNOWN_SEED = -1  # external data: the episode was not produced from a known env seed
SUCCESS = "next.success"


@dataclass(frozen=True)
class SourceEpisode:
    index: int
    start: int
    end: int
    task: str
    tag: Tag
    meta: EpisodeMeta | None


@dataclass(frozen=True)
class ImportPlan:
    """A validated dataset and the episodes that will be imported (`skipped`: filtered out by tag)."""

    root: Path
    dataset: LeRobotDataset
    sidecar: Sidecar | None
    cameras: dict[str, str]  # camera name -> feature key
    episodes: tuple[SourceEpisode, ...]
    skipped: tuple[SourceEpisode, ...]
    fingerprint: str
    controller_map: dict[int, int] | None  # dataset code -> store code; None: no controller feature
    default_controller: ControllerKind

    def source_key(self, episode: SourceEpisode) -> str:
        return f"lerobot:{self.fingerprint}:{episode.index}"


@dataclass(frozen=True)
class ImportReport:
    imported: tuple[int, ...]  # new episode ids
    already_present: tuple[int, ...]  # ids of episodes a previous run of the same import stored
    skipped: int
    frames: int
    counts_by_tag: dict[str, int]


def import_lerobot(
    store: EpisodeStore,
    path: Path,
    *,
    task: str | None = None,
    tags: Sequence[str] = (),
    default_controller: ControllerKind = ControllerKind.EXPERT,
    policy_version_id: int | None = None,
    default_success: bool = True,
    importer: str | None = None,
) -> ImportReport:
    """`plan_import` then `run_import`."""
    plan = plan_import(path, task=task, tags=tags, default_controller=default_controller)
    return run_import(
        store, plan, policy_version_id=policy_version_id, default_success=default_success, importer=importer
    )


def plan_import(
    path: Path,
    *,
    task: str | None = None,
    tags: Sequence[str] = (),
    default_controller: ControllerKind = ControllerKind.EXPERT,
) -> ImportPlan:
    """Open and validate a local dataset (never the network); decide the task and tag of every episode."""
    root = Path(path).resolve()
    _check_local_files(root)
    _check_files_inside(root)
    wanted = {parse_tag(t) for t in tags}
    if default_controller is ControllerKind.POLICY:
        raise InteropError("external frames cannot default to the policy controller: use expert or human")
    with SuppressProgressBars():
        meta = LeRobotDatasetMetadata(f"local/{root.name}", root=root)
        _check_templates(root, meta)
        _check_videos(root, meta)
        dataset = LeRobotDataset(f"local/{root.name}", root=root)
    features = dataset.meta.features
    if dataset.meta.fps != fmt.FPS:
        raise InteropError(f"{root} records at {dataset.meta.fps} fps; flywheel tasks run at {fmt.FPS} Hz")
    state_dim, action_dim = _vector_dim(features, fmt.STATE, root), _vector_dim(features, fmt.ACTION, root)
    cameras = _cameras(features, root)
    sidecar = Sidecar.read(root)
    _check_operator_names(sidecar, root)
    controller_map = _controller_map(features, sidecar, root)
    table = dataset.hf_dataset.with_format("numpy", columns=[fmt.CONTROLLER] if controller_map else [])
    shapes: dict[str, TaskShapes] = {}
    chosen, skipped = [], []
    for row in dataset.meta.episodes:
        index, start, end = int(row["episode_index"]), int(row["dataset_from_index"]), int(row["dataset_to_index"])
        episode_meta = sidecar.episode(index) if sidecar else None
        episode_task = _episode_task(task, episode_meta, list(row["tasks"]), root, index)
        if episode_task not in shapes:
            shapes[episode_task] = task_shapes(episode_task)
            shapes[episode_task].check(state_dim, action_dim, f"dataset {root}")
        if controller_map is None:
            tag = Tag.DEMO
        else:
            codes = np.asarray(table[start:end][fmt.CONTROLLER]).reshape(-1)
            tag = derive_tag(_map_codes(codes, controller_map, root, index))
        episode = SourceEpisode(index, start, end, episode_task, tag, episode_meta)
        (chosen if not wanted or tag in wanted else skipped).append(episode)
    return ImportPlan(
        root=root,
        dataset=dataset,
        sidecar=sidecar,
        cameras=cameras,
        episodes=tuple(chosen),
        skipped=tuple(skipped),
        fingerprint=_fingerprint(root),
        controller_map=controller_map,
        default_controller=default_controller,
    )


def run_import(
    store: EpisodeStore,
    plan: ImportPlan,
    *,
    policy_version_id: int | None = None,
    default_success: bool = True,
    on_episode: Callable[[SourceEpisode], None] | None = None,
    importer: str | None = None,
) -> ImportReport:
    """Store the planned episodes. Policy-controlled ones are attributed to `policy_version_id` (must exist).

    `importer` (default: the OS user running the import) is recorded as each episode's operator; the operators
    the dataset names are kept as claims."""
    importer = acting_operator(importer, "importing operator name")
    _check_policy(store, plan, policy_version_id)
    imported: list[int] = []
    present: list[int] = []
    counts = {t.value: 0 for t in Tag}
    frames_total = 0
    for episode in plan.episodes:
        existing = store.find_by_source_key(plan.source_key(episode))
        if existing is not None:
            present.append(existing.id)
        else:
            record = _store_episode(store, plan, episode, policy_version_id, default_success, importer)
            imported.append(record.id)
            counts[record.tag] += 1
            frames_total += record.length
        if on_episode is not None:
            on_episode(episode)
    return ImportReport(tuple(imported), tuple(present), len(plan.skipped), frames_total, counts)


def _store_episode(
    store: EpisodeStore,
    plan: ImportPlan,
    episode: SourceEpisode,
    policy_version_id: int | None,
    default_success: bool,
    importer: str,
) -> EpisodeRecord:
    frames, success = _read_episode(plan, episode)
    meta = episode.meta
    segments = meta.segments if meta else ()
    return store.add(
        NewEpisode(
            task=episode.task,
            frames=frames,
            env_seed=meta.env_seed if meta else UNKNOWN_SEED,
            success=meta.success if meta else (default_success if success is None else success),
            policy_version_id=None if episode.tag is Tag.DEMO else policy_version_id,
            operator=importer,
            claimed_operator=meta.operator if meta else None,
            source_key=plan.source_key(episode),
            segments=derive_segments(
                frames.controller,
                triggers={s.start: s.trigger for s in segments if s.trigger},
                claimed_operators={s.start: s.operator for s in segments if s.operator},
            ),
        )
    )


def _read_episode(plan: ImportPlan, episode: SourceEpisode) -> tuple[EpisodeFrames, bool | None]:
    """Frames of one episode (columns read in bulk; video frames decoded through lerobot's reader)."""
    ds = plan.dataset
    features = ds.meta.features
    optional = (fmt.CONTROLLER, fmt.REWARD, fmt.POLICY_ACTION, fmt.POLICY_ACTION_VALID, SUCCESS)
    images = [key for key in plan.cameras.values() if features[key]["dtype"] == "image"]
    columns = [fmt.STATE, fmt.ACTION, "episode_index", "frame_index", *images]
    columns += [k for k in optional if k in features]
    rows = ds.hf_dataset.with_format("numpy", columns=columns)[episode.start : episode.end]
    length = episode.end - episode.start
    if not (np.all(rows["episode_index"] == episode.index) and np.array_equal(rows["frame_index"], np.arange(length))):
        raise InteropError(f"{plan.root}: episode {episode.index} rows are not contiguous in the data files")
    if plan.controller_map is None:
        controller = np.full(length, CONTROLLER_CODES[plan.default_controller], dtype=np.uint8)
    else:
        controller = _map_codes(
            np.asarray(rows[fmt.CONTROLLER]).reshape(-1), plan.controller_map, plan.root, episode.index
        )
    camera_frames = {}
    for camera, key in plan.cameras.items():
        if key in images:
            camera_frames[camera] = np.asarray(rows[key], dtype=np.uint8)
        else:
            camera_frames[camera] = _decode_video(ds, key, episode)
    has_proposal = fmt.POLICY_ACTION in rows
    valid = rows.get(fmt.POLICY_ACTION_VALID)
    frames = EpisodeFrames(
        state=rows[fmt.STATE],
        action=rows[fmt.ACTION],
        reward=np.asarray(rows[fmt.REWARD]).reshape(-1) if fmt.REWARD in rows else np.zeros(length, np.float32),
        controller=controller,
        policy_action=rows[fmt.POLICY_ACTION] if has_proposal else None,
        policy_action_valid=np.asarray(valid).reshape(-1) if has_proposal and valid is not None else None,
        images=camera_frames,
    )
    success = bool(np.asarray(rows[SUCCESS]).any()) if SUCCESS in rows else None
    return frames, success


def _decode_video(ds: LeRobotDataset, key: str, episode: SourceEpisode) -> np.ndarray:
    """Video frames via lerobot's own item reader: float (3, H, W) in [0, 1] → uint8 (T, H, W, 3)."""
    out = []
    for index in range(episode.start, episode.end):
        item = ds[index][key]
        out.append((item.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy())
    return np.stack(out)


def _check_local_files(root: Path) -> None:
    """Everything lerobot would otherwise try to download must be here (imports never touch the network)."""
    info_path = root / "meta" / "info.json"
    if not info_path.is_file():
        raise InteropError(
            f"{root} is not a local LeRobotDataset (no meta/info.json); download a hub dataset first, e.g. "
            "`huggingface-cli download --repo-type dataset <repo_id> --local-dir DIR`"
        )
    try:
        version = str(json.loads(info_path.read_text())["codebase_version"])
    except (ValueError, KeyError) as exc:
        raise InteropError(f"{info_path} is unreadable ({exc})") from None
    if not version.startswith("v3."):
        raise InteropError(
            f"{root} is a LeRobotDataset {version}; convert it to v3.0 first with "
            "`python -m lerobot.datasets.v30.convert_dataset_v21_to_v30`"
        )
    for pattern in ("meta/tasks.parquet", "meta/episodes/*/*.parquet", "data/*/*.parquet"):
        if not any(root.glob(pattern)):
            raise InteropError(f"{root} is incomplete: nothing matches {pattern}")


def _inside(root: Path, path: Path) -> bool:
    return path.resolve().is_relative_to(root)


def _check_files_inside(root: Path) -> None:
    """Every file of the dataset's meta/, data/ and videos/ is inside its root (no link leads out of it)."""
    for folder in ("meta", "data", "videos"):
        base = root / folder
        if base.exists() and not _inside(root, base):
            raise InteropError(f"{root}: {folder}/ leads outside the dataset ({base.resolve()}); refusing to read it")
        for path in base.rglob("*") if base.is_dir() else ():
            if not _inside(root, path):
                rel = path.relative_to(root)
                raise InteropError(f"{root}: {rel} leads outside the dataset ({path.resolve()}); refusing to read it")


def _check_templates(root: Path, meta: LeRobotDatasetMetadata) -> None:
    """The data and video paths the dataset's templates give each episode stay inside its root."""
    for index in range(meta.total_episodes):
        named = [("data", meta.get_data_file_path(index))]
        named += [(f"{key} video", meta.get_video_file_path(index, key)) for key in meta.video_keys]
        for what, rel in named:
            if Path(rel).is_absolute() or not _inside(root, root / rel):
                raise InteropError(
                    f"{root}: the {what} path of episode {index} ({str(rel)[:120]!a}) points outside the dataset; "
                    "meta/info.json's path templates must stay inside it"
                )


def _check_operator_names(sidecar: Sidecar | None, root: Path) -> None:
    for episode in sidecar.episodes if sidecar else ():
        names = [episode.operator, *(s.operator for s in episode.segments)]
        for name in names:
            if name is not None and not is_valid_name(name):
                raise InteropError(
                    f"{root}: episode {episode.episode_index} names operator {str(name)[:24]!a}, which is not a "
                    f"valid name ({NAME_RULE}); fix meta/flywheel.json or remove its operator fields"
                )


def _check_videos(root: Path, meta: LeRobotDatasetMetadata) -> None:
    for key in meta.video_keys:
        for index in range(meta.total_episodes):
            if not (root / meta.get_video_file_path(index, key)).is_file():
                raise InteropError(f"{root} is incomplete: the {key} video of episode {index} is missing")


def _vector_dim(features: dict[str, dict], key: str, root: Path) -> int:
    feature = features.get(key)
    if feature is None or len(feature["shape"]) != 1 or not feature["dtype"].startswith("float"):
        raise InteropError(f"{root} has no float vector feature {key!r} (found: {', '.join(sorted(features))})")
    return int(feature["shape"][0])


def _cameras(features: dict[str, dict], root: Path) -> dict[str, str]:
    cameras = {}
    for key, feature in features.items():
        if feature["dtype"] not in ("image", "video"):
            continue
        name = key.removeprefix(fmt.IMAGE_PREFIX).removeprefix("observation.")
        if not is_valid_name(name):
            raise InteropError(f"{root}: camera feature {key[:80]!a} does not give a valid camera name ({NAME_RULE})")
        shape = tuple(feature["shape"])
        if len(shape) != 3 or 3 not in (shape[0], shape[2]):
            raise InteropError(f"{root}: camera feature {key!r} has shape {shape}, expected RGB (H, W, 3)")
        cameras[name] = key
    return cameras


def _controller_map(features: dict[str, dict], sidecar: Sidecar | None, root: Path) -> dict[int, int] | None:
    if fmt.CONTROLLER not in features:
        return None
    codes = sidecar.codes.get(fmt.CONTROLLER) if sidecar else fmt.CONTROLLER_CODE_MAP
    try:
        return {int(code): CONTROLLER_CODES[ControllerKind(name)] for name, code in (codes or {}).items()}
    except ValueError as exc:
        raise InteropError(f"{root}: unknown controller in the sidecar's code table ({exc})") from None


def _map_codes(codes: np.ndarray, mapping: dict[int, int], root: Path, index: int) -> np.ndarray:
    unknown = sorted(set(np.unique(codes).tolist()) - set(mapping))
    if unknown:
        known = {CONTROLLER_BY_CODE[v].value: k for k, v in mapping.items()}
        raise InteropError(f"{root}: episode {index} has controller codes {unknown}; the dataset's table is {known}")
    lookup = np.zeros(max(mapping) + 1, dtype=np.uint8)
    for source, target in mapping.items():
        lookup[source] = target
    return lookup[codes.astype(np.int64)]


def _episode_task(task: str | None, meta: EpisodeMeta | None, tasks: list[str], root: Path, index: int) -> str:
    recorded = meta.task if meta else (tasks[0] if len(tasks) == 1 else None)
    if task is not None:
        if meta is not None and meta.task != task:
            raise InteropError(f"{root}: episode {index} was exported from task {meta.task!r}, not {task!r}")
        return task
    if recorded in known_tasks():
        return str(recorded)
    raise InteropError(
        f"{root}: episode {index} has task {tasks!r}, not a flywheel task; pass --task ({' | '.join(known_tasks())})"
    )


def _check_policy(store: EpisodeStore, plan: ImportPlan, policy_version_id: int | None) -> None:
    acting = [e for e in plan.episodes if e.tag is not Tag.DEMO]
    if not acting:
        return
    if policy_version_id is None:
        by_tag = {t: sum(e.tag == t for e in acting) for t in (Tag.AUTONOMOUS, Tag.INTERVENTION)}
        raise InteropError(
            f"{len(acting)} episode(s) have policy-controlled frames "
            f"({', '.join(f'{t.value} {n}' for t, n in by_tag.items() if n)}); pass --policy with the local "
            "policy version to attribute them to, or --tag demo to import only demos"
        )
    from flywheel.registry import PolicyRegistry

    policy = PolicyRegistry(store.db).get(policy_version_id)
    mismatched = sorted({e.task for e in acting} - {policy.task})
    if mismatched:
        raise InteropError(
            f"policy {policy.id} is a {policy.task} policy; the dataset's policy episodes are {mismatched}"
        )


def _fingerprint(root: Path) -> str:
    """Identifies the dataset's content: info.json plus the episode metadata (which holds per-episode stats)."""
    digest = hashlib.sha256((root / "meta" / "info.json").read_bytes())
    for path in sorted((root / "meta" / "episodes").glob("*/*.parquet")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:24]
