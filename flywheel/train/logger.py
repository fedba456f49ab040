"""Metrics sinks: a JSONL file always, wandb (offline unless WANDB_MODE says otherwise), the progress bar."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def wandb_settings() -> Any:
    """wandb without its run metadata: no command line (it may hold a database password), code, git or host info."""
    import wandb

    return wandb.Settings(x_disable_meta=True, disable_code=True, save_code=False, disable_git=True)


class MetricsLogger:
    """Writes `metrics.jsonl` in the run directory and mirrors to wandb when enabled (main process only)."""

    def __init__(self, out_dir: Path, enabled: bool, use_wandb: bool, project: str, config: dict) -> None:
        self.enabled = enabled
        self.path = out_dir / "metrics.jsonl"
        self._run: Any = None
        if enabled and use_wandb:
            import wandb

            os.environ.setdefault("WANDB_MODE", "offline")
            os.environ.setdefault("WANDB_SILENT", "true")
            self._run = wandb.init(
                project=project,
                dir=str(out_dir),
                config=config,
                mode=os.environ["WANDB_MODE"],
                reinit="finish_previous",
                settings=wandb_settings(),
            )

    def log(self, metrics: dict[str, float], step: int) -> None:
        if not self.enabled:
            return
        with self.path.open("a") as fh:
            fh.write(json.dumps({"step": step, **metrics}) + "\n")
        if self._run is not None:
            self._run.log(metrics, step=step)

    def close(self) -> None:
        if self._run is not None:
            self._run.finish()
            self._run = None


class Progress:
    """The training bar over all optimiser steps (`flywheel.progress.step_progress`; a no-op when disabled)."""

    def __init__(self, enabled: bool, total: int, start: int) -> None:
        self._bar = None
        if enabled:
            from flywheel.progress import step_progress

            self._bar = step_progress()
            self._bar.start()
            self._task = self._bar.add_task("train", total=total, completed=start, info="")

    def update(self, phase: str, info: str) -> None:
        """One step done; the count is over every phase's steps, so the label names the phase under way."""
        if self._bar is not None:
            self._bar.update(self._task, advance=1, description=f"training ({phase})", info=info)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
