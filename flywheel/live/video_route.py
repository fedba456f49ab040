"""The route that serves cached episode videos (`flywheel.live.episode_video`) to the console's episode player.

`app/console_server.py` mounts it on the ASGI app `ConsoleGuard` protects, so it obeys the console's Host and
sign-in rules like every Streamlit route. It serves only files of the cache directory whose names match
`VIDEO_NAME` (no other file, no path outside the directory); a page makes the file before it names it.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Route

from flywheel.live.episode_video import VIDEO_NAME

VIDEO_PATH = "/_flywheel/episode-video"


def video_url(name: str) -> str:
    """Where the browser fetches the cached video file `name`."""
    return f"{VIDEO_PATH}/{name}"


def video_route(cache_dir: Path) -> Route:
    """GET `VIDEO_PATH/<name>`: the cached video file `name` of `cache_dir`, else 404."""

    async def endpoint(request: Request) -> Response:
        name = request.path_params["name"]
        path = cache_dir / name
        if not VIDEO_NAME.fullmatch(name) or not path.is_file():
            return PlainTextResponse("no such episode video", status_code=404)
        # the name is keyed by the episode file's checksum: its content never changes
        headers = {"cache-control": "private, max-age=86400, immutable", "x-content-type-options": "nosniff"}
        return FileResponse(path, media_type="application/octet-stream", headers=headers)

    return Route(f"{VIDEO_PATH}/{{name}}", endpoint, methods=["GET"])
