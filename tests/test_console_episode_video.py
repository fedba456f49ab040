"""State-only episodes re-rendered from their stored physics state (flywheel/live/episode_video.py): the pose a
state vector describes is restored exactly, every frame gets a picture per camera, and the disk cache is reused and
replaced when damaged."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from flywheel.live.episode_video import cache_path, pose_from_state, rendered_episode


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
    frames = rendered_episode(tmp_path, 7, "abc", "transfer_cube", states, cameras, (240, 320))
    assert [len(frames[c]) for c in cameras] == [len(states)] * 2
    first = np.asarray(Image.open(io.BytesIO(frames["top"][0])))
    assert first.shape == (240, 320, 3)
    assert frames["right_wrist"][0] != frames["right_wrist"][-1]  # the arm moved: the pictures differ
    path = cache_path(tmp_path, 7, "abc", cameras, (240, 320))
    stamp = path.stat().st_mtime_ns
    assert rendered_episode(tmp_path, 7, "abc", "transfer_cube", states, cameras, (240, 320)) == frames
    assert path.stat().st_mtime_ns == stamp  # read from the cache
    path.write_bytes(b"damaged")
    assert rendered_episode(tmp_path, 7, "abc", "transfer_cube", states, cameras, (240, 320)) == frames
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # replaced atomically, no temporary left
