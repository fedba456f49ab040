"""Console responsiveness: writes bench/results/console.json, prints one line.

- takeover → first frame under human control: `LiveSession.take_over()` then `frame()` (service level), and a
  click on "Take over" through the real console app under `streamlit.testing.v1.AppTest` (a full script rerun);
- live view frames per second: the step + render loop of one session (policy acting, one 240x320 camera);
- in Chromium (Playwright) against a real `flywheel console` on loopback, the live stream of two 240x320 cameras:
  frames per second the page draws while a person drives in real time, key-down → first drawn frame rendered after
  the simulation moved with that key (step-wait mode, so nothing else moves it), and the same for a gamepad stick
  (the Gamepad API answered by an init script). Also saves docs/screenshots/teleop_live_stream.png.
Uses a tiny trained policy (tests/live_support.py) on a scratch SQLite store.
    python -m bench.console [--trials 30] [--seconds 5] [--no-browser]
"""

from __future__ import annotations

import os
from pathlib import Path

from flywheel.headless import HEADLESS_ENV

os.environ.update({name: os.environ.get(name, value) for name, value in HEADLESS_ENV.items()})  # before MuJoCo loads

import argparse
import json
import logging
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from flywheel.config import Settings
from flywheel.live import LiveConfig, RolloutSpec, SessionManager
from flywheel.store import EpisodeStore
from flywheel.vocab import DEFAULT_CAMERA
from tests.e2e_support import CHROMIUM, VIEWPORT, WAIT_MS, ConsoleProcess, screenshot, settle
from tests.live_support import acked, register_policy, train_tiny_policy, wait_for_live

_HERE = Path(__file__).resolve().parent
RESULTS = _HERE / "results" / "console.json"
ROOT = _HERE.parent
SCREENSHOTS = ROOT / "docs" / "screenshots"


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
    renderer = CameraRenderer(env.model, (DEFAULT_CAMERA,), *config.image_size)
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


FAKE_GAMEPAD_JS = """
(() => {
  const pad = {id: 'flywheel bench pad', index: 0, connected: true, mapping: 'standard', timestamp: 0,
               axes: [0, 0, 0, 0], buttons: Array.from({length: 17}, () => ({pressed: false, value: 0}))};
  window.__fakePad = pad;
  navigator.getGamepads = () => [pad];
  addEventListener('keydown', (e) => { if (!e.repeat) window.__keyDownAt = performance.now(); }, true);
})();
"""
SENT_AFTER_JS = """(since) => { const s = window.__flywheelLive.sent.filter(x => x[1] >= since && x[2] === 'drive');
  return s.length ? s[0] : null; }"""
FRAME_FOR_JS = """([seq, t]) => { const f = window.__flywheelLive.frames.find(x => x[2] >= seq && x[1] > t);
  return f ? f[0] : null; }"""


def _live_step(page: Any) -> int:
    return int(page.evaluate("() => { const f = window.__flywheelLive.frames; return f[f.length - 1][1]; }"))


def _key_down(page: Any, key: str) -> float:
    """Press `key` (held); returns when the page saw the keydown (performance.now())."""
    page.keyboard.down(key)
    return float(page.evaluate("() => window.__keyDownAt"))


def _photon_ms(page: Any, press: Callable[[], float], release: Callable[[], None]) -> float:
    """One trial in step-wait mode: `press` (returns its performance.now()), the drive input it sends, the first
    frame drawn that the server rendered after stepping with it; then `release` and wait for its ack."""
    t = _live_step(page)
    pressed_at = press()
    sent = page.wait_for_function(SENT_AFTER_JS, arg=pressed_at - 1, timeout=30_000, polling=2).json_value()
    shown = page.wait_for_function(FRAME_FOR_JS, arg=[sent[0], t], timeout=30_000, polling=2).json_value()
    release()
    acked(page, 30_000)
    return float(shown) - pressed_at


def stream_numbers(home: Path, trials: int, seconds: float) -> dict[str, Any]:
    """A real `flywheel console` and Chromium (Playwright) on loopback: take over with T; displayed frames per
    second while driving in real time; key-down (and gamepad stick) to the first frame showing the motion."""
    from playwright.sync_api import sync_playwright

    console = ConsoleProcess(home, home / "bench-console.log")
    console.start()
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
            page = browser.new_page(viewport=VIEWPORT)
            page.add_init_script(FAKE_GAMEPAD_JS)
            page.set_default_timeout(WAIT_MS)
            page.goto(console.url)
            page.get_by_role("button", name="Start rollout").wait_for()
            settle(page)
            name = page.get_by_role("textbox", name="Operator name")
            name.fill("bench")
            name.press("Enter")
            page.get_by_text("Enter your name").wait_for(state="detached")
            page.get_by_role("button", name="Start rollout").click()
            wait_for_live(page, "true")
            page.evaluate("() => document.activeElement?.blur()")
            start = time.perf_counter()
            page.keyboard.press("t")
            wait_for_live(page, "last[3] === 'human'")
            takeover_ms = (time.perf_counter() - start) * 1000
            page.locator(".fw-mode").click()  # real time: the sim runs at the control rate while the person drives
            wait_for_live(page, "window.__flywheelLive.header.mode === 'realtime'")
            page.keyboard.down("e")
            page.wait_for_timeout(500)
            first = page.evaluate("() => window.__flywheelLive.frames.length")
            page.wait_for_timeout(seconds * 1000)
            last = page.evaluate("() => window.__flywheelLive.frames.length")
            page.keyboard.up("e")
            fps = (last - first) / seconds
            page.locator(".fw-mode").click()  # step-wait: a frame shows motion only after a held input
            acked(page)  # (no frame follows: nothing moves until a held input)
            keys, pads = [], []
            for i in range(trials):
                key = "q" if i % 2 else "e"  # down, up, down...: the arm stays within reach
                keys.append(
                    _photon_ms(
                        page,
                        lambda k=key: _key_down(page, k),
                        lambda k=key: page.keyboard.up(k),
                    )
                )
                page.wait_for_timeout(50 + 10 * (i % 5))
            for i in range(trials):
                value = -1 if i % 2 else 1  # left stick up / down: the left arm's y
                pads.append(
                    _photon_ms(
                        page,
                        lambda v=value: float(
                            page.evaluate(f"() => {{ window.__fakePad.axes[1] = {v}; return performance.now(); }}")
                        ),
                        lambda: page.evaluate("() => { window.__fakePad.axes[1] = 0; }"),
                    )
                )
                page.wait_for_timeout(50 + 10 * (i % 5))
            screenshot(page, SCREENSHOTS / "teleop_live_stream.png")
            refused = page.evaluate("() => window.__flywheelLive.refused")
            browser.close()
    finally:
        console.stop()
    return {
        "browser_displayed_fps": fps,
        "key_to_photon_ms_p50": float(np.percentile(keys, 50)),
        "key_to_photon_ms_p95": float(np.percentile(keys, 95)),
        "gamepad_to_photon_ms_p50": float(np.percentile(pads, 50)),
        "gamepad_to_photon_ms_p95": float(np.percentile(pads, 95)),
        "takeover_key_to_human_frame_browser_ms": takeover_ms,
        "photon_trials": trials,
        "refused_inputs": len(refused),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--no-browser", action="store_true", help="skip the Chromium measurements")
    args = parser.parse_args()
    torch.set_num_threads(1)
    load_start = os.getloadavg()[0]
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
        # all in one 400-step rollout (the page's default): 3 s of real time plus 2 x 20 short holds fit in it
        browser = None if args.no_browser else stream_numbers(home, min(args.trials, 20), min(args.seconds, 3.0))
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
        "load_average_1min_start": load_start,
        "load_average_1min_end": os.getloadavg()[0],
        "cameras": ["top", "right_wrist"],  # what the live stream shows: the display camera and a wrist camera
        "image_size": list(config.image_size),
        "notes": (
            f"one {h}x{w} 'top' camera, shadows/reflections/MSAA off, state-mode sim, tiny policy acting; "
            f"live_view_fps = session.advance(1) + frame(); a jog advances {config.jog_sim_steps} sim steps; "
            "AppTest = full rerun of app/console.py after the click (no browser, no network)"
        ),
    }
    if browser is not None:
        result |= browser
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    if browser is not None:
        print(
            f"console in Chromium: {browser['browser_displayed_fps']:.1f} frames/s shown while driving; key → frame "
            f"p50 {browser['key_to_photon_ms_p50']:.0f} ms, p95 {browser['key_to_photon_ms_p95']:.0f} ms; gamepad "
            f"p50 {browser['gamepad_to_photon_ms_p50']:.0f} ms"
        )
    print(
        f"console: take over → human frame p50 {result['takeover_to_human_frame_ms_p50']:.1f} ms "
        f"(AppTest click {result['takeover_to_human_frame_apptest_ms_p50']:.0f} ms); "
        f"live view {loop_fps:.0f} fps at {h}x{w} (render only {render_fps:.0f} fps, {jog_rate:.0f} jogs/s)"
    )


if __name__ == "__main__":
    main()
