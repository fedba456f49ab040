"""Smoke run of bench/store.py at toy sizes: it completes, cross-checks the two readers, and writes its JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.store import main

KEYS = (
    "ingest_episodes_per_s",
    "ingest_mb_per_s",
    "ingest_state_only_episodes_per_s",
    "ingest_camera_episodes_per_s",
    "train_read_frames_per_s",
    "lerobot_read_frames_per_s",
    "read_speedup_vs_lerobot",
    "list_query_p50_ms",
    "list_query_p95_ms",
    "list_count_p95_ms",
)


def test_bench_store_smoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "store.json"
    args = ["--plain-episodes", "3", "--camera-episodes", "2", "--frames", "20", "--batches", "3"]
    args += ["--batch-size", "8", "--rows", "500", "--repeats", "3", "--out", str(out)]
    result = main(args)
    saved = json.loads(out.read_text())
    assert saved["rows"] == 500 + 8 and saved["frames_indexed"] == 2 * 20
    for key in KEYS:
        assert saved[key] > 0, key
    assert saved == json.loads(json.dumps(result))  # the file holds what the run measured, nothing recomputed
    assert all(q["plan"] for q in saved["list_queries"].values())
    assert result["ingest"]["camera_96x128"]["mb_per_episode"] > 20 * 96 * 128 * 3 / 1e6
    assert capsys.readouterr().out.startswith("store: ingest ")
