"""Driving a live session from a real browser (Debian chromium via Playwright) against the real `flywheel console`:
the live view streams two cameras over the console's WebSocket; the operator takes over with a key, holds keys to
bring the right gripper onto the cube (reading the live view's gripper-to-cube readout), closes it, hands back with
a key, and saves. The store then holds the intervention with the right segments, and the human segment really
moved the gripper to the cube.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from playwright.sync_api import Page, expect

from flywheel.config import Settings
from flywheel.live.config import LiveConfig
from flywheel.store import EpisodeStore
from tests.e2e_support import (
    CHROMIUM,
    CLEARED_ENV,
    WAIT_MS,
    ConsoleProcess,
    button,
    chromium_page,
    go_to,
    keyed,
    markdown_line,
    running_console,
    settle,
)
from tests.live_support import (
    LIVE_FRAMES_JS,
    drive_to_object,
    register_policy,
    train_tiny_policy,
    wait_for_live,
)

pytestmark = pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"no Debian chromium at {CHROMIUM}")

OPERATOR = "alice"
SEED = 5


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in CLEARED_ENV:
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    store = EpisodeStore.open(Settings(home=home))
    try:
        register_policy(store, *train_tiny_policy(tmp_path / "policy"))
    finally:
        store.db.dispose()
    return home


@pytest.fixture
def console(home: Path, tmp_path: Path) -> Iterator[ConsoleProcess]:
    with running_console(home, tmp_path / "console.log") as process:
        yield process


@pytest.fixture
def page(console: ConsoleProcess, tmp_path: Path) -> Iterator[Page]:
    with chromium_page(tmp_path) as page:
        yield page


def start_live(page: Page, url: str, seed: int) -> None:
    """Sign in by name, start a rollout of the champion with `seed`, and wait for the streamed frames."""
    page.goto(url)
    expect(button(page, "live_start")).to_be_visible()
    settle(page)
    name = page.get_by_role("textbox", name="Operator name")
    name.fill(OPERATOR)
    name.press("Enter")
    expect(page.get_by_test_id("stSidebar")).not_to_contain_text("Enter your name")
    go_to(page, "Teleop / Live")
    box = keyed(page, "live_seed").locator("input")
    box.fill(str(seed))
    box.press("Enter")
    expect(box).to_have_value(str(seed))
    button(page, "live_start").click()
    page.wait_for_function(f"() => ({LIVE_FRAMES_JS})() >= 1", timeout=WAIT_MS)
    page.evaluate("() => document.activeElement?.blur()")  # keys go to the page, not the seed field


def _tcp_to_box(task: str, state: np.ndarray) -> float:
    """Distance (m) from the right gripper's TCP to the cube in a stored state vector."""
    from sim import make_env, state_layout
    from sim.kinematics import ArmKinematics

    env = make_env(task)
    kin = ArmKinematics(env.model)
    layout = state_layout(task)
    tcp = kin.forward("right", state[layout["qpos"]][7:13]).pos
    box = state[layout["box_pose"]][:3]
    env.close()
    return float(np.linalg.norm(tcp - box))


# Out of the default run until it never flakes: in about one run in three a finger came down on the cube's top
# instead of beside it, so the held key never reached its goal (90 s timeout). Opening the gripper and lifting it
# clear first made 12 of 13 runs pass on a loaded machine (the one failure was a 90 s timeout, cause not seen).
# Run it with `pytest -m slow tests/test_console_drive_e2e.py`.
@pytest.mark.slow
def test_drive_the_gripper_to_the_cube_with_held_keys(console: ConsoleProcess, page: Page, home: Path) -> None:
    start_live(page, console.url, SEED)
    page.keyboard.press("t")  # take over
    took = wait_for_live(page, "last[3] === 'human'")
    # like a person reading the live view's depth line: open the right gripper, lift it clear, bring it over the
    # cube, then down to it (fingers the policy left half-closed, or a sideways sweep at cube height, land on the
    # cube's top instead of around it)
    page.keyboard.press("n")
    wait_for_live(page, f"last[1] >= {took[1] + LiveConfig().gripper_sim_steps}")
    drive_to_object(page, "right", (0.0, 0.0, 0.06), axes=(2, 0, 1))
    released = drive_to_object(page, "right", (0.0, 0.0, 0.01))
    page.wait_for_timeout(300)
    assert wait_for_live(page, "true")[1] == released, "released keys must stop the simulation (step-wait)"
    page.keyboard.press("m")  # close the right gripper
    closed = wait_for_live(page, f"last[1] >= {released + LiveConfig().gripper_sim_steps}")
    page.keyboard.press("h")  # hand back
    back = wait_for_live(page, "last[3] === 'policy'")
    wait_for_live(page, f"last[1] >= {back[1] + 3}")
    refused = page.evaluate("() => window.__flywheelLive.refused")
    assert refused == [], refused
    button(page, "live_finish").click()
    saved = markdown_line(page, r"^Saved episode \d+ as intervention")
    expect(saved).to_be_visible()
    episode_id = int(re.search(r"Saved episode (\d+)", saved.inner_text())[1])  # type: ignore[index]

    store = EpisodeStore.open(Settings(home=home))
    try:
        record = store.get(episode_id)
        frames = store.read_record_frames(record)
    finally:
        store.db.dispose()
    assert (record.tag, record.operator, record.env_seed) == ("intervention", OPERATOR, SEED)
    spans = [(s.controller, s.operator, s.trigger) for s in record.segments]
    assert spans == [
        ("policy", None, "start"),
        ("human", OPERATOR, "console"),
        ("policy", None, "console_hand_back"),
    ]
    human = record.segments[1]
    assert human.start <= took[1] and human.end >= closed[1] - 1
    before, after = (
        _tcp_to_box(record.task, frames.state[human.start]),
        _tcp_to_box(record.task, frames.state[human.end]),
    )
    assert after < 0.03 and before - after > 0.03, (before, after)
