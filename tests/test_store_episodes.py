"""Episode store round trips, tags, checksums, atomicity and bad input, on real SQLite and PostgreSQL."""

from __future__ import annotations

import multiprocessing as mp
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from flywheel.config import Settings
from flywheel.errors import EpisodeFileError, EpisodeNotFoundError, InvalidFramesError, StoreError
from flywheel.store import EpisodeFilter, EpisodeStore, NewEpisode
from flywheel.vocab import (
    ControllerKind,
    EpisodeFrames,
    SegmentSpan,
    Tag,
    derive_segments,
    derive_tag,
    encode_controllers,
    parse_tag,
)
from tests.conftest import make_frames

P, H, E = ControllerKind.POLICY, ControllerKind.HUMAN, ControllerKind.EXPERT


def _add(store: EpisodeStore, frames: EpisodeFrames, **kw: object) -> int:
    policy = None if frames.tag is Tag.DEMO else _policy(store)
    return store.add(
        NewEpisode(task="transfer_cube", frames=frames, env_seed=7, success=True, policy_version_id=policy, **kw)
    ).id  # type: ignore[arg-type]


def _policy(store: EpisodeStore) -> int:
    from flywheel.store.models import PolicyVersion

    with store.db.write() as session:
        row = PolicyVersion(task="transfer_cube", checkpoint_uri="x", sha256="0" * 64)
        session.add(row)
        session.flush()
        return row.id


def test_round_trip_with_images(store: EpisodeStore) -> None:
    frames = make_frames(controllers=[P] * 10 + [H] * 5 + [P] * 5, cameras={"top": (96, 128)})
    segments = derive_segments(frames.controller, triggers={10: "no_progress"}, operators={10: "alice"})
    episode_id = _add(store, frames, segments=segments)
    back = store.read_frames(episode_id)
    for name in ("state", "action", "policy_action", "policy_action_valid", "reward", "controller"):
        np.testing.assert_array_equal(getattr(back, name), getattr(frames, name))
    np.testing.assert_array_equal(back.images["top"], frames.images["top"])
    record = store.get(episode_id)
    assert record.tag == "intervention"
    assert record.cameras == ("top",)
    assert [(s.start, s.end, s.controller, s.trigger, s.operator) for s in record.segments] == [
        (0, 10, "policy", None, None),
        (10, 15, "human", "no_progress", "alice"),
        (15, 20, "policy", None, None),
    ]


@pytest.mark.parametrize(
    ("controllers", "tag"),
    [
        ([P, P, P], Tag.AUTONOMOUS),
        ([E, E], Tag.DEMO),
        ([H, E, H], Tag.DEMO),
        ([P, H, P], Tag.INTERVENTION),
        ([E, P], Tag.INTERVENTION),
    ],
)
def test_tag_derivation(controllers: list[ControllerKind], tag: Tag) -> None:
    assert derive_tag(encode_controllers(controllers)) is tag


def test_tag_is_stored_from_frames(store: EpisodeStore) -> None:
    ids = {
        tag: _add(store, make_frames(controllers=c))
        for tag, c in {"demo": [E] * 4, "autonomous": [P] * 4, "intervention": [P, P, H, H]}.items()
    }
    for tag, episode_id in ids.items():
        assert store.get(episode_id).tag == tag
    assert store.count_by_tag() == {"demo": 1, "autonomous": 1, "intervention": 1}


@pytest.mark.parametrize(
    ("segments", "complaint"),
    [
        (
            [SegmentSpan(0, 10, P), SegmentSpan(10, 20, P)],
            r"segment 1 is \[10, 20\) policy but the frames give \[10, 15\) human",
        ),
        (
            [SegmentSpan(0, 10, P), SegmentSpan(10, 15, H)],
            r"segment 2 is nothing but the frames give \[15, 20\) policy",
        ),
        (
            [SegmentSpan(0, 10, P), SegmentSpan(10, 15, E), SegmentSpan(15, 20, P)],
            r"segment 1 is \[10, 15\) expert but the frames give \[10, 15\) human",
        ),
    ],
)
def test_segments_that_disagree_with_the_frames_are_refused(
    store: EpisodeStore, segments: list[SegmentSpan], complaint: str
) -> None:
    """The rollout's segments are stored as given only when they are exactly the frames' controller runs."""
    frames = make_frames(controllers=[P] * 10 + [H] * 5 + [P] * 5)
    with pytest.raises(InvalidFramesError, match=f"segments disagree with the per-frame controllers: {complaint}"):
        _add(store, frames, segments=segments)
    assert store.count() == 0 and list(store.files.iter_uris()) == []


def test_given_segments_are_stored_as_they_are(store: EpisodeStore) -> None:
    frames = make_frames(controllers=[P] * 10 + [H] * 5 + [P] * 5)
    segments = [
        SegmentSpan(0, 10, P, trigger="start"),
        SegmentSpan(10, 15, H, operator="bob", trigger="console", claimed_operator="carol"),
        SegmentSpan(15, 20, P, trigger="hand back"),
    ]
    record = store.get(_add(store, frames, segments=segments))
    stored = [(s.start, s.end, s.controller, s.operator, s.trigger, s.claimed_operator) for s in record.segments]
    assert stored == [
        (0, 10, "policy", None, "start", None),
        (10, 15, "human", "bob", "console", "carol"),
        (15, 20, "policy", None, "hand back", None),
    ]


def test_unknown_tag_and_controller_are_clear_errors() -> None:
    with pytest.raises(InvalidFramesError, match=r"unknown tag 'robot'.*demo, autonomous, intervention"):
        parse_tag("robot")
    with pytest.raises(InvalidFramesError, match="unknown controller"):
        encode_controllers(["policy", "ghost"])
    with pytest.raises(StoreError, match="unknown tag"):
        EpisodeFilter(tag="robot")


def test_nan_frames_rejected_and_store_untouched(store: EpisodeStore) -> None:
    kept = _add(store, make_frames(controllers=[E] * 5))
    bad = make_frames(controllers=[E] * 5)
    state = bad.state.copy()
    state[3, 2] = np.nan
    with pytest.raises(InvalidFramesError, match="state has 1 NaN/inf values \\(first at frame 3\\)"):
        EpisodeFrames(state=state, action=bad.action, reward=bad.reward, controller=bad.controller)
    assert [r.id for r in store.list_episodes()] == [kept]
    assert list(store.files.iter_uris()) == [store.get(kept).file_uri]


def test_checksum_mismatch_detected(store: EpisodeStore) -> None:
    episode_id = _add(store, make_frames(controllers=[E] * 8))
    path = store.files.path_for(store.get(episode_id).file_uri)
    blob = bytearray(path.read_bytes())
    blob[-3] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.raises(EpisodeFileError, match=f"episode {episode_id} file .* fails its sha256 check"):
        store.read_frames(episode_id)


def test_missing_file_is_clear_error(store: EpisodeStore) -> None:
    episode_id = _add(store, make_frames(controllers=[E] * 8))
    store.files.path_for(store.get(episode_id).file_uri).unlink()
    with pytest.raises(EpisodeFileError, match=f"episode {episode_id} file .* is missing"):
        store.read_frames(episode_id)
    assert store.get(episode_id).id == episode_id  # the row is not touched


def test_delete_removes_row_and_file(store: EpisodeStore) -> None:
    episode_id = _add(store, make_frames(controllers=[P] * 8))
    path = store.files.path_for(store.get(episode_id).file_uri)
    store.delete(episode_id)
    assert not path.exists()
    with pytest.raises(EpisodeNotFoundError):
        store.get(episode_id)


def test_gc_removes_only_orphans(store: EpisodeStore) -> None:
    keep = _add(store, make_frames(controllers=[E] * 6))
    orphan = store.files.write(make_frames(controllers=[E] * 6))
    stale_tmp = store.files.root / "ab" / ".tmp-deadbeef"
    stale_tmp.parent.mkdir(parents=True, exist_ok=True)
    stale_tmp.write_bytes(b"partial")
    report = store.gc(dry_run=True)
    assert set(report.removed) == {orphan.uri, "ab/.tmp-deadbeef"}
    assert store.files.path_for(orphan.uri).exists()
    store.gc()
    assert set(store.files.iter_uris()) == {store.get(keep).file_uri}
    store.read_frames(keep)


def test_source_key_makes_add_idempotent(store: EpisodeStore) -> None:
    frames = make_frames(controllers=[E] * 6)
    first = _add(store, frames, source_key="iter1/ep0")
    second = _add(store, frames, source_key="iter1/ep0")
    assert first == second
    assert store.count() == 1
    assert len(list(store.files.iter_uris())) == 1


def test_filters(store: EpisodeStore) -> None:
    demo = _add(store, make_frames(controllers=[E] * 4))
    auto = _add(store, make_frames(controllers=[P] * 4))
    assert [r.id for r in store.list_episodes(EpisodeFilter(tag="demo"))] == [demo]
    assert [r.id for r in store.list_episodes(EpisodeFilter(tag="autonomous"))] == [auto]
    assert store.count(EpisodeFilter(task="insertion")) == 0
    assert store.count(EpisodeFilter(review_status="unreviewed", success=True)) == 2


def test_non_demo_needs_policy(store: EpisodeStore) -> None:
    with pytest.raises(StoreError, match="needs the policy version"):
        store.add(NewEpisode(task="transfer_cube", frames=make_frames(controllers=[P] * 3), env_seed=0, success=False))
    assert store.count() == 0
    assert list(store.files.iter_uris()) == []


_KILLED_WRITER = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from flywheel.config import Settings
    from flywheel.store import EpisodeStore, NewEpisode
    import flywheel.fsutil as fsutil
    from tests.conftest import make_frames
    from flywheel.vocab import ControllerKind

    real_replace = os.replace
    def die_midway(src, dst):
        # Half the bytes are on disk in the temp file; the process dies before the rename.
        os.kill(os.getpid(), signal.SIGKILL)
    fsutil.os.replace = die_midway
    store = EpisodeStore.open(Settings(home=Path(sys.argv[1]), db_url=sys.argv[2] or None))
    store.add(NewEpisode(task="transfer_cube", frames=make_frames(controllers=[ControllerKind.EXPERT] * 50,
                         cameras={"top": (48, 64)}), env_seed=1, success=True))
    """
)


def test_write_killed_midway_leaves_no_row_and_no_visible_file(settings: Settings) -> None:
    store = EpisodeStore.open(settings)
    kept = _add(store, make_frames(controllers=[E] * 5))
    proc = subprocess.run(
        [sys.executable, "-c", _KILLED_WRITER, str(settings.home), settings.db_url or ""],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert [r.id for r in store.list_episodes()] == [kept]
    visible = [p for p in store.files.root.rglob("*.safetensors")]
    assert visible == [store.files.path_for(store.get(kept).file_uri)]
    report = store.gc()
    assert all(Path(uri).name.startswith(".tmp-") for uri in report.removed) and report.removed
    store.read_frames(kept)


def _insert_many(home: str, db_url: str, worker: int, n: int) -> None:
    store = EpisodeStore.open(Settings(home=Path(home), db_url=db_url or None))
    for i in range(n):
        frames = make_frames(length=5, controllers=[E] * 5, seed=i)
        store.add(
            NewEpisode(task="transfer_cube", frames=frames, env_seed=i, success=True, source_key=f"w{worker}/{i}")
        )


def test_concurrent_writers_lose_nothing(settings: Settings) -> None:
    EpisodeStore.open(settings).db.dispose()  # migrate once up front
    ctx = mp.get_context("spawn")
    procs = [
        ctx.Process(target=_insert_many, args=(str(settings.home), settings.db_url or "", w, 200)) for w in range(2)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=600)
        assert p.exitcode == 0
    store = EpisodeStore.open(settings)
    assert store.count() == 400
    keys = {r.source_key for r in store.list_episodes(EpisodeFilter(limit=None))}
    assert keys == {f"w{w}/{i}" for w in range(2) for i in range(200)}
    assert len(list(store.files.iter_uris())) == 400


def test_frame_reader_gathers_random_batches(store: EpisodeStore) -> None:
    from flywheel.store.reader import FrameReader

    all_frames = [make_frames(length=20 + i, controllers=None, cameras={"top": (12, 16)}, seed=i) for i in range(3)]
    ids = [_add(store, f) for f in all_frames]
    records = [store.get(i, with_segments=False) for i in ids]
    reader = FrameReader(store.files, records)
    assert len(reader) == sum(len(f) for f in all_frames)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(reader), size=32)
    batch = reader.batch(idx)
    flat_state = np.concatenate([f.state for f in all_frames])
    flat_images = np.concatenate([f.images["top"] for f in all_frames])
    np.testing.assert_array_equal(batch["state"], flat_state[idx])
    np.testing.assert_array_equal(batch["image/top"], flat_images[idx])


def test_frame_reader_refuses_corrupt_file(store: EpisodeStore) -> None:
    from flywheel.store.reader import FrameReader

    episode_id = _add(store, make_frames(controllers=[E] * 5))
    record = store.get(episode_id, with_segments=False)
    path = store.files.path_for(record.file_uri)
    blob = bytearray(path.read_bytes())
    blob[-1] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.raises(EpisodeFileError, match="sha256"):
        FrameReader(store.files, [record])
