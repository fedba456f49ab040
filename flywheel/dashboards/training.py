"""Training curves: the trainer's `metrics.jsonl` next to a version's checkpoint, else its final metrics.

The trainer appends `{"step": n, "train/loss": ..., ...}` rows to `<run dir>/metrics.jsonl` (and mirrors them
to wandb); the checkpoint registered for a version is `<run dir>/final`. Only final metrics are stored in the
policy version's row, so when the run directory is gone (another machine, cleaned up) that is all there is.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from flywheel.registry.records import PolicyRecord

METRICS_FILE = "metrics.jsonl"
CURVE_COLUMNS = ["step", "metric", "value"]


@dataclass(frozen=True)
class TrainingCurves:
    """`curves` in long form (step, metric, value); `final` (metric, value) from the version's row."""

    policy_version_id: int
    source: Path | None  # the metrics file read, or None when only final metrics exist
    curves: pd.DataFrame
    final: pd.DataFrame

    @property
    def note(self) -> str:
        if self.source is not None:
            return f"from {self.source}"
        return (
            f"no {METRICS_FILE} next to the checkpoint of policy {self.policy_version_id}: "
            "only the final metrics stored with the version are shown"
        )


def metrics_file(checkpoint_uri: str) -> Path | None:
    """`metrics.jsonl` of the training run that produced a checkpoint, when it is still on disk."""
    checkpoint = Path(checkpoint_uri)
    for candidate in (checkpoint.parent / METRICS_FILE, checkpoint / METRICS_FILE):
        if candidate.is_file():
            return candidate
    return None


def _numeric(metrics: dict[str, object]) -> list[tuple[str, float]]:
    out = []
    for name, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if math.isfinite(float(value)):
            out.append((name, float(value)))
    return out


def read_metrics_file(path: Path) -> pd.DataFrame:
    """Long-form rows from a JSONL metrics file; a torn last line (a run killed mid-write) is skipped."""
    rows = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(record, dict) or not isinstance(record.get("step"), int):
            continue
        step = record["step"]
        rows.extend((step, name, value) for name, value in _numeric(record) if name != "step")
    return pd.DataFrame(rows, columns=CURVE_COLUMNS)


def training_curves(version: PolicyRecord) -> TrainingCurves:
    final = pd.DataFrame(_numeric(version.metrics), columns=["metric", "value"])
    source = metrics_file(version.checkpoint_uri)
    curves = read_metrics_file(source) if source is not None else pd.DataFrame(columns=CURVE_COLUMNS)
    return TrainingCurves(version.id, source, curves, final)


def final_metrics_by_version(versions: list[PolicyRecord]) -> pd.DataFrame:
    """policy_version_id, metric, value: the final training metrics of every version (for trends across them)."""
    rows = [(v.id, name, value) for v in versions for name, value in _numeric(v.metrics)]
    return pd.DataFrame(rows, columns=["policy_version_id", "metric", "value"])
