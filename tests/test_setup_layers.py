"""scripts/setup.sh: two checkouts sharing the cached environment each run their own code; the cache is untouched."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.checkout_support import REPO, copy_checkout


def _cached_env() -> Path | None:
    """The complete cached environment this test runs on, when it is the one setup.sh would pick."""
    prefix = Path(sys.prefix)
    base = Path((prefix / "flywheel-base").read_text().strip()) if (prefix / "flywheel-base").exists() else prefix
    base = base.resolve()
    if not (base / ".complete").exists():
        return None
    # Mirrors setup.sh's cache key: a different key would mean a cold install of several minutes.
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    deps = {"deps": project["dependencies"], "extras": project.get("optional-dependencies", {}), "v": 1}
    blob = json.dumps(deps, sort_keys=True) + sys.version.split()[0]
    return base if base.name == hashlib.sha256(blob.encode()).hexdigest()[:16] else None


def _site_listing(base: Path) -> list[str]:
    site = next(base.glob("lib/python3*/site-packages"))
    return sorted(f"{p.name}:{p.stat().st_mtime_ns}" for p in site.iterdir())


def test_each_checkout_runs_its_own_code(tmp_path: Path) -> None:
    base = _cached_env()
    if base is None:
        pytest.skip("no complete cached environment for this pyproject (setup.sh would cold-install)")
    before = _site_listing(base)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["FLYWHEEL_VENV_CACHE"] = str(base.parent)
    clones = [copy_checkout(tmp_path / name) for name in ("a", "b")]
    for clone in clones:
        result = subprocess.run(
            ["bash", "scripts/setup.sh"], cwd=clone, env=env, capture_output=True, text=True, timeout=600
        )
        assert result.returncode == 0, result.stdout + result.stderr
    for clone in clones:
        probe = "import flywheel, sim, app; print(flywheel.__file__, sim.__file__, app.__file__)"
        shown = subprocess.run(
            [str(clone / ".venv/bin/python"), "-c", probe], cwd="/", env=env, capture_output=True, text=True
        )
        assert shown.stdout.split() == [str(clone / p / "__init__.py") for p in ("flywheel", "sim", "app")]
        cli = subprocess.run([str(clone / ".venv/bin/flywheel"), "--help"], cwd="/", env=env, capture_output=True)
        assert cli.returncode == 0
        assert (clone / ".venv/bin/pytest").read_text().startswith(f"#!{clone}/.venv/bin/python")
    assert _site_listing(base) == before  # the shared cache was not modified
