"""What the benchmarks share: where results go, headless rendering and offline tracking by default, an atomic
JSON write, a row appended to a JSON list, and the header of a result read from a store."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flywheel.headless import headless_defaults

RESULTS = Path(__file__).resolve().parent / "results"
"""bench/results: every benchmark's default output folder."""


def task_names() -> tuple[str, ...]:
    """The simulator's tasks, in their own order (`sim.tasks.TASKS`); imports MuJoCo, headless."""
    headless_defaults()
    from sim.tasks import TASKS

    return tuple(TASKS)


def write_json(path: Path, doc: Any) -> None:
    """Write `doc` to `path` atomically (a reader never sees half a file), creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp, path)


def append_row(path: Path, row: dict[str, Any]) -> None:
    """Append `row` to the JSON list in `path` (a new list if there is none yet), written atomically."""
    rows = json.loads(path.read_text()) if path.is_file() else []
    write_json(path, [*rows, row])


def store_result_header(bench: str, home: Path) -> dict[str, Any]:
    """The fields a result read from a flywheel store starts with: the bench, when it ran, and the store's home."""
    return {"bench": bench, "created_at": datetime.now(UTC).isoformat(timespec="seconds"), "home": str(home)}
