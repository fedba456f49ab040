"""Store benchmark: episode ingest, random training reads (vs lerobot's LeRobotDataset), list latency at scale.

    python -m bench.store [--plain-episodes 60] [--camera-episodes 20] [--frames 300] [--rows 100000]

Writes bench/results/store.json and prints a one-line summary. Everything runs in a scratch FLYWHEEL home
(SQLite) under a temp directory that is removed afterwards; nothing touches the network.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import sqlite3
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sqlalchemy import event, insert, text

from bench.common import headless_defaults, task_names
from bench.report import run_and_report
from flywheel.config import Settings
from flywheel.interop.task_shapes import task_shapes
from flywheel.registry import PolicyRegistry
from flywheel.store import EpisodeFilter, EpisodeRecord, EpisodeStore, NewEpisode
from flywheel.store.models import Episode
from flywheel.store.reader import FrameReader
from flywheel.vocab import CONTROLLER_CODES, DEFAULT_CAMERA, DEFAULT_IMAGE_SIZE, TAGS, ControllerKind, EpisodeFrames

RESULTS = Path(__file__).resolve().parent / "results" / "store.json"
TASKS = task_names()
_SHAPES = task_shapes(TASKS[0])  # the synthetic episodes are the first task's
STATE_DIM, ACTION_DIM = _SHAPES.state_dim, _SHAPES.action_dim
READ_TARGET_RATIO = 5.0
LIST_TARGET_P95_MS = 50.0


# -- synthetic episodes ----------------------------------------------------------------------------


def synthetic_frames(rng: np.random.Generator, length: int, controllers: np.ndarray, camera: bool) -> EpisodeFrames:
    """Plausible frames: smooth joint trajectories; images are a blocky scene with a moving object (PNG-friendly
    like real renders, unlike pure noise)."""
    t = np.linspace(0, 1, length, dtype=np.float32)[:, None]
    state = np.sin(t * rng.uniform(1, 6, STATE_DIM) + rng.uniform(0, 6, STATE_DIM)).astype(np.float32)
    action = np.cos(t * rng.uniform(1, 6, ACTION_DIM) + rng.uniform(0, 6, ACTION_DIM)).astype(np.float32)
    images = {}
    if camera:
        h, w = DEFAULT_IMAGE_SIZE
        scene = np.kron(rng.integers(40, 200, (6, 8, 3), dtype=np.uint8), np.ones((h // 6, w // 8, 1), np.uint8))
        video = np.repeat(scene[None], length, axis=0)
        for i in range(length):
            y, x = 20 + (i * 7) % (h - 40), 10 + (i * 3) % (w - 30)
            video[i, y : y + 12, x : x + 12] = (220, 30, 30)
        images[DEFAULT_CAMERA] = video
    policy = controllers == CONTROLLER_CODES[ControllerKind.POLICY]
    return EpisodeFrames(
        state=state,
        action=action,
        policy_action=np.where(policy[:, None], action, 0).astype(np.float32),
        policy_action_valid=policy,
        reward=np.clip(np.floor(t[:, 0] * 5), 0, 4).astype(np.float32),
        controller=controllers,
        images=images,
    )


def controllers_for(kind: str, length: int) -> np.ndarray:
    p, h, e = (CONTROLLER_CODES[c] for c in (ControllerKind.POLICY, ControllerKind.HUMAN, ControllerKind.EXPERT))
    codes = np.full(length, {"demo": e, "autonomous": p, "intervention": p}[kind], dtype=np.uint8)
    if kind == "intervention":
        codes[length // 3 : length // 2] = h
    return codes


# -- ingest ----------------------------------------------------------------------------------------


def bench_ingest(
    store: EpisodeStore, policy_id: int, count: int, length: int, camera: bool, rng: np.random.Generator
) -> tuple[dict[str, float], list[EpisodeRecord]]:
    kinds = [TAGS[i % len(TAGS)] for i in range(count)]
    episodes = [
        NewEpisode(
            task=TASKS[0],
            frames=synthetic_frames(rng, length, controllers_for(kind, length), camera),
            env_seed=i,
            success=bool(i % 2),
            policy_version_id=None if kind == "demo" else policy_id,
        )
        for i, kind in enumerate(kinds)
    ]
    start = time.perf_counter()
    records = [store.add(episode) for episode in episodes]
    elapsed = time.perf_counter() - start
    total_bytes = sum(r.bytes for r in records)
    return {
        "episodes": count,
        "frames_per_episode": length,
        "seconds": elapsed,
        "episodes_per_s": count / elapsed,
        "mb_per_s": total_bytes / elapsed / 1e6,
        "mb_per_episode": total_bytes / count / 1e6,
    }, records


# -- training reads --------------------------------------------------------------------------------


def write_lerobot(store: EpisodeStore, records: Sequence[EpisodeRecord], root: Path) -> float:
    """The same episodes through lerobot's writer (PNG image feature, no video); returns frames/s."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset
    from lerobot.utils.utils import SuppressProgressBars

    h, w = DEFAULT_IMAGE_SIZE
    features = {
        "observation.state": {"dtype": "float32", "shape": (STATE_DIM,), "names": None},
        f"observation.images.{DEFAULT_CAMERA}": {
            "dtype": "image",
            "shape": (h, w, 3),
            "names": ["height", "width", "channel"],
        },
        "action": {"dtype": "float32", "shape": (ACTION_DIM,), "names": None},
        "next.reward": {"dtype": "float32", "shape": (1,), "names": None},
        "controller": {"dtype": "int64", "shape": (1,), "names": None},
    }
    start = time.perf_counter()
    frames_written = 0
    with SuppressProgressBars():
        dataset = LeRobotDataset.create(
            "bench/store", fps=50, features=features, root=root, use_videos=False, image_writer_threads=4
        )
        for record in records:
            frames = store.read_record_frames(record)
            controller = frames.controller.astype(np.int64)
            for t in range(len(frames)):
                dataset.add_frame(
                    {
                        "observation.state": frames.state[t],
                        f"observation.images.{DEFAULT_CAMERA}": frames.images[DEFAULT_CAMERA][t],
                        "action": frames.action[t],
                        "next.reward": frames.reward[t : t + 1],
                        "controller": controller[t : t + 1],
                        "task": record.task,
                    }
                )
            dataset.save_episode()
            frames_written += len(frames)
        dataset.stop_image_writer()
        dataset.finalize()
    return frames_written / (time.perf_counter() - start)


def _to_torch(batch: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """What a training step needs: float CHW images in [0, 1] (as lerobot returns them) and float vectors."""
    out = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in batch.items() if not k.startswith("image/")}
    for key, images in batch.items():
        if key.startswith("image/"):
            # Convert in HWC order, then a CHW view (channels_last memory format, which torch convs accept).
            out[key] = torch.from_numpy(images).to(torch.float32).div_(255).permute(0, 3, 1, 2)
    return out


def bench_reads(
    store: EpisodeStore, records: Sequence[EpisodeRecord], lerobot_root: Path, batches: int, batch_size: int, seed: int
) -> dict[str, Any]:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    start = time.perf_counter()
    reader = FrameReader(store.files, records, verify=True)
    open_seconds = time.perf_counter() - start
    rng = np.random.default_rng(seed)
    index_batches = [rng.integers(0, len(reader), batch_size) for _ in range(batches)]

    reader.batch(index_batches[0])  # warm-up (first-touch page faults of the maps)
    start = time.perf_counter()
    for idx in index_batches:
        reader.batch(idx)
    ours = batches * batch_size / (time.perf_counter() - start)
    _to_torch(reader.batch(index_batches[0]))
    start = time.perf_counter()
    for idx in index_batches:
        _to_torch(reader.batch(idx))
    ours_torch = batches * batch_size / (time.perf_counter() - start)

    dataset = LeRobotDataset("bench/store", root=lerobot_root)
    if len(dataset) != len(reader):
        raise RuntimeError(f"lerobot copy has {len(dataset)} frames, the store {len(reader)}")
    _check_same_frames(reader, dataset, index_batches[0][:8])
    start = time.perf_counter()
    for idx in index_batches:
        for i in idx:
            dataset[int(i)]
    theirs = batches * batch_size / (time.perf_counter() - start)
    return {
        "frames_indexed": len(reader),
        "batches": batches,
        "batch_size": batch_size,
        "reader_open_seconds_incl_sha256": open_seconds,
        "train_read_frames_per_s": ours,
        "train_read_torch_frames_per_s": ours_torch,
        "lerobot_read_frames_per_s": theirs,
        "read_speedup_vs_lerobot": ours / theirs,
        "read_speedup_vs_lerobot_torch": ours_torch / theirs,
    }


def _check_same_frames(reader: FrameReader, dataset: Any, indices: np.ndarray) -> None:
    """Guard the comparison: both readers must return the same frame for the same index."""
    ours = reader.batch(indices)
    for row, i in enumerate(indices):
        item = dataset[int(i)]
        image = (item[f"observation.images.{DEFAULT_CAMERA}"] * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        same = np.array_equal(image, ours[f"image/{DEFAULT_CAMERA}"][row]) and np.array_equal(
            item["observation.state"].numpy(), ours["state"][row]
        )
        if not same:
            raise RuntimeError(f"frame {i} differs between the store and the lerobot copy")


# -- list queries at scale -------------------------------------------------------------------------


def bulk_rows(
    store: EpisodeStore, templates: Sequence[EpisodeRecord], policy_ids: Sequence[int], rows: int, seed: int
) -> float:
    """Insert `rows` episode rows (pointing at real files) with SQLAlchemy core; returns rows/s."""
    rng = np.random.default_rng(seed)
    base = datetime.now(UTC) - timedelta(days=60)
    table = Episode.__table__
    start = time.perf_counter()
    chunk = 10_000
    for offset in range(0, rows, chunk):
        n = min(chunk, rows - offset)
        tags = rng.choice(TAGS, n, p=[0.2, 0.5, 0.3])
        tasks = rng.choice(TASKS, n, p=[0.6, 0.4])
        reviews = rng.choice(["unreviewed", "accepted", "rejected"], n, p=[0.7, 0.2, 0.1])
        success = rng.random(n) < 0.4
        policies = rng.choice(policy_ids, n)
        values = []
        for j in range(n):
            template = templates[(offset + j) % len(templates)]
            values.append(
                {
                    "task": str(tasks[j]),
                    "tag": str(tags[j]),
                    "policy_version_id": None if tags[j] == "demo" else int(policies[j]),
                    "iteration": (offset + j) * 50 // rows,
                    "env_seed": offset + j,
                    "length": template.length,
                    "success": bool(success[j]),
                    "return": float(template.episode_return),
                    "operator": "bench",
                    "review_status": str(reviews[j]),
                    "review_version": 0,
                    "file_uri": template.file_uri,
                    "sha256": template.sha256,
                    "bytes": template.bytes,
                    "cameras": [],
                    "created_at": base + timedelta(seconds=(offset + j) * 50 + float(rng.random())),
                }
            )
        with store.db.engine.begin() as conn:
            conn.execute(insert(table), values)
    return rows / (time.perf_counter() - start)


def _timed(fn: Callable[[], object], repeats: int) -> list[float]:
    fn()
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def _query_plan(store: EpisodeStore, fn: Callable[[], object]) -> list[str]:
    """SQLite's plan for the SELECT that `fn` issues (captured from the engine, then EXPLAINed)."""
    captured: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            captured.append((statement, parameters))

    event.listen(store.db.engine, "before_cursor_execute", capture)
    try:
        fn()
    finally:
        event.remove(store.db.engine, "before_cursor_execute", capture)
    statement, parameters = captured[0]
    with store.db.engine.connect() as conn:
        rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()
    return [str(r[-1]) for r in rows]


def bench_list(store: EpisodeStore, repeats: int, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)

    def random_filter(keys: tuple[str, ...] = ("tag", "task", "success"), **fixed: Any) -> Callable[[], EpisodeFilter]:
        """A filter with fresh random values for `keys` on every call (so rare combinations are timed too)."""

        def make() -> EpisodeFilter:
            values = {"tag": str(rng.choice(TAGS)), "task": str(rng.choice(TASKS)), "success": bool(rng.random() < 0.5)}
            return EpisodeFilter(**{k: values[k] for k in keys}, **fixed)

        return make

    combos: dict[str, Callable[[], EpisodeFilter]] = {
        "tag+task+success": random_filter(limit=50),
        "tag+task+success, reviewed accepted": random_filter(review_status="accepted", limit=50),
        "task": random_filter(("task",), limit=50),
        "task+success, not rejected": random_filter(("task", "success"), exclude_rejected=True, limit=50),
        "tag, page 20": random_filter(("tag",), limit=50, offset=1000),
        "policy version": lambda: EpisodeFilter(policy_version_id=int(rng.integers(1, 6)), limit=50),
        "iteration": lambda: EpisodeFilter(iteration=int(rng.integers(0, 50)), limit=50),
        "review unreviewed": lambda: EpisodeFilter(review_status="unreviewed", limit=50),
        "no filter": lambda: EpisodeFilter(limit=50),
    }
    queries: dict[str, Any] = {}
    pooled: list[float] = []
    for name, make in combos.items():
        timings = _timed(lambda make=make: store.list_episodes(make()), repeats)
        pooled += timings
        queries[name] = {
            "p50_ms": float(np.percentile(timings, 50)),
            "p95_ms": float(np.percentile(timings, 95)),
            "plan": _query_plan(store, lambda make=make: store.list_episodes(make())),
        }
    headline = combos["tag+task+success"]

    def count() -> int:
        f = headline()
        return store.count(EpisodeFilter(tag=f.tag, task=f.task, success=f.success))

    def cli_list() -> None:  # what `flywheel episodes list --tag --task --success` runs: the page + the total
        f = headline()
        store.list_episodes(f)
        store.count(EpisodeFilter(tag=f.tag, task=f.task, success=f.success))

    count_ms, cli_ms = _timed(count, repeats), _timed(cli_list, repeats)
    return {
        "list_query_p50_ms": float(np.percentile(pooled, 50)),
        "list_query_p95_ms": float(np.percentile(pooled, 95)),
        "list_query_tag_task_success_p95_ms": queries["tag+task+success"]["p95_ms"],
        "list_count_p50_ms": float(np.percentile(count_ms, 50)),
        "list_count_p95_ms": float(np.percentile(count_ms, 95)),
        "list_count_plan": _query_plan(store, count),
        "list_cli_p95_ms": float(np.percentile(cli_ms, 95)),
        "list_repeats": repeats,
        "list_queries": queries,
    }


def index_advice(queries: dict[str, Any], count_plan: list[str], count_p95: float) -> list[str]:
    """Name the index that would fix each combination that misses the target (read off its SQLite plan)."""
    advice = []
    for name, q in queries.items():
        if q["p95_ms"] < LIST_TARGET_P95_MS:
            continue
        line = f"{name}: p95 {q['p95_ms']:.1f} ms, plan {q['plan']}"
        searched = next((m.group(1) for step in q["plan"] if (m := re.search(r"\((.+?)\)", step))), None)
        if searched and any("TEMP B-TREE FOR ORDER BY" in step for step in q["plan"]):
            columns = [part.split("=")[0].strip() for part in searched.split(" AND ")]
            line += (
                f"; the ORDER BY created_at sorts every match: an index on ({', '.join(columns)}, created_at) "
                "serves it (or ANALYZE, so SQLite walks ix_episode_created instead)"
            )
        advice.append(line)
    if count_p95 >= LIST_TARGET_P95_MS:
        advice.append(
            f"count: p95 {count_p95:.1f} ms, plan {count_plan}; a covering index (task, tag, success) "
            "would answer the total from the index alone"
        )
    return advice


# -- driver ----------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plain-episodes", type=int, default=60, help="state-only episodes to ingest")
    parser.add_argument("--camera-episodes", type=int, default=20, help="episodes with one 96x128 camera")
    parser.add_argument("--frames", type=int, default=300, help="frames per episode")
    parser.add_argument("--batches", type=int, default=100, help="random read batches")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rows", type=int, default=100_000, help="episode rows for the list-latency test")
    parser.add_argument("--repeats", type=int, default=60, help="timed repeats per list query")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--torch-threads", type=int, default=1, help="as in DataLoader workers; >1 thrashes on a shared 2-core box"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> dict[str, Any]:
    headless_defaults()  # before lerobot is imported
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    torch.set_num_threads(args.torch_threads)
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory(prefix="flywheel-bench-") as tmp:
        store = EpisodeStore.open(Settings(home=Path(tmp) / "home"))
        policy = _register_policy(store)
        plain, _ = bench_ingest(store, policy, args.plain_episodes, args.frames, False, rng)
        camera, camera_records = bench_ingest(store, policy, args.camera_episodes, args.frames, True, rng)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            lerobot_write = write_lerobot(store, camera_records, Path(tmp) / "lerobot")
        reads = bench_reads(store, camera_records, Path(tmp) / "lerobot", args.batches, args.batch_size, args.seed)
        store.db.dispose()

        listing = EpisodeStore.open(Settings(home=Path(tmp) / "list"))
        templates = [
            listing.add(
                NewEpisode(
                    TASKS[0], synthetic_frames(rng, args.frames, controllers_for("demo", args.frames), False), i, True
                )
            )
            for i in range(8)
        ]
        policy_ids = [_register_policy(listing) for _ in range(5)]
        insert_rate = bulk_rows(listing, templates, policy_ids, args.rows, args.seed)
        with listing.db.engine.connect() as conn:
            rows = int(conn.execute(text("SELECT count(*) FROM episode")).scalar_one())
        lists = bench_list(listing, args.repeats, args.seed)
        listing.db.dispose()

    total_episodes = plain["episodes"] + camera["episodes"]
    total_seconds = plain["seconds"] + camera["seconds"]
    total_mb = plain["mb_per_s"] * plain["seconds"] + camera["mb_per_s"] * camera["seconds"]
    return {
        "bench": "store",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version,
            "lerobot": version("lerobot"),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "loadavg_1min_at_start": load_before,
        },
        "params": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "ingest_episodes_per_s": total_episodes / total_seconds,
        "ingest_mb_per_s": total_mb / total_seconds,
        "ingest_state_only_episodes_per_s": plain["episodes_per_s"],
        "ingest_state_only_mb_per_s": plain["mb_per_s"],
        "ingest_camera_episodes_per_s": camera["episodes_per_s"],
        "ingest_camera_mb_per_s": camera["mb_per_s"],
        "ingest": {"state_only": plain, "camera_96x128": camera},
        **reads,
        "read_target_ratio": READ_TARGET_RATIO,
        "read_target_met": reads["read_speedup_vs_lerobot"] >= READ_TARGET_RATIO,
        "lerobot_write_frames_per_s": lerobot_write,
        "rows": rows,
        "bulk_insert_rows_per_s": insert_rate,
        **lists,
        "list_target_p95_ms": LIST_TARGET_P95_MS,
        "list_target_met": lists["list_query_p95_ms"] < LIST_TARGET_P95_MS,
        "index_advice": index_advice(lists["list_queries"], lists["list_count_plan"], lists["list_count_p95_ms"]),
        "seconds": time.perf_counter() - started,
    }


def _register_policy(store: EpisodeStore) -> int:
    return (
        PolicyRegistry(store.db)
        .register_candidate(
            task=TASKS[0], checkpoint_uri="bench", sha256="0" * 64, config={}, data_fingerprint={}, metrics={}
        )
        .id
    )


def summary(result: dict[str, Any]) -> str:
    return (
        f"store: ingest {result['ingest_state_only_episodes_per_s']:.0f} ep/s state-only, "
        f"{result['ingest_camera_episodes_per_s']:.1f} ep/s ({result['ingest_camera_mb_per_s']:.0f} MB/s) "
        "with camera | "
        f"train reads {result['train_read_frames_per_s']:.0f} frames/s vs lerobot "
        f"{result['lerobot_read_frames_per_s']:.0f} ({result['read_speedup_vs_lerobot']:.1f}x, "
        f"{result['read_speedup_vs_lerobot_torch']:.1f}x as torch) | "
        f"list @ {result['rows']} rows p50 {result['list_query_p50_ms']:.1f} ms p95 "
        f"{result['list_query_p95_ms']:.1f} ms | {result['seconds']:.0f} s"
    )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    return run_and_report(run, summary, parse_args(argv))


if __name__ == "__main__":
    main()
