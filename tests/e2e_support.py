"""Helpers for the browser test of the console: the `flywheel console` process and Streamlit-aware Playwright
locators, waits, full-page screenshots and an in-page probe that times the live view.

Widgets are found by their Streamlit key (the `st-key-<key>` class of their container) or their label, pages
by their sidebar label: nothing here depends on where the page files live.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Locator, Page, expect, sync_playwright
from streamlit.proto.BackMsg_pb2 import BackMsg
from websockets.sync.client import connect as ws_connect

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
VIEWPORT = {"width": 1400, "height": 900}
WAIT_MS = 90_000  # Streamlit reruns on 2 busy cores: generous, but every wait is on a condition
CLEARED_ENV = ("FLYWHEEL_DB_URL", "FLYWHEEL_CONFIG", "FLYWHEEL_OPERATOR", "FLYWHEEL_CONSOLE_PASSWORD")


class ConsoleProcessError(RuntimeError):
    """`flywheel console` exited or never became healthy."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class ConsoleProcess:
    """`flywheel --home HOME console --port PORT` in its own process group (Streamlit is its child)."""

    home: Path
    log: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)  # added to the cleaned environment (e.g. a password)
    args: tuple[str, ...] = ()  # more `flywheel console` options
    scheme: str = "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 120.0) -> ConsoleProcess:
        env = {k: v for k, v in os.environ.items() if k not in CLEARED_ENV}
        env.setdefault("MUJOCO_GL", "egl")
        env.update(self.env)
        command = [sys.executable, "-m", "flywheel", "--home", str(self.home), "console", "--port", str(self.port)]
        command += self.args
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ConsoleProcessError(f"flywheel console exited with {self.proc.returncode}: {self.output()}")
            try:
                if httpx.get(f"{self.url}/_stcore/health", timeout=2, verify=False).text == "ok":
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.25)
        raise ConsoleProcessError(f"flywheel console not healthy after {timeout_s:.0f} s: {self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.is_file() else ""

    def stop(self) -> None:
        """SIGTERM the whole group (the command forwards it to Streamlit); SIGKILL whatever is left after 30 s."""
        if self.proc is None:
            return
        for sig, wait_s in ((signal.SIGTERM, 30.0), (signal.SIGKILL, 10.0)):
            if not self._group_alive():
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            deadline = time.monotonic() + wait_s
            while self._group_alive() and time.monotonic() < deadline:
                time.sleep(0.2)
        self.proc = None

    def _group_alive(self) -> bool:
        assert self.proc is not None
        self.proc.poll()  # reap the leader, so only live members keep the group
        try:
            os.killpg(self.proc.pid, 0)
        except ProcessLookupError:
            return False
        return True


@contextlib.contextmanager
def running_console(home: Path, log: Path) -> Iterator[ConsoleProcess]:
    """A console process on `home` for the duration of the block."""
    process = ConsoleProcess(home, log)
    try:
        yield process.start()
    finally:
        process.stop()


@contextlib.contextmanager
def chromium_page(tmp_path: Path) -> Iterator[Page]:
    """A headless Debian chromium page with the suite's waits; the last thing it showed is kept as
    `last_page.png` in `tmp_path` for a failed run."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport=VIEWPORT)
        page.set_default_timeout(WAIT_MS)
        expect.set_options(timeout=WAIT_MS)
        try:
            yield page
        finally:
            expect.set_options(timeout=None)  # back to Playwright's default
            with contextlib.suppress(PlaywrightError):
                page.screenshot(path=str(tmp_path / "last_page.png"), timeout=10_000)
            browser.close()


def send_clear_cache(url: str, cookie: str | None = None) -> None:
    """Connect as another Streamlit client and send its "clear cache" message (any connected client may)."""
    headers = {"Cookie": cookie} if cookie else {}
    with ws_connect(
        url.replace("http", "ws", 1) + "/_stcore/stream", subprotocols=["streamlit"], additional_headers=headers
    ) as ws:
        clear, rerun = BackMsg(), BackMsg()
        clear.clear_cache = True
        rerun.rerun_script.query_string = ""
        ws.send(clear.SerializeToString())
        ws.send(rerun.SerializeToString())
        ws.recv(timeout=60)  # the rerun answered, so the clear before it was handled


# -- Streamlit locators ----------------------------------------------------------------------------------------


def keyed(page: Page, key: str) -> Locator:
    """The container of the widget with this Streamlit key."""
    return page.locator(f".st-key-{key}")


def button(page: Page, key: str) -> Locator:
    """A keyed button (by role: a button with `help=` also has a hidden copy Streamlit measures)."""
    return keyed(page, key).get_by_role("button")


def markdown_line(page: Page, pattern: str) -> Locator:
    """The paragraph of markdown text matching a regular expression."""
    return page.locator('[data-testid="stMarkdownContainer"] p').filter(has_text=re.compile(pattern))


def combobox(page: Page, key: str) -> Locator:
    """A keyed select box's input (its value is the chosen option's text)."""
    return keyed(page, key).get_by_role("combobox")


def choose(page: Page, key: str, option: str) -> None:
    """Open a keyed select box and pick the first option whose text contains `option`."""
    box = combobox(page, key)
    box.click()
    page.get_by_role("option").filter(has_text=option).first.click()
    expect(box).to_have_value(re.compile(re.escape(option)), timeout=WAIT_MS)


def go_to(page: Page, label: str, url_path: str | None = None) -> None:
    """Open a page from the sidebar (the browser session, and so the operator's name, is kept); `url_path`
    checks where it landed (None for the default page, which Streamlit serves at `/`)."""
    page.locator('[data-testid="stSidebarNavLink"]').filter(has_text=label).click()
    if url_path is not None:
        page.wait_for_url(f"**/{url_path}", timeout=WAIT_MS)
    expect(page.locator("h1").first).to_contain_text(label, timeout=WAIT_MS)


def metric(page: Page, label: str) -> Locator:
    return page.locator('[data-testid="stMetric"]').filter(has_text=label).locator('[data-testid="stMetricValue"]')


SETTLED_JS = """() => {
  const main = document.querySelector('[data-testid="stMain"]');
  if (!main || main.querySelector('[data-stale="true"], [data-testid="stSkeleton"], [data-testid="stSpinner"]'))
    return false;
  if ([...main.querySelectorAll('img')].some(img => !img.complete || img.naturalWidth === 0)) return false;
  if (![...main.querySelectorAll('[data-testid="stVegaLiteChart"]')].every(c => c.querySelector('canvas, svg')))
    return false;
  // Streamlit sends a run's elements one by one: the page must also stay the same for a while.
  const signature = main.querySelectorAll('[data-testid="stElementContainer"]').length + ':' + main.innerText;
  const seen = window.__flywheelSettle || (window.__flywheelSettle = {signature: null, since: 0});
  const now = performance.now();
  if (seen.signature !== signature) {
    seen.signature = signature;
    seen.since = now;
  }
  return now - seen.since >= %d;
}"""


def settle(page: Page, quiet_ms: int = 750) -> None:
    """Wait until the page is done: nothing stale or loading, images loaded, every chart drawn, and nothing on
    the page changed for `quiet_ms` (the console's minimal toolbar shows no running indicator to wait on)."""
    page.wait_for_function(SETTLED_JS % quiet_ms, timeout=WAIT_MS, polling=100)


CONTENT_HEIGHT_JS = """() => {
  const main = document.querySelector('[data-testid="stMain"]');
  const block = document.querySelector('[data-testid="stMainBlockContainer"]');
  const side = document.querySelector('[data-testid="stSidebarContent"]');
  return Math.ceil(Math.max(block.getBoundingClientRect().bottom + main.scrollTop, side ? side.scrollHeight : 0));
}"""


def screenshot(page: Page, path: Path) -> None:
    """The whole page, not just the viewport: Streamlit scrolls inside its main block, so grow the viewport
    until it holds everything (charts further down are laid out only once they come into view)."""
    page.evaluate("() => document.activeElement?.blur()")  # no focus ring on the last button pressed
    page.mouse.move(0, 0)
    settle(page)
    try:
        height = 0
        for _ in range(6):
            wanted = max(VIEWPORT["height"], int(page.evaluate(CONTENT_HEIGHT_JS)))
            if wanted == height:
                break
            height = wanted
            page.set_viewport_size({"width": VIEWPORT["width"], "height": height})
            settle(page)
        path.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(path), full_page=True)
    finally:
        page.set_viewport_size(VIEWPORT)


# -- live-view timing probe ------------------------------------------------------------------------------------

PROBE_JS = """() => {
  const probe = window.__flywheelProbe = {frames: [], click: null, human: null};
  document.addEventListener('click', e => {
    if (probe.click === null && e.target.closest('.st-key-live_take_over')) probe.click = performance.now();
  }, true);
  const header = /^Step \\d+ \\/ \\d+ · controller human/;
  setInterval(() => {
    const img = document.querySelector('[data-testid="stMain"] [data-testid="stImage"] img');
    const last = probe.frames[probe.frames.length - 1];
    if (img && img.complete && img.naturalWidth > 0 && (!last || last[1] !== img.src))
      probe.frames.push([performance.now(), img.src]);
    if (probe.click !== null && probe.human === null &&
        [...document.querySelectorAll('[data-testid="stMarkdownContainer"] p')].some(p => header.test(p.textContent)))
      probe.human = performance.now();
  }, 10);
}"""


def install_probe(page: Page) -> None:
    page.evaluate(PROBE_JS)


def wait_for_frames(page: Page, count: int) -> None:
    page.wait_for_function(f"() => window.__flywheelProbe.frames.length >= {count}", timeout=WAIT_MS)


def frames_per_second(page: Page) -> tuple[float, int]:
    times = page.evaluate("() => window.__flywheelProbe.frames.map(f => f[0])")
    span_s = (times[-1] - times[0]) / 1000
    return (len(times) - 1) / span_s, len(times)


def takeover_ms(page: Page) -> float:
    page.wait_for_function("() => window.__flywheelProbe.human !== null", timeout=WAIT_MS)
    return float(page.evaluate("() => window.__flywheelProbe.human - window.__flywheelProbe.click"))
