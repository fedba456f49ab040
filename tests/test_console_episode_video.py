"""Video of stored episodes (flywheel/live/episode_video.py) and the route that serves it
(flywheel/live/video_route.py): a state-only episode is re-rendered from its stored physics state (the pose a state
vector describes is restored exactly, every frame gets a picture per camera), an episode with camera images is
encoded as recorded, the cache file is reused, and replaced when damaged; the route serves cache files only."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from starlette.applications import Starlette
from starlette.testclient import TestClient

from flywheel.live.episode_video import (
    episode_video,
    pack_video,
    pose_from_state,
    read_video_header,
    unpack_video,
    video_header,
)
from flywheel.live.errors import LiveSessionError
from flywheel.live.video_route import video_route, video_url


def test_rerender_a_state_only_episode_and_cache_it(tmp_path: Path) -> None:
    from sim import make_env, run_episode, state_layout

    env = make_env("transfer_cube", max_steps=12)
    result = run_episode(env, 3)
    assert result.frames is not None and not result.frames.images  # state mode: no camera images stored
    states = result.frames.state
    positions = np.r_[state_layout("transfer_cube")["qpos"], state_layout("transfer_cube")["box_pose"]]
    fresh = make_env("transfer_cube")
    pose_from_state(fresh, states[-1])
    np.testing.assert_allclose(fresh.state_vector()[positions], states[-1][positions], atol=1e-5)

    cameras = ("top", "right_wrist")
    video = episode_video(tmp_path, 7, "abc", "transfer_cube", result.frames, cameras, (240, 320))
    assert (video.cameras, video.frames, video.rerendered) == (cameras, len(states), True)
    frames = unpack_video(video.path.read_bytes())
    assert list(frames) == list(cameras) and [len(frames[c]) for c in cameras] == [len(states)] * 2
    first = np.asarray(Image.open(io.BytesIO(frames["top"][0])))
    assert first.shape == (240, 320, 3)
    assert frames["right_wrist"][0] != frames["right_wrist"][-1]  # the arm moved: the pictures differ
    stamp = video.path.stat().st_mtime_ns
    assert episode_video(tmp_path, 7, "abc", "transfer_cube", result.frames, cameras, (240, 320)) == video
    assert video.path.stat().st_mtime_ns == stamp  # read from the cache
    video.path.write_bytes(video.path.read_bytes()[:-10])  # truncated
    assert episode_video(tmp_path, 7, "abc", "transfer_cube", result.frames, cameras, (240, 320)) == video
    assert unpack_video(video.path.read_bytes()) == frames
    assert [p.name for p in tmp_path.iterdir()] == [video.name]  # replaced atomically, no temporary left


def test_recorded_cameras_are_encoded_as_they_are(tmp_path: Path) -> None:
    from flywheel.vocab import EpisodeFrames

    rng = np.random.default_rng(0)
    images = {cam: rng.integers(0, 255, (5, 48, 64, 3), dtype=np.uint8) for cam in ("wrist", "top")}
    frames = EpisodeFrames(
        state=np.zeros((5, 3)), action=np.zeros((5, 2)), reward=np.zeros(5), controller=np.zeros(5), images=images
    )
    video = episode_video(tmp_path, 3, "def", "transfer_cube", frames)
    assert (video.cameras, video.frames, video.rerendered) == (("top", "wrist"), 5, False)
    header = read_video_header(video.path)
    assert header == video_header(video.path.read_bytes())
    assert header["size"] == [48, 64] and [c for c, _ in header["cameras"]] == ["top", "wrist"]
    decoded = np.asarray(Image.open(io.BytesIO(unpack_video(video.path.read_bytes())["wrist"][4])))
    assert decoded.shape == (48, 64, 3)


def test_bad_video_files_are_refused() -> None:
    good = pack_video({"top": [b"a", b"bc"], "wrist": [b"d", b"e"]}, (2, 2))
    assert unpack_video(good) == {"top": [b"a", b"bc"], "wrist": [b"d", b"e"]}
    for bad in (b"", b"FWV1", b"XXXX" + good[4:], good[:-1], good + b"x", good[:12]):
        with pytest.raises(LiveSessionError):
            video_header(bad)
    with pytest.raises(LiveSessionError, match="same number of frames"):
        pack_video({"top": [b"a"], "wrist": []}, (2, 2))


def test_the_route_serves_cache_files_only(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    name = "episode-4-0123456789abcdef.fwv"
    (cache / name).write_bytes(pack_video({"top": [b"jpeg"]}, (1, 1)))
    (tmp_path / "secret.txt").write_text("not for the browser")
    (cache / "notes.txt").write_text("not a video")
    with TestClient(Starlette(routes=[video_route(cache)])) as client:
        reply = client.get(video_url(name))
        assert reply.status_code == 200 and unpack_video(reply.content) == {"top": [b"jpeg"]}
        assert reply.headers["content-type"] == "application/octet-stream"
        for path in (
            video_url("episode-5-0123456789abcdef.fwv"),  # not made
            video_url("notes.txt"),
            video_url("..%2Fsecret.txt"),
            video_url("%2E%2E/secret.txt"),
        ):
            assert client.get(path).status_code == 404, path
