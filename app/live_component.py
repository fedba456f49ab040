"""The live view component: plain HTML/JS/CSS from `app/components/` (no build step), registered once per process.

It shows the live session's cameras from the console's WebSocket (`flywheel.live.stream`) and sends held keys and
gamepad input over it; the page passes only the session's stream token and the stream's path.
"""

from __future__ import annotations

from app.packaged_component import packaged_component
from flywheel.live.stream import STREAM_PATH

_live_view = packaged_component("flywheel_live_view", "live_view", '<div class="fw-live-mount"></div>')


def live_view(stream_token: str, key: str = "live_stream") -> None:
    """Mount the live view of the session whose stream token this is."""
    _live_view(data={"token": stream_token, "path": STREAM_PATH}, key=key)
