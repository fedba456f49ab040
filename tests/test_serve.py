"""Policy server over real HTTP: a uvicorn server on loopback serving the registry's champion from real SQLite."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi import FastAPI

from flywheel.config import Settings
from flywheel.policy.checkpoint import checkpoint_sha256
from flywheel.policy.runner import PolicyRunner
from flywheel.presets import train_config
from flywheel.registry import PolicyRegistry
from flywheel.serve.app import create_app
from flywheel.serve.config import TOKEN_ENV, ServeConfig, ServeError, is_loopback, read_token, serve_config
from flywheel.serve.server import ServerThread
from flywheel.serve.source import RegistrySource
from flywheel.store import EpisodeStore
from flywheel.train import run_training
from flywheel.train.synthetic import toy_episode

TOKEN = "s3cret-token-for-tests-0123456789"
IMAGE_HW = (40, 56)
SMALL = {"expert": {"chunk": 4}, "inference": {"execute_steps": 2, "num_steps": 4}}  # over the tiny preset's model


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    sha256: str
    task: str


def _train(out: Path, seed: int, pixels: bool = False) -> Checkpoint:
    model = {**SMALL, "encoder": {"vision": "cnn", "cnn_channels": 4, "cnn_grid": 2}} if pixels else SMALL
    cams = ("top",) if pixels else ()
    eps = [toy_episode(seed * 10 + i, length=10, images=cams, image_hw=IMAGE_HW) for i in range(2)]
    cfg = train_config(
        "tiny", {"method": "bc", "seed": seed, "steps": 3, "batch_size": 8, "warmup_steps": 1, "model": model}
    )
    result = run_training(cfg, eps, out, progress=False)
    return Checkpoint(result.checkpoint_dir, result.sha256, "toy_reach")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Checkpoint]:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("ckpt")
    try:
        return {
            "a": _train(root / "a", 1),
            "b": _train(root / "b", 2),
            "pixels": _train(root / "p", 3, pixels=True),
        }
    finally:
        torch.set_num_threads(threads)


def _store(home: Path) -> EpisodeStore:
    return EpisodeStore.open(Settings(home=home))


def _register(registry: PolicyRegistry, ckpt: Checkpoint, champion: bool = False, sha256: str | None = None) -> int:
    version = registry.register_candidate(
        task=ckpt.task,
        checkpoint_uri=str(ckpt.path),
        sha256=sha256 or ckpt.sha256,
        config={},
        data_fingerprint={},
        metrics={},
    ).id
    if champion:
        registry.promote(version, actor="test", reason="serve test", force=True)
    return version


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, checkpoints: dict[str, Checkpoint]) -> Iterator[PolicyRegistry]:
    store = _store(tmp_path_factory.mktemp("home"))
    reg = PolicyRegistry(store.db)
    _register(reg, checkpoints["a"], champion=True)
    yield reg
    store.db.dispose()


@pytest.fixture(scope="module")
def server(registry: PolicyRegistry) -> Iterator[ServerThread]:
    config = ServeConfig(max_body_bytes=4096, reload_interval_s=0)
    with ServerThread(create_app(config, RegistrySource(registry, "champion"))) as running:
        yield running


@pytest.fixture
def client(server: ServerThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


@contextmanager
def _serving(app: FastAPI) -> Iterator[httpx.Client]:
    """A real uvicorn server on a free loopback port and a keep-alive client for it."""
    with ServerThread(app) as running, httpx.Client(base_url=running.url, timeout=30) as c:
        yield c


def _state(seed: int = 0, dim: int = 6) -> list[float]:
    return np.random.default_rng(seed).normal(size=dim).astype(np.float32).tolist()


def test_act_returns_the_in_process_chunk(client: httpx.Client, checkpoints: dict[str, Checkpoint]) -> None:
    state = _state(1)
    reply = client.post("/act", json={"state": state, "seed": 7})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    actions = np.asarray(body["actions"], dtype=np.float32)
    runner = PolicyRunner.load(checkpoints["a"].path, expected_sha256=checkpoints["a"].sha256, seed=7)
    expected = runner.act_chunk({"state": np.asarray(state, np.float32)})
    assert actions.shape == (4, 3) and np.isfinite(actions).all()
    np.testing.assert_array_equal(actions, expected)
    assert (body["chunk_size"], body["execute_steps"], body["action_dim"], body["seed"]) == (4, 2, 3, 7)
    assert body["sha256"] == checkpoints["a"].sha256
    unseeded = [client.post("/act", json={"state": state}).json() for _ in range(2)]
    assert unseeded[0]["seed"] != unseeded[1]["seed"] and unseeded[0]["actions"] != unseeded[1]["actions"]


def test_health_and_version(client: httpx.Client, checkpoints: dict[str, Checkpoint]) -> None:
    assert client.get("/health").json()["status"] == "ok"
    version = client.get("/version").json()
    assert version["alias"] == "champion" and version["policy_version"] == 1
    assert version["sha256"] == checkpoint_sha256(checkpoints["a"].path)
    assert (version["task"], version["obs_mode"], version["state_dim"], version["chunk_size"]) == (
        "toy_reach",
        "state",
        6,
        4,
    )
    assert version["cameras"] == [] and version["reload_error"] is None


@pytest.mark.parametrize(
    ("body", "content_type", "needle"),
    [
        (b'{"state": [1, 2, 3]}', "application/json", "expected 6 values"),
        (b'{"state": [NaN, 0, 0, 0, 0, 0]}', "application/json", "finite number"),
        (b'{"state": [Infinity, 0, 0, 0, 0, 0]}', "application/json", "finite number"),
        (b'{"state": [1e999, 0, 0, 0, 0, 0]}', "application/json", "finite number"),
        (b'{"state": [1e300, 0, 0, 0, 0, 0]}', "application/json", "fit in float32"),
        (b'{"seed": 3}', "application/json", "Field required"),
        (b'{"state": [0, 0, 0, 0, 0, "x"]}', "application/json", "valid number"),
        (b'{"state": [0, 0, 0, 0, 0, 0], "extra": 1}', "application/json", "Extra inputs"),
        (b'{"state": [0, 0, 0, 0, 0, 0], "images": {"top": {"shape": [8, 8, 3], "data": ""}}}', None, "no images"),
        (b"state=1,2,3", "application/json", "JSON decode error"),
        (b"\x00\xff\xfe", "application/octet-stream", "valid dictionary"),
    ],
)
def test_malformed_requests_get_422(client: httpx.Client, body: bytes, content_type: str | None, needle: str) -> None:
    headers = {"content-type": content_type or "application/json"}
    reply = client.post("/act", content=body, headers=headers)
    assert reply.status_code == 422, reply.text
    assert needle in reply.text


def test_oversized_bodies_get_413(client: httpx.Client) -> None:
    big = b'{"state": [' + b"0.0, " * 2000 + b"0.0]}"
    declared = client.post("/act", content=big, headers={"content-type": "application/json"})
    assert declared.status_code == 413 and "4096 bytes" in declared.json()["detail"]
    streamed = client.post(
        "/act",
        content=iter([big[i : i + 1000] for i in range(0, len(big), 1000)]),
        headers={"content-type": "application/json"},
    )
    assert streamed.request.headers.get("transfer-encoding") == "chunked"
    assert streamed.status_code == 413
    assert client.post("/act", json={"state": _state()}).status_code == 200  # the server is still fine


def test_pixel_policy_checks_images(tmp_path: Path, checkpoints: dict[str, Checkpoint]) -> None:
    ckpt = checkpoints["pixels"]
    store = _store(tmp_path / "home")
    reg = PolicyRegistry(store.db)
    version = _register(reg, ckpt)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (*IMAGE_HW, 3), dtype=np.uint8)

    def payload(img: np.ndarray, shape: list[int] | None = None) -> dict:
        return {"shape": shape or list(img.shape), "data": base64.b64encode(img.tobytes()).decode()}

    config = ServeConfig(image_size=IMAGE_HW, reload_interval_s=0)
    with _serving(create_app(config, RegistrySource(reg, str(version)))) as c:
        meta = c.get("/version").json()
        assert meta["alias"] is None and meta["obs_mode"] == "pixels" and meta["image_shape"] == [*IMAGE_HW, 3]
        state = _state(2)
        ok = c.post("/act", json={"state": state, "images": {"top": payload(image)}, "seed": 3})
        assert ok.status_code == 200, ok.text
        runner = PolicyRunner.load(ckpt.path, seed=3)
        expected = runner.act_chunk({"state": np.asarray(state, np.float32), "images": {"top": image}})
        np.testing.assert_array_equal(np.asarray(ok.json()["actions"], np.float32), expected)
        bad = {
            "the served image size": {"top": payload(image[:20])},
            "bytes for shape": {"top": {"shape": [*IMAGE_HW, 3], "data": "AAAA"}},
            "missing: the policy needs cameras": {},
            "unknown camera": {"top": payload(image), "side": payload(image)},
            "base64": {"top": {"shape": [40, 56, 3], "data": "%%%"}},
        }
        for needle, images in bad.items():
            reply = c.post("/act", json={"state": state, "images": images})
            assert reply.status_code == 422 and needle in reply.text, (needle, reply.text)
        missing_all = c.post("/act", json={"state": state})
        assert missing_all.status_code == 422 and "missing" in missing_all.text
    store.db.dispose()


def test_loopback_rule_and_refusal_without_token(tmp_path: Path) -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.8.9.1", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "192.168.1.20", "example.com"))
    for values in ({"host": "0.0.0.0"}, {"host": "::"}, {"host": "127.0.0.1", "require_token": True}):
        with pytest.raises(ServeError, match="bearer token is required"):
            serve_config(**values)
    with pytest.raises(ServeError, match="at least 16 characters"):
        serve_config(host="0.0.0.0", token="short")
    assert serve_config(host="0.0.0.0", token=TOKEN).token_required
    assert not serve_config().token_required
    env = {k: v for k, v in os.environ.items() if k != "FLYWHEEL_SERVE_TOKEN"}
    cli = subprocess.run(
        [sys.executable, "-m", "flywheel", "--home", str(tmp_path / "h"), "serve", "--host", "0.0.0.0", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert cli.returncode == 2 and "bearer token is required" in cli.stderr, cli.stderr
    assert not (tmp_path / "h").exists()  # refused before touching the store


def test_token_is_required_when_configured(registry: PolicyRegistry) -> None:
    config = ServeConfig(token=TOKEN, require_token=True, reload_interval_s=0, max_body_bytes=4096)
    with _serving(create_app(config, RegistrySource(registry, "champion"))) as c:
        body = {"state": _state()}
        assert c.get("/health").status_code == 200  # liveness stays open
        for headers in ({}, {"authorization": "Bearer wrong-token-0123456789"}, {"authorization": TOKEN}):
            for reply in (c.get("/version", headers=headers), c.post("/act", json=body, headers=headers)):
                assert reply.status_code == 401 and reply.headers["www-authenticate"] == "Bearer", reply.text
        big = {"state": [0.0] * 5000}
        assert c.post("/act", json=big).status_code == 401  # refused before the body is read
        auth = {"authorization": f"Bearer {TOKEN}"}
        assert c.get("/version", headers=auth).status_code == 200
        assert c.post("/act", json=body, headers=auth).status_code == 200
        assert c.post("/act", json=big, headers=auth).status_code == 413


def test_a_token_given_on_loopback_is_required(registry: PolicyRegistry) -> None:
    config = ServeConfig(token=TOKEN, reload_interval_s=0)  # loopback, no --require-token
    assert config.token_required
    with _serving(create_app(config, RegistrySource(registry, "champion"))) as c:
        assert c.get("/version").status_code == 401
        assert c.get("/version", headers={"authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_foreign_host_header_is_refused(client: httpx.Client, registry: PolicyRegistry) -> None:
    """DNS rebinding: a page whose name resolves to 127.0.0.1 still sends its own name as Host."""
    for path in ("/health", "/version"):
        reply = client.get(path, headers={"host": "rebound.evil.example"})
        assert reply.status_code == 421, reply.text
    assert client.get("/health", headers={"host": "localhost"}).status_code == 200
    config = ServeConfig(reload_interval_s=0, allowed_hosts=("robot-gw.lab",))
    with _serving(create_app(config, RegistrySource(registry, "champion"))) as c:
        assert c.get("/health", headers={"host": "robot-gw.lab:8000"}).status_code == 200
        assert c.get("/health", headers={"host": "other.lab"}).status_code == 421


def test_token_comes_from_a_file_or_the_environment_never_argv(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(f"{TOKEN}\n")
    token_file.chmod(0o600)
    assert read_token(token_file, environ={}) == TOKEN
    assert read_token(None, environ={TOKEN_ENV: TOKEN}) == TOKEN
    assert read_token(None, environ={}) is None
    with pytest.raises(ServeError, match="not both"):
        read_token(token_file, environ={TOKEN_ENV: TOKEN})
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ServeError, match="is empty"):
        read_token(tmp_path / "empty", environ={})
    with pytest.raises(ServeError, match="cannot read the token file"):
        read_token(tmp_path / "missing", environ={})
    env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
    cli = subprocess.run(
        [sys.executable, "-m", "flywheel", "--home", str(tmp_path / "h"), "serve", "--token", TOKEN, "--port", "0"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert cli.returncode == 2 and "process list" in cli.stderr and "--token-file" in cli.stderr, cli.stderr
    assert TOKEN not in cli.stderr and not (tmp_path / "h").exists()


def test_hot_reload_follows_the_champion(tmp_path: Path, checkpoints: dict[str, Checkpoint]) -> None:
    store = _store(tmp_path / "home")
    reg = PolicyRegistry(store.db)
    first = _register(reg, checkpoints["a"], champion=True)
    second = _register(reg, checkpoints["b"])
    broken = _register(reg, checkpoints["a"], sha256="0" * 64)
    config = ServeConfig(reload_interval_s=0.1)
    app = create_app(config, RegistrySource(reg, "champion"))
    holder = app.state.holder
    in_flight = holder.current  # what a request that arrived before the move holds

    def wait_for(predicate: Callable[[dict], bool], timeout: float = 10.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            meta = c.get("/version").json()
            if predicate(meta) or time.monotonic() > deadline:
                return meta
            time.sleep(0.05)

    with _serving(app) as c:
        assert c.get("/version").json()["policy_version"] == first
        reg.promote(second, actor="test", reason="newer", force=True)
        start = time.monotonic()
        meta = wait_for(lambda m: m["policy_version"] == second)
        assert meta["policy_version"] == second and time.monotonic() - start < 2.0
        assert meta["sha256"] == checkpoints["b"].sha256 and meta["reloads"] == 1
        assert c.post("/act", json={"state": _state()}).json()["policy_version"] == second
        # the request that held the old policy finishes on it, with the old weights
        old = in_flight.runner(5).act_chunk({"state": np.zeros(6, np.float32)})
        ref = PolicyRunner.load(checkpoints["a"].path, seed=5).act_chunk({"state": np.zeros(6, np.float32)})
        np.testing.assert_array_equal(old, ref)
        # a version whose checkpoint fails its sha256 is not swapped in; the last good one keeps serving
        reg.promote(broken, actor="test", reason="bad", force=True)
        meta = wait_for(lambda m: m["reload_error"] is not None)
        assert meta["policy_version"] == second and "does not match the registered" in meta["reload_error"]
        assert c.post("/act", json={"state": _state()}).status_code == 200
    store.db.dispose()


def test_bench_serve_smoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from bench.serve import main

    out = tmp_path / "serve.json"
    args = ["--requests", "4", "--c8-seconds", "0.5", "--onnx-calls", "4", "--train-steps", "1", "--out", str(out)]
    main(args)
    saved = json.loads(out.read_text())
    for key in ("inprocess_p50_ms", "server_p50_ms_c1", "server_p95_ms_c1", "server_rps_c8", "onnx_p50_ms"):
        assert saved[key] > 0, key
    assert saved["server_errors_c8"] == 0 and saved["server_matches_inprocess_max_abs_diff"] == 0.0
    assert (
        saved["onnx_parity_max_abs_diff"] < 1e-4
        and saved["policy"]["chunk"] == saved["policy"]["model"]["expert"]["chunk"]
    )
    assert "server_overhead_p50_ms" in saved and capsys.readouterr().out.startswith("serve: in-process p50 ")
