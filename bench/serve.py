"""Policy serving: `/act` over HTTP against in-process `act_chunk`, and ONNX Runtime against PyTorch.

    python -m bench.serve [--requests 300] [--c8-seconds 10] [--threads 1] [--train-steps 40]

A state policy with the model shape `flywheel run` trains (the `quickstart` preset's model, on transfer_cube's
35-D state / 14-D action) is trained for a few steps on synthetic episodes — latency depends on the shape, not on
the weights — registered as champion in a scratch SQLite home, and served by `flywheel serve` in a subprocess
(uvicorn, one worker) with `--threads` torch threads. In-process and server calls are interleaved one by one so
background load hits both alike. Writes bench/results/serve.json and prints a one-line summary.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("WANDB_MODE", "offline")

import argparse
import http.client
import importlib.util
import json
import platform
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
import numpy as np
import onnxruntime
import torch

from bench.report import run_and_report
from flywheel.config import Settings
from flywheel.policy.loading import LoadedPolicy, load_policy
from flywheel.policy.onnx_export import check_parity, export_onnx, onnx_session
from flywheel.policy.runner import PolicyRunner
from flywheel.presets import train_config
from flywheel.registry import PolicyRegistry
from flywheel.store import EpisodeStore
from flywheel.train import run_training
from flywheel.train.synthetic import toy_episode

_HERE = Path(__file__).resolve().parent
RESULTS = _HERE / "results" / "serve.json"
STATE_DIM, ACTION_DIM = 35, 14  # transfer_cube in state mode
OVERHEAD_TARGET_MS = 2.0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300, help="interleaved in-process/server calls at c=1")
    parser.add_argument("--c8-seconds", type=float, default=10.0, help="duration of the concurrency-8 run")
    parser.add_argument("--onnx-calls", type=int, default=300, help="interleaved ONNX Runtime/PyTorch calls")
    parser.add_argument("--threads", type=int, default=1, help="torch / ONNX Runtime intra-op threads")
    parser.add_argument("--train-steps", type=int, default=40)
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser.parse_args(argv)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def train_policy(root: Path, steps: int, threads: int) -> tuple[Path, str, dict[str, Any]]:
    """Default-shaped policy, a few steps on synthetic 35-D/14-D episodes (latency needs the shape, not skill)."""
    cfg = train_config(
        "quickstart",
        {
            "steps": steps,
            "critic_steps": max(1, steps // 4),
            "warmup_steps": 1,
            "wandb": False,
            "cpu_threads": threads,
            "checkpoint_every": 10 * steps,
        },
    )
    episodes = [toy_episode(i, length=80, state_dim=STATE_DIM, action_dim=ACTION_DIM) for i in range(8)]
    episodes += [toy_episode(100 + i, ["policy"] * 40 + ["expert"] * 40, 80, STATE_DIM, ACTION_DIM) for i in range(4)]
    result = run_training(cfg, episodes, root / "run", progress=False)
    return result.checkpoint_dir, result.sha256, cfg.model.model_dump(mode="json")


def register_champion(home: Path, checkpoint: Path, sha256: str) -> int:
    store = EpisodeStore.open(Settings(home=home))
    try:
        registry = PolicyRegistry(store.db)
        version = registry.register_candidate(
            task="transfer_cube",
            checkpoint_uri=str(checkpoint),
            sha256=sha256,
            config={},
            data_fingerprint={},
            metrics={},
        )
        registry.promote(version.id, actor="bench", reason="serve benchmark", force=True)
        return version.id
    finally:
        store.db.dispose()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """`flywheel serve` in a subprocess on a free loopback port."""

    def __init__(self, home: Path, threads: int) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if k != "FLYWHEEL_SERVE_TOKEN"}
        command = [sys.executable, "-m", "flywheel", "--home", str(home), "serve", "--port", str(self.port)]
        command += ["--threads", str(threads), "--log-level", "warning"]
        self.proc = subprocess.Popen(command, cwd=_HERE.parent, env=env, stderr=subprocess.PIPE, text=True)

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"flywheel serve exited: {self.proc.stderr.read() if self.proc.stderr else ''}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"flywheel serve did not answer on {self.url} within {timeout:.0f} s")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000.0


class LeanClient:
    """A keep-alive HTTP/1.1 client on the standard library's `http.client`: the least client-side work per request,
    so the measured time is the server's and the wire's. (httpx, measured alongside, adds about a millisecond.)
    """

    def __init__(self, url: str, timeout: float = 60.0) -> None:
        host, _, port = url.removeprefix("http://").partition(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=timeout)

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, str], bytes]:
        payload = None if body is None else json.dumps(body).encode()
        headers = {} if payload is None else {"Content-Type": "application/json"}
        self.conn.request(method, path, body=payload, headers=headers)
        reply = self.conn.getresponse()
        data = reply.read()
        return reply.status, {k.lower(): v for k, v in reply.getheaders()}, data

    def act(self, state: np.ndarray, seed: int | None = None) -> tuple[dict[str, str], bytes]:
        body: dict[str, Any] = {"state": state.tolist()}
        if seed is not None:
            body["seed"] = seed
        status, headers, data = self.request("POST", "/act", body)
        if status != 200:
            raise RuntimeError(f"/act answered {status}: {data[:200]!r}")
        return headers, data

    def close(self) -> None:
        self.conn.close()


def server_inference_ms(headers: Any) -> float:
    """The policy's own time on the server, from `Server-Timing: inference;dur=<ms>`."""
    return float(headers["server-timing"].partition("dur=")[2])


def compare_inprocess_and_server(
    loaded: LoadedPolicy, lean: LeanClient, client: httpx.Client, states: np.ndarray, n: int
) -> dict[str, Any]:
    """Interleaved: one in-process `act_chunk`, then the same observation as `/act` through the lean client and
    through httpx, then `/health`; background load hits all of them alike.
    """
    runner = PolicyRunner(loaded, seed=0)
    _, first = lean.act(states[0], seed=0)
    local_chunk = runner.act_chunk({"state": states[0]})
    same = float(np.abs(np.asarray(json.loads(first)["actions"], np.float32) - local_chunk).max())
    for i in range(20):  # warm-up
        runner.act_chunk({"state": states[i % len(states)]})
        lean.act(states[i % len(states)])
        client.post("/act", json={"state": states[i % len(states)].tolist()}).raise_for_status()
    local, remote, remote_httpx, beyond_inference, health = [], [], [], [], []
    for i in range(n):
        state = states[i % len(states)]
        local.append(_timed(lambda s=state: runner.act_chunk({"state": s})))
        start = time.perf_counter()
        headers, data = lean.act(state)
        json.loads(data)
        remote.append((time.perf_counter() - start) * 1000.0)
        beyond_inference.append(remote[-1] - server_inference_ms(headers))
        remote_httpx.append(_timed(lambda s=state: client.post("/act", json={"state": s.tolist()}).json()))
        health.append(_timed(lambda: lean.request("GET", "/health")))
    inprocess_p50, server_p50 = percentile(local, 50), percentile(remote, 50)
    return {
        "health_p50_ms_c1": percentile(health, 50),
        "server_time_outside_inference_p50_ms": percentile(beyond_inference, 50),
        "inprocess_p50_ms": inprocess_p50,
        "inprocess_p95_ms": percentile(local, 95),
        "server_p50_ms_c1": server_p50,
        "server_p95_ms_c1": percentile(remote, 95),
        "server_overhead_p50_ms": server_p50 - inprocess_p50,
        "server_overhead_p10_ms": percentile(remote, 10) - percentile(local, 10),
        "server_time_outside_inference_p10_ms": percentile(beyond_inference, 10),
        "server_overhead_target_ms": OVERHEAD_TARGET_MS,
        "server_overhead_target_met": server_p50 - inprocess_p50 < OVERHEAD_TARGET_MS,
        "httpx_server_p50_ms_c1": percentile(remote_httpx, 50),
        "httpx_server_overhead_p50_ms": percentile(remote_httpx, 50) - inprocess_p50,
        "server_matches_inprocess_max_abs_diff": same,
    }


def concurrent_rps(url: str, states: np.ndarray, concurrency: int, seconds: float) -> dict[str, Any]:
    """`concurrency` keep-alive clients in threads, each sending `/act` back to back for `seconds`."""
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    errors = [0] * concurrency
    ready, go, deadline = threading.Barrier(concurrency + 1), threading.Event(), [0.0]

    def worker(k: int) -> None:
        client = LeanClient(url)
        try:
            client.act(states[k])  # connect and warm up before the clock starts
            ready.wait()
            go.wait()
            i = k
            while time.perf_counter() < deadline[0]:
                start = time.perf_counter()
                status, _, _ = client.request("POST", "/act", {"state": states[i % len(states)].tolist()})
                errors[k] += status != 200
                latencies[k].append((time.perf_counter() - start) * 1000.0)
                i += concurrency
        finally:
            client.close()

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(concurrency)]
    for t in threads:
        t.start()
    ready.wait()
    start = time.perf_counter()
    deadline[0] = start + seconds
    go.set()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    flat = [ms for per in latencies for ms in per]
    return {
        f"server_rps_c{concurrency}": len(flat) / elapsed,
        f"server_p50_ms_c{concurrency}": percentile(flat, 50),
        f"server_p95_ms_c{concurrency}": percentile(flat, 95),
        f"server_errors_c{concurrency}": sum(errors),
    }


def compare_onnx_and_torch(loaded: LoadedPolicy, path: Path, states: np.ndarray, n: int, threads: int) -> dict:
    """Interleaved single-observation calls: ONNX Runtime session vs the PyTorch runner (same noise shape)."""
    session = onnx_session(path, threads=threads)
    runner = PolicyRunner(loaded, seed=0)
    chunk = loaded.model_config.expert.chunk
    rng = np.random.default_rng(0)
    noise = rng.standard_normal((len(states), 1, chunk, ACTION_DIM)).astype(np.float32)
    for i in range(20):
        session.run(None, {"state": states[i % len(states)][None], "noise": noise[i % len(states)]})
        runner.act_chunk({"state": states[i % len(states)]})
    ort_ms, torch_ms = [], []
    for i in range(n):
        feeds = {"state": states[i % len(states)][None], "noise": noise[i % len(states)]}
        ort_ms.append(_timed(lambda f=feeds: session.run(None, f)))
        torch_ms.append(_timed(lambda s=states[i % len(states)]: runner.act_chunk({"state": s})))
    return {
        "onnx_p50_ms": percentile(ort_ms, 50),
        "onnx_p95_ms": percentile(ort_ms, 95),
        "torch_p50_ms": percentile(torch_ms, 50),
        "torch_p95_ms": percentile(torch_ms, 95),
        "onnx_speedup_p50": percentile(torch_ms, 50) / percentile(ort_ms, 50),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="flywheel-bench-serve-") as tmp:
        root = Path(tmp)
        checkpoint, sha256, model = train_policy(root, args.train_steps, args.threads)
        version = register_champion(root / "home", checkpoint, sha256)
        loaded = load_policy(checkpoint, expected_sha256=sha256)
        rng = np.random.default_rng(1)
        norm = loaded.norm.state
        states = (norm.shift + norm.scale * rng.standard_normal((64, STATE_DIM))).astype(np.float32)

        server = ServerProcess(root / "home", args.threads)
        try:
            server.wait_ready()
            lean = LeanClient(server.url)
            try:
                with httpx.Client(base_url=server.url, timeout=60) as client:
                    served = client.get("/version").json()
                    c1 = compare_inprocess_and_server(loaded, lean, client, states, args.requests)
            finally:
                lean.close()
            c8 = concurrent_rps(server.url, states, 8, args.c8_seconds)
        finally:
            server.stop()

        onnx_path = export_onnx(loaded, root / "policy.onnx")
        parity = check_parity(loaded, onnx_path)
        onnx = compare_onnx_and_torch(loaded, onnx_path, states, args.onnx_calls, args.threads)
    return {
        "bench": "serve",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__,
            "threads": args.threads,
            "loadavg_1min_at_start": load_before,
            "loadavg_1min_at_end": os.getloadavg()[0],
        },
        "params": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "policy": {
            "version": version,
            "model": model,
            "state_dim": STATE_DIM,
            "action_dim": ACTION_DIM,
            "chunk": served["chunk_size"],
            "num_steps": served["num_steps"],
        },
        **c1,
        **c8,
        **onnx,
        "onnx_parity_max_abs_diff": parity.max_abs_diff,
        "notes": (
            f"server = `flywheel serve` subprocess (uvicorn {uvicorn_stack()}, one worker, async /act with "
            "inference on one dedicated thread); clients in this process: a keep-alive http.client connection "
            "(the server_* keys, c8 too) and httpx (httpx_* keys); c1 interleaves one in-process act_chunk, one "
            "/act call per client and one /health; the 2 CPU cores are shared with the client and other jobs "
            "(see loadavg), so c8 is CPU-bound"
        ),
        "seconds": time.perf_counter() - started,
    }


def uvicorn_stack() -> str:
    """What uvicorn's `auto` settings pick here: httptools and uvloop when installed, else h11 and asyncio."""
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    return f"{http} + {loop}"


def summary(r: dict[str, Any]) -> str:
    return (
        f"serve: in-process p50 {r['inprocess_p50_ms']:.2f} ms | /act c1 p50 {r['server_p50_ms_c1']:.2f} ms "
        f"p95 {r['server_p95_ms_c1']:.2f} ms (overhead p50 {r['server_overhead_p50_ms']:.2f} ms, target < "
        f"{OVERHEAD_TARGET_MS:g}; {r['httpx_server_overhead_p50_ms']:.2f} ms with httpx) | "
        f"c8 {r['server_rps_c8']:.0f} req/s | ONNX p50 {r['onnx_p50_ms']:.2f} ms vs torch "
        f"{r['torch_p50_ms']:.2f} ms ({r['onnx_speedup_p50']:.1f}x) | {r['seconds']:.0f} s"
    )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    return run_and_report(run, summary, parse_args(argv))


if __name__ == "__main__":
    main()
