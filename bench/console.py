"""Console responsiveness: writes bench/results/console.json, prints one line.

- takeover → first frame under human control: `LiveSession.take_over()` then `frame()` (service level), and a
  click on "Take over" through the real console app under `streamlit.testing.v1.AppTest` (a full script rerun);
- live view frames per second: the step + render loop of one session (policy acting, one 240x320 camera).
Uses a tiny trained policy (tests/live_support.py) on a scratch SQLite store.
    python -m bench.console [--trials 30] [--seconds 5]
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("WANDB_MODE", "offline")

import argparse
import json
import logging
import tempfile
import time

import numpy as np
import torch

from flywheel.config import Settings
from flywheel.live import LiveConfig, RolloutSpec, SessionManager
from flywheel.store import EpisodeStore
from tests.live_support import register_policy, train_tiny_policy

_HERE = Path(__file__).resolve().parent
RESULTS = _HERE / "results" / "console.json"
ROOT = _HERE.parent


def takeover_latency_ms(manager: SessionManager, trials: int) -> list[float]:
    """Service level: take_over() + frame() on a session whose current frame was already shown."""
    rng = np.random.default_rng(0)
    times = []
    for i in range(trials):
        session = manager.start(RolloutSpec(policy="champion", seed=i), operator="bench")
        session.advance(int(rng.integers(10, 60)))
        session.frame()
        start = time.perf_counter()
        session.take_over()
        session.frame()
        times.append((time.perf_counter() - start) * 1000)
        manager.discard(session.id)
    return times


def live_view_fps(manager: SessionManager, seconds: float) -> tuple[float, float, float]:
    """(step+render frames/s with the policy acting, render-only frames/s, jogs/s under human control)."""
    session = manager.start(RolloutSpec(policy="champion", seed=123, max_steps=10_000), operator="bench")
    frames, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        session.advance(1)
        session.frame()
        frames += 1
    loop_fps = frames / (time.perf_counter() - start)
    session.take_over()
    jogs, start, direction = 0, time.perf_counter(), 1
    while time.perf_counter() - start < seconds / 2:
        session.jog("left", "z", direction)
        session.frame()
        direction, jogs = -direction, jogs + 1
    jog_rate = jogs / (time.perf_counter() - start)
    manager.discard(session.id)
    return loop_fps, render_only_fps(manager.config, seconds / 2), jog_rate


def render_only_fps(config: LiveConfig, seconds: float) -> float:
    """The renderer alone, same camera and size (the ceiling of the live view)."""
    from sim import make_env
    from sim.render import CameraRenderer

    env = make_env("transfer_cube")
    env.reset(seed=0)
    renderer = CameraRenderer(env.model, ("top",), *config.image_size)
    renders, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        renderer.render(env.data)
        renders += 1
    fps = renders / (time.perf_counter() - start)
    renderer.close()
    return fps


def apptest_takeover_ms(home: Path, trials: int) -> list[float]:
    """Click "Take over" in the real console app (AppTest): the full rerun that shows the human-controlled frame."""
    from streamlit.testing.v1 import AppTest

    logging.getLogger("streamlit").setLevel(logging.ERROR)
    os.environ["FLYWHEEL_HOME"] = str(home)
    times = []
    for i in range(trials):
        at = AppTest.from_file(str(ROOT / "app" / "console.py"), default_timeout=120)
        at.session_state["operator_input"] = "bench"
        at.run()
        at.number_input(key="live_seed").set_value(1000 + i)
        at.button(key="live_start").click().run()
        start = time.perf_counter()
        at.button(key="live_take_over").click().run()
        times.append((time.perf_counter() - start) * 1000)
        assert not at.exception and len(at.get("image")) == 1, at.exception
        at.button(key="live_discard").click().run()
    return times


CLICK_TO_HUMAN_JS = """
() => new Promise((resolve) => {
  const button = [...document.querySelectorAll('button')].find(b => b.innerText.trim().startsWith('Take over'));
  const start = performance.now();
  const observer = new MutationObserver(() => {
    if (document.body.innerText.includes('You are in control')) {
      observer.disconnect();
      resolve(performance.now() - start);
    }
  });
  observer.observe(document.body, {childList: true, subtree: true, characterData: true});
  button.click();
  setTimeout(() => resolve(-1), 15000);
})
"""
IMAGE_CHANGES_JS = """
(seconds) => new Promise((resolve) => {
  let changes = 0, last = null;
  const timer = setInterval(() => {
    const img = document.querySelector('[data-testid="stImage"] img') || document.querySelector('main img');
    if (img && img.src !== last) { changes += 1; last = img.src; }
  }, 10);
  setTimeout(() => { clearInterval(timer); resolve(changes / seconds); }, seconds * 1000);
})
"""


def browser_numbers(home: Path, trials: int, seconds: float) -> tuple[list[float], float]:
    """A real `flywheel console` and Chromium (Playwright): click "Take over" → "You are in control" shown (ms),
    and distinct frames per second the page displays while the policy plays."""
    import signal
    import socket
    import subprocess

    from playwright.sync_api import sync_playwright

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "FLYWHEEL_HOME": str(home)}
    server = subprocess.Popen(
        [sys.executable, "-m", "flywheel", "console", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            deadline = time.monotonic() + 60
            while True:
                try:
                    page.goto(f"http://127.0.0.1:{port}/")
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.5)
            page.get_by_role("button", name="Start rollout").wait_for(timeout=60_000)
            time.sleep(1)
            name = page.get_by_role("textbox", name="Operator name")
            for _ in range(5):  # on a cold server the first commit can be lost (see the helper's report)
                name.fill("bench")
                name.press("Enter")
                time.sleep(1.5)
                if name.input_value() == "bench":
                    break
            times = []
            fps = 0.0
            for i in range(trials):
                page.get_by_role("button", name="Start rollout").click()
                page.get_by_role("button", name="Take over").wait_for(timeout=30_000)
                if i == 0:
                    fps = float(page.evaluate(IMAGE_CHANGES_JS, seconds))
                time.sleep(0.5 + 0.1 * (i % 5))
                times.append(float(page.evaluate(CLICK_TO_HUMAN_JS)))
                page.get_by_role("button", name="Discard").click()
                page.get_by_role("button", name="Start rollout").wait_for(timeout=30_000)
            browser.close()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    return [t for t in times if t >= 0], fps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--browser", action="store_true", help="also measure in Chromium against `flywheel console`")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="flywheel-bench-console-") as tmp:
        home = Path(tmp) / "home"
        store = EpisodeStore.open(Settings(home=home))
        register_policy(store, *train_tiny_policy(Path(tmp) / "policy"))
        config = LiveConfig()
        manager = SessionManager(store, config, background=False)
        try:
            service = takeover_latency_ms(manager, args.trials)
            loop_fps, render_fps, jog_rate = live_view_fps(manager, args.seconds)
        finally:
            manager.close()
        apptest = apptest_takeover_ms(home, max(3, args.trials // 3))
        store.db.dispose()
        browser = browser_numbers(home, max(5, args.trials // 3), args.seconds) if args.browser else None
    h, w = config.image_size
    result = {
        "takeover_to_human_frame_ms_p50": float(np.percentile(service, 50)),
        "takeover_to_human_frame_ms_p95": float(np.percentile(service, 95)),
        "takeover_to_human_frame_apptest_ms_p50": float(np.percentile(apptest, 50)),
        "live_view_fps": loop_fps,
        "render_only_fps": render_fps,
        "jogs_per_s": jog_rate,
        "trials": args.trials,
        "refresh_s": config.refresh_s,
        "load_average_1min": os.getloadavg()[0],
        "notes": (
            f"one {h}x{w} 'top' camera, shadows/reflections/MSAA off, state-mode sim, tiny policy acting; "
            f"live_view_fps = session.advance(1) + frame(); a jog advances {config.jog_sim_steps} sim steps; "
            "AppTest = full rerun of app/console.py after the click (no browser, no network)"
        ),
    }
    if browser is not None:
        clicks, shown_fps = browser
        result["takeover_to_human_frame_browser_ms_p50"] = float(np.percentile(clicks, 50)) if clicks else None
        result["browser_displayed_fps"] = shown_fps
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"console: take over → human frame p50 {result['takeover_to_human_frame_ms_p50']:.1f} ms "
        f"(AppTest click {result['takeover_to_human_frame_apptest_ms_p50']:.0f} ms); "
        f"live view {loop_fps:.0f} fps at {h}x{w} (render only {render_fps:.0f} fps, {jog_rate:.0f} jogs/s)"
    )


if __name__ == "__main__":
    main()
