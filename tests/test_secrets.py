"""Secrets stay out of the process list, of wandb's run files and of everything the project prints."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from flywheel.config import InsecureConfigWarning, load_settings
from flywheel.errors import ConfigError
from flywheel.redact import database_identity, redact_url, url_has_secret
from flywheel.store.db import Database

REPO = Path(__file__).resolve().parents[1]
SECRET = "Sup3rS3cretMarker"


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "flywheel", *args], capture_output=True, text=True, env=full_env, cwd=REPO, timeout=120
    )


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql+psycopg://alice:{SECRET}@db.example/flywheel",
        f"postgresql+psycopg://alice@db.example/flywheel?password={SECRET}",
    ],
)
def test_a_password_in_the_command_line_url_is_refused_and_not_echoed(url: str, tmp_path: Path) -> None:
    result = _cli("--home", str(tmp_path), "--db-url", url, "episodes", "list")
    assert result.returncode == 2, result.stderr
    assert "carries a password" in result.stderr and "FLYWHEEL_DB_URL" in result.stderr
    assert SECRET not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"postgresql+psycopg://alice:{SECRET}@h/db", "postgresql+psycopg://alice:***@h/db"),
        (f"postgresql://h/db?password={SECRET}&sslmode=require", "postgresql://h/db?password=***&sslmode=require"),
        (f"postgresql://h/db?PassWord={SECRET}", "postgresql://h/db?PassWord=***"),
        ("sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
    ],
)
def test_safe_url_redacts_userinfo_and_query_passwords(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    if url.startswith("sqlite"):
        assert Database(url).safe_url == shown


def test_a_malformed_url_is_never_echoed(tmp_path: Path) -> None:
    assert SECRET not in redact_url(f"{SECRET}:not a url")
    with pytest.raises(ConfigError) as caught:
        load_settings({"home": tmp_path, "db_url": f"{SECRET} pasted here"}, environ={})
    assert SECRET not in str(caught.value) and "not a database URL" in str(caught.value)


def test_unreachable_database_error_hides_query_password() -> None:
    from flywheel.errors import DatabaseUnavailableError

    db = Database(f"postgresql+psycopg://alice@127.0.0.1:1/db?password={SECRET}&connect_timeout=2")
    with pytest.raises(DatabaseUnavailableError) as caught:
        db.ping()
    assert SECRET not in str(caught.value)


def test_a_readable_config_file_with_secrets_warns(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"console_password: {SECRET}\n")
    config.chmod(0o644)
    with pytest.warns(InsecureConfigWarning, match="chmod 600"):
        load_settings({"home": tmp_path}, environ={"FLYWHEEL_CONFIG": str(config)})
    config.chmod(0o600)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", InsecureConfigWarning)
        load_settings({"home": tmp_path}, environ={"FLYWHEEL_CONFIG": str(config)})
    assert stat.S_IMODE(config.stat().st_mode) == 0o600


_WANDB_RUN = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from flywheel.train.logger import MetricsLogger
    logger = MetricsLogger(Path(sys.argv[1]), True, True, "flywheel-test", {"lr": 0.1})
    logger.log({"loss": 1.0}, step=1)
    logger.close()
    """
)


def test_wandb_run_files_do_not_record_the_command_line(tmp_path: Path) -> None:
    marker = f"--db-url=postgresql://alice:{SECRET}@h/db"
    env = {**os.environ, "PYTHONPATH": str(REPO), "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    subprocess.run(
        [sys.executable, "-c", _WANDB_RUN, str(tmp_path), marker], env=env, cwd=REPO, check=True, timeout=300
    )
    files = [p for p in (tmp_path / "wandb").rglob("*") if p.is_file()]
    assert any(p.suffix == ".wandb" for p in files)  # the run was recorded
    assert not [p for p in files if SECRET.encode() in p.read_bytes()]


def test_a_password_with_an_unencoded_at_sign_is_never_shown_in_part() -> None:
    assert "ss" not in redact_url("postgresql://u:p@ss@host/db").replace("postgresql", "")
    assert url_has_secret("postgresql://u:s3cr3t@host:notaport/db")  # malformed, still refused on the command line


def test_database_identity_ignores_credentials_driver_and_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The episodes directory's owner: moving the password into ~/.pgpass must not make gc refuse the store."""
    assert database_identity("postgresql+psycopg://u:pw@db.lab:5432/fw?sslmode=require") == database_identity(
        "postgresql://u@db.lab:5432/fw"
    )
    assert database_identity("postgresql://db.lab/fw") != database_identity("postgresql://db.lab/other")
    monkeypatch.chdir(tmp_path)
    assert database_identity("sqlite:///home/flywheel.db") == f"sqlite:///{tmp_path / 'home' / 'flywheel.db'}"
