"""bench.takeover_stages on a real store: takeovers counted by the stage reached when each began."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from bench.takeover_stages import main
from flywheel.config import Settings
from flywheel.registry import PolicyRegistry
from flywheel.store import EpisodeStore, NewEpisode
from flywheel.vocab import ControllerKind
from tests.conftest import make_frames

P, E = ControllerKind.POLICY, ControllerKind.EXPERT


def _episode(
    controllers: list[ControllerKind], reward: list[float], iteration: int | None, seed: int, version: int | None
) -> NewEpisode:
    frames = dataclasses.replace(make_frames(controllers=controllers), reward=np.asarray(reward, dtype=np.float32))
    return NewEpisode("insertion", frames, seed, False, policy_version_id=version, iteration=iteration)


def test_takeovers_are_counted_by_the_stage_they_began_at(
    sqlite_settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = EpisodeStore.open(sqlite_settings)
    registry = PolicyRegistry(store.db)
    v1, v2 = (
        registry.register_candidate(
            task="insertion",
            checkpoint_uri=f"/nowhere/{i}",
            sha256=f"{i}" * 64,
            config={},
            data_fingerprint={},
            metrics={},
        ).id
        for i in (1, 2)
    )
    # iteration 1: one takeover after the stage reached 2 (it dipped back to 1 just before: the best so far counts),
    # a second after it reached 3; iteration 2: one takeover at the very first frame; a demo is left out.
    store.add(_episode([P, P, P, E, E, P, P, E], [0, 2, 1, 1, 2, 3, 3, 3], iteration=1, seed=1, version=v1))
    store.add(_episode([P, P, P, P], [0, 1, 1, 1], iteration=1, seed=2, version=v1))
    store.add(_episode([E, E, P, P], [0, 0, 1, 1], iteration=2, seed=3, version=v2))
    store.add(_episode([E, E, E, E], [0, 1, 2, 3], iteration=None, seed=4, version=None))
    store.db.dispose()

    out = tmp_path / "stages.json"
    result = main(["--home", str(sqlite_settings.home), "--task", "insertion", "--out", str(out)])

    assert json.loads(out.read_text()) == result
    first, second = result["iterations"]
    assert (first["iteration"], first["episodes"], first["takeovers"]) == (1, 2, 2)
    assert first["by_stage"] == {"both parts lifted": 1, "peg touches the socket": 1}
    assert first["median_start_step"] == 5.0
    assert (second["iteration"], second["takeovers"], second["by_stage"]) == (
        2,
        1,
        {"peg and socket not both touched": 1},
    )
    assert (
        f"iteration 1 (policy [{v1}]): 2 takeovers: both parts lifted 1, peg touches the socket 1"
        in capsys.readouterr().out
    )
