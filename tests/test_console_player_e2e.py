"""The episode player in a real browser (Debian chromium via Playwright) against the real `flywheel console`: a
state-only episode in which the simulated operator took over (real collection with a tiny real policy) is opened
by link on the Episodes page; its cameras are re-rendered from the stored physics state, fetched from the
console's video route and played: the pictures on the canvases change as the steps advance. Its takeover's start
and end are marked on the timeline and their buttons move the player (and its picture) there. The Review page
plays the same video. With FLYWHEEL_SCREENSHOTS_DIR set, the player at the takeover is saved as
`episode_player.png` (the committed one in docs/screenshots comes from that).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from flywheel.config import Settings
from flywheel.store import EpisodeRecord, EpisodeStore
from tests.e2e_support import (
    CHROMIUM,
    CLEARED_ENV,
    WAIT_MS,
    ConsoleProcess,
    chromium_page,
    running_console,
    screenshot,
)
from tests.live_support import random_takeover_spec, register_policy, train_tiny_policy

pytestmark = pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"no Debian chromium at {CHROMIUM}")

PLAYER = "window.__flywheelPlayer.players['{key}']"
# a cheap fingerprint of what the first camera's canvas shows (sampled pixels)
PICTURE_JS = """() => {{
  const c = {player}.video.cameras[0].canvas, d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let h = 0;
  for (let i = 0; i < d.length; i += 97) h = (h * 31 + d[i]) % 1000000007;
  return h;
}}"""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in CLEARED_ENV:
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    return home


@pytest.fixture
def intervention(home: Path, tmp_path: Path) -> EpisodeRecord:
    """A state-only episode of the champion in which the simulated operator took over."""
    from flywheel.collect import collect
    from flywheel.collect.seeds import collection_seeds

    store = EpisodeStore.open(Settings(home=home))
    try:
        policy = register_policy(store, *train_tiny_policy(tmp_path / "policy"))
        spec = random_takeover_spec(policy, 1, max_steps=60, probability=0.1, min_policy_steps=5, handback=15)
        report = collect(store, spec, collection_seeds(1, 2), workers=1, progress=False)
        records = [store.get(i) for i in report.episode_ids]
    finally:
        store.db.dispose()
    found = [r for r in records if r.tag == "intervention"]
    assert found, "the simulated operator should take over in at least one of the episodes"
    return found[0]


@pytest.fixture
def console(home: Path, tmp_path: Path, intervention: EpisodeRecord) -> Iterator[ConsoleProcess]:
    with running_console(home, tmp_path / "console.log") as process:
        yield process


@pytest.fixture
def page(console: ConsoleProcess, tmp_path: Path) -> Iterator[Page]:
    with chromium_page(tmp_path) as page:
        yield page


def open_player(page: Page, url: str, key: str) -> str:
    """Open `url` and wait until the player mounted as `key` has drawn its first frame; its JS expression."""
    page.goto(url)
    player = PLAYER.format(key=key)
    page.wait_for_function(
        f"() => window.__flywheelPlayer && {player} && {player}.drawn.length > 0", timeout=WAIT_MS, polling=50
    )
    return player


def test_play_a_state_only_episode_and_jump_to_its_takeover(
    console: ConsoleProcess, page: Page, intervention: EpisodeRecord
) -> None:
    assert intervention.policy_version_id is not None
    takeover = next(s for s in intervention.segments if s.controller != "policy")
    player = open_player(page, f"{console.url}/episodes?episode={intervention.id}", "episodes_player")
    root = page.locator(".fw-player")
    expect(root.locator(".fw-view")).to_have_count(3)  # top and both wrist cameras side by side
    assert page.evaluate(f"() => {player}.t") == 0
    first = page.evaluate(PICTURE_JS.format(player=player))

    root.locator("button[data-action=play]").click()
    page.wait_for_function(f"() => {player}.drawnT >= 20", timeout=WAIT_MS, polling=20)
    assert page.evaluate(PICTURE_JS.format(player=player)) != first, "playing must change the picture"
    page.wait_for_function(f"() => !{player}.playing", timeout=WAIT_MS, polling=50)  # stops at the end
    drawn = [step for _, step in page.evaluate(f"() => {player}.drawn")]
    assert drawn == sorted(drawn) and drawn[-1] == intervention.length - 1
    assert len(set(drawn)) >= 10, drawn  # it played through, not one jump to the end

    # the takeover's start and end: marked on the timeline, and their buttons move the player there
    takeovers = [s for s in intervention.segments if s.controller != "policy"]
    expect(root.locator(".fw-timeline .fw-mark")).to_have_count(2 * len(takeovers))
    root.locator(f"button.fw-jump-start[data-step='{takeover.start}']").click()
    page.wait_for_function(f"() => {player}.drawnT === {takeover.start}", timeout=WAIT_MS, polling=20)
    assert page.evaluate(f"() => {player}.t") == takeover.start
    expect(root.locator(".fw-readout")).to_contain_text(f"step {takeover.start} / ")
    expect(root.locator(".fw-readout")).to_contain_text(f"controller {takeover.controller}")
    at_start = page.evaluate(PICTURE_JS.format(player=player))
    end = min(takeover.end, intervention.length - 1)
    root.locator(f"button.fw-jump-end[data-step='{end}']").click()
    page.wait_for_function(f"() => {player}.drawnT === {end}", timeout=WAIT_MS, polling=20)
    assert page.evaluate(PICTURE_JS.format(player=player)) != at_start
    root.locator(f"button.fw-jump-start[data-step='{takeover.start}']").click()
    page.wait_for_function(f"() => {player}.drawnT === {takeover.start}", timeout=WAIT_MS, polling=20)
    assert page.evaluate(PICTURE_JS.format(player=player)) == at_start  # the same frame, the same picture
    shots = os.environ.get("FLYWHEEL_SCREENSHOTS_DIR")
    if shots:
        screenshot(page, Path(shots) / "episode_player.png")

    review = open_player(page, f"{console.url}/review?episode={intervention.id}", "review_player")
    page.locator(".fw-player button[data-action=play]").click()
    page.wait_for_function(f"() => {review}.drawnT >= 10", timeout=WAIT_MS, polling=20)
