"""`flywheel train` and `flywheel eval` as a user runs them: real demos, real training, real eval rollouts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from flywheel.config import Settings
from flywheel.policy.input_spec import read_checkpoint_inputs
from flywheel.registry import PolicyRegistry
from flywheel.store import EpisodeStore

ROOT = Path(__file__).resolve().parents[1]
TINY = "method: bc\nsteps: 3\n"  # over --preset tiny


def _flywheel(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FLYWHEEL_HOME": str(home), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "flywheel", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)


def test_train_registers_a_candidate_and_eval_stores_its_gates(tmp_path: Path) -> None:
    home = tmp_path / "home"
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY)
    assert _flywheel("demos", "--n", "2", home=home).returncode == 0

    trained = _flywheel("train", "--preset", "tiny", "--config", str(config), home=home)
    assert trained.returncode == 0, trained.stderr
    assert "registered candidate policy 1" in trained.stdout
    store = EpisodeStore.open(Settings(home=home))
    version = PolicyRegistry(store.db).get(1)
    assert version.status == "candidate" and "obs_mode" not in version.config  # the checkpoint says what it reads
    inputs = read_checkpoint_inputs(version.checkpoint_uri)
    assert inputs.obs_mode == "state" and inputs.privileged and "box_pose" in inputs.state_names
    assert version.data_fingerprint["counts_by_tag"] == {"demo": 2}

    evaluated = _flywheel("eval", "--policy", "1", "--episodes", "2", "--workers", "1", "--json", home=home)
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads(evaluated.stdout)
    assert report["summary"]["episodes"] == 2 and report["summary"]["latency_p95_ms"] > 0
    assert {g["gate"] for g in report["gates"]} >= {"success_floor", "finite_actions", "latency"}
    assert PolicyRegistry(store.db).get(1).status == "candidate"  # eval never promotes

    missing = _flywheel("train", "--config", str(tmp_path / "nope.yaml"), home=home)
    assert missing.returncode == 2 and "does not exist" in missing.stderr
