"""Shared fixtures: a scratch flywheel home on real SQLite, and a real PostgreSQL server on loopback."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from flywheel.config import Settings
from flywheel.headless import headless_defaults
from flywheel.registry import PolicyRecord
from flywheel.store import EpisodeStore
from flywheel.vocab import CONTROLLER_CODES, ControllerKind, EpisodeFrames
from tests.pg_server import PostgresServer, private_server

headless_defaults()


@pytest.fixture
def torch_one_thread() -> Iterator[None]:
    """One torch thread: on 2 shared cores, small models train several times faster than with two."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def sqlite_settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    url = os.environ.get("FLYWHEEL_TEST_PG_URL")
    if url:
        yield PostgresServer.external(url)
        return
    with private_server("flywheel-pg-") as (server, _):
        yield server


@pytest.fixture
def postgres_settings(pg_server: PostgresServer, tmp_path: Path) -> Settings:
    url = pg_server.create_database(f"t_{uuid.uuid4().hex[:12]}")
    return Settings(home=tmp_path / "home", db_url=url)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def settings(request: pytest.FixtureRequest) -> Settings:
    """Run a test on both backends."""
    return request.getfixturevalue(f"{request.param}_settings")


@pytest.fixture(scope="module")
def tiny_policy(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A tiny transfer_cube policy really trained on expert demos (checkpoint dir, sha256), once per module."""
    from tests.live_support import train_tiny_policy

    return train_tiny_policy(tmp_path_factory.mktemp("policy") / "run")


@pytest.fixture
def policy(store: EpisodeStore, tiny_policy: tuple[Path, str]) -> PolicyRecord:
    """`tiny_policy` registered (and promoted to champion) in the test's `store`."""
    from tests.live_support import register_policy

    return register_policy(store, *tiny_policy)


@pytest.fixture
def store(settings: Settings) -> Iterator[EpisodeStore]:
    opened = EpisodeStore.open(settings)
    yield opened
    opened.db.dispose()


def make_frames(
    length: int = 30,
    controllers: list[ControllerKind] | None = None,
    cameras: dict[str, tuple[int, int]] | None = None,
    seed: int = 0,
) -> EpisodeFrames:
    """Synthetic frames for store tests (the sim tests use real rollouts)."""
    rng = np.random.default_rng(seed)
    codes = (
        np.array([CONTROLLER_CODES[c] for c in controllers], dtype=np.uint8)
        if controllers is not None
        else np.zeros(length, dtype=np.uint8)
    )
    length = len(codes)
    images = {
        name: rng.integers(0, 255, size=(length, h, w, 3), dtype=np.uint8) for name, (h, w) in (cameras or {}).items()
    }
    return EpisodeFrames(
        state=rng.normal(size=(length, 35)).astype(np.float32),
        action=rng.normal(size=(length, 14)).astype(np.float32),
        policy_action=rng.normal(size=(length, 14)).astype(np.float32),
        policy_action_valid=codes == CONTROLLER_CODES[ControllerKind.POLICY],
        reward=rng.integers(0, 5, size=length).astype(np.float32),
        controller=codes,
        images=images,
    )
