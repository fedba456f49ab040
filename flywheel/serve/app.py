"""The policy server as a FastAPI app: `/health`, `/version`, `/act`; built by `create_app` for uvicorn or tests.

`/act` is stateless: it returns the whole action chunk and how many of its steps the policy would execute
(`execute_steps`); receding-horizon execution (run those steps, then ask again) is the client's job.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from flywheel.netutil import allowed_hosts
from flywheel.serve.config import ServeConfig
from flywheel.serve.middleware import BearerTokenMiddleware, BodyLimitMiddleware
from flywheel.serve.reload import PolicyHolder, ReloadWatcher
from flywheel.serve.schemas import (
    MAX_SEED,
    ActRequest,
    ActResponse,
    HealthResponse,
    VersionResponse,
    act_response_json,
    observation_from_request,
)
from flywheel.serve.source import PolicySource, ServedPolicy
from flywheel.webguard import TrustedHostMiddleware

OPEN_PATHS = frozenset({"/health"})


def version_of(served: ServedPolicy, holder: PolicyHolder, config: ServeConfig) -> VersionResponse:
    image_size = config.image_size or served.image_size
    return VersionResponse(
        policy_version=served.version_id,
        alias=served.alias,
        sha256=served.sha256,
        task=served.task,
        obs_mode=served.obs_mode,
        state_dim=served.state_dim,
        state_entries=list(served.state_entries),
        privileged=served.privileged,
        action_dim=served.action_dim,
        cameras=list(served.cameras),
        image_shape=[*image_size, 3] if image_size and served.cameras else None,
        chunk_size=served.chunk_size,
        execute_steps=served.execute_steps,
        num_steps=served.num_steps,
        loaded_at=served.loaded_at.isoformat(),
        reloads=holder.reloads,
        reload_error=holder.reload_error,
    )


def timed_chunk(served: ServedPolicy, seed: int, obs: dict[str, Any]) -> tuple[np.ndarray, float]:
    """The action chunk for `obs` and how long the policy took (ms)."""
    start = time.perf_counter()
    actions = served.runner(seed).act_chunk(obs)
    return actions, (time.perf_counter() - start) * 1000.0


def create_app(config: ServeConfig, source: PolicySource) -> FastAPI:
    """Load the policy `source` points at now (errors surface here, before any socket is bound) and build the app.

    The alias watcher runs while the app's lifespan does (uvicorn, or `TestClient` used as a context manager).
    """
    holder = PolicyHolder(source, source.load(source.current_version()))
    watcher = ReloadWatcher(holder, config.reload_interval_s) if source.alias and config.reload_interval_s else None

    # One inference thread: requests queue for it instead of running torch on many pool threads at once, and
    # the hop is a plain executor handoff rather than the generic thread pool of a sync endpoint.
    inference = ThreadPoolExecutor(max_workers=1, thread_name_prefix="flywheel-act")

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if watcher is not None:
            watcher.start()
        try:
            yield
        finally:
            if watcher is not None:
                watcher.stop()
            inference.shutdown(wait=True)

    app = FastAPI(
        title="flywheel policy server",
        summary="observation → action chunk from the registry's policy, hot-reloaded when its alias moves",
        lifespan=lifespan,
    )
    app.state.holder = holder

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        """422 with where and what, without echoing the input (it may be large, or NaN, which JSON cannot carry)."""
        detail = [{"type": e.get("type"), "loc": list(e.get("loc", ())), "msg": e.get("msg")} for e in exc.errors()]
        return JSONResponse({"detail": detail}, status_code=422)

    @app.get("/health")
    async def health() -> HealthResponse:
        """Liveness; needs no token."""
        return HealthResponse(status="ok", policy_version=holder.current.version_id)

    @app.get("/version")
    async def version() -> VersionResponse:
        """The served policy version, where it came from, and the observation it expects."""
        return version_of(holder.current, holder, config)

    @app.post("/act", response_model=ActResponse)
    async def act(request: ActRequest) -> Response:
        """One observation → one action chunk (chunk_size × action_dim), from the policy current at arrival.

        The `Server-Timing` header says how long the policy itself took (`inference;dur=<ms>`).
        """
        served = holder.current
        obs = observation_from_request(request, served, config.image_size or served.image_size)
        seed = request.seed if request.seed is not None else secrets.randbelow(MAX_SEED)
        actions, inference_ms = await asyncio.get_running_loop().run_in_executor(
            inference, timed_chunk, served, seed, obs
        )
        if not np.isfinite(actions).all():
            raise HTTPException(500, f"policy {served.version_id} produced non-finite actions for this observation")
        return Response(
            act_response_json(actions, served, seed),
            media_type="application/json",
            headers={"server-timing": f"inference;dur={inference_ms:.3f}"},
        )

    app.add_middleware(BodyLimitMiddleware, max_bytes=config.max_body_bytes)
    if config.token_required:
        assert config.token is not None  # ServeConfig refuses a required token that is missing
        app.add_middleware(BearerTokenMiddleware, token=config.token.get_secret_value(), open_paths=OPEN_PATHS)
    # Added last, so it runs first: a foreign Host (DNS rebinding) is refused before anything else.
    app.add_middleware(TrustedHostMiddleware, allowed=allowed_hosts(config.host, config.allowed_hosts))
    return app
