"""The built wheel works on its own: `pip install` of it (not editable) into a fresh venv migrates and lists a store.

The fresh venv reuses this environment's dependencies through a plain path line in a .pth file (so no editable
install's finder in that site-packages runs) and imports flywheel, migrations, app and sim only from the wheel.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import sqlalchemy

from flywheel.config import Settings
from flywheel.store import EpisodeStore, NewEpisode
from flywheel.vocab import ControllerKind
from tests.checkout_support import REPO, copy_checkout
from tests.conftest import make_frames

PACKAGES = ("flywheel", "migrations", "app", "sim")


def _env() -> dict[str, str]:
    """No PYTHONPATH, venv or flywheel settings of the caller: the fresh venv sees only what it holds."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME") and not k.startswith("FLYWHEEL_")
    }
    env.update({"WANDB_MODE": "offline", "MUJOCO_GL": env.get("MUJOCO_GL", "egl")})
    return env


def _run(cmd: list[str], cwd: Path) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{cmd} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def _build_wheel(tmp_path: Path) -> Path:
    """`pip wheel` from a copy of the working tree (setuptools writes build/ and egg-info into the source)."""
    source = copy_checkout(tmp_path / "src")
    dist = tmp_path / "dist"
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index"]
    _run([*pip_wheel, "-w", str(dist), str(source)], cwd=source)
    (wheel,) = dist.glob("flywheel-*.whl")
    return wheel


def _package_files() -> set[str]:
    """Every file of the distribution's packages in this checkout (what the wheel must hold)."""
    files: set[str] = set()
    for package in PACKAGES:
        for path in (REPO / package).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                files.add(path.relative_to(REPO).as_posix())
    return files


def test_wheel_installs_and_migrates_a_store(tmp_path: Path) -> None:
    wheel = _build_wheel(tmp_path)
    held = set(zipfile.ZipFile(wheel).namelist())
    missing = _package_files() - held
    assert not missing, f"the wheel lacks {sorted(missing)}"

    venv = tmp_path / "venv"  # inside a git repository, which is not the installed code's
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(tmp_path)]
    _run([*git, "init", "-q"], tmp_path)
    _run([*git, "commit", "-q", "--allow-empty", "-m", "unrelated"], tmp_path)
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp_path)
    python = venv / "bin" / "python"
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(_run([str(python), "-c", purelib], tmp_path).strip())
    deps = Path(sqlalchemy.__file__).resolve().parents[1]  # this environment's site-packages, .pth files unrun
    (site / "zz_flywheel_test_deps.pth").write_text(f"{deps}\n")

    work = tmp_path / "work"  # cwd: no checkout on sys.path
    work.mkdir()
    _run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--ignore-installed", str(wheel)], work)
    probe = (
        "import json, importlib; from flywheel.cli.console import APP_PATH; "
        "from flywheel.store.migrate import migrations_dir; "
        f"paths = {{p: importlib.import_module(p).__file__ for p in {PACKAGES!r}}}; "
        "paths.update(app_path=str(APP_PATH), migrations_dir=str(migrations_dir())); print(json.dumps(paths))"
    )
    for name, where in json.loads(_run([str(python), "-c", probe], work)).items():
        assert Path(where).is_relative_to(site.resolve()), f"{name} comes from {where}, not the fresh venv {site}"
        assert Path(where).exists(), f"{name}: {where} is missing"

    code_version = "from flywheel.registry.service import code_version; print(code_version())"
    assert _run([str(python), "-c", code_version], work).strip() == "None"

    flywheel = str(venv / "bin" / "flywheel")
    home = tmp_path / "home"
    upgraded = _run([flywheel, "--home", str(home), "db", "upgrade"], work)
    assert "empty →" in upgraded
    current = _run([flywheel, "--home", str(home), "db", "current"], work)
    assert "(up to date)" in current, current
    written = EpisodeStore.open(Settings(home=home))  # the checkout's store writes, the wheel's reads
    try:
        frames = make_frames(controllers=[ControllerKind.EXPERT] * 5)
        episode = written.add(NewEpisode(task="transfer_cube", frames=frames, env_seed=3, success=True))
    finally:
        written.db.dispose()
    listed = json.loads(_run([flywheel, "--home", str(home), "episodes", "list", "--json"], work))
    assert [(e["id"], e["env_seed"], e["length"]) for e in listed] == [(episode.id, 3, 5)]

    shadow = work / "shadow"  # `python -m` puts the cwd first on sys.path: a foreign `migrations` there is refused
    (shadow / "migrations").mkdir(parents=True)
    (shadow / "migrations" / "__init__.py").write_text("")
    cmd = [str(python), "-m", "flywheel", "--home", str(home), "db", "current"]
    refused = subprocess.run(cmd, cwd=shadow, env=_env(), capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "is not flywheel's migration scripts" in refused.stderr and "Traceback" not in refused.stderr
