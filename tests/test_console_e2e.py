"""The operator console end to end in a real browser (Debian chromium driven by Playwright).

A real store filled by the real loop (`FlywheelLoop`, the code behind `flywheel run`: expert demos, a bootstrap
champion, one iteration of collection with the simulated operator, a candidate that the gates judge), served by
the real `flywheel console` process. In the browser an operator names herself, starts a rollout of the champion,
takes over, jogs (buttons and a keyboard shortcut), hands back and saves; finds the episode as `intervention` in
Episodes; labels and accepts it in Review; and sees the Dashboards' "Reviewed episodes" count go up. The store is
checked at the end through its own API. One full-page screenshot per page goes to FLYWHEEL_SCREENSHOTS_DIR (the
committed ones in docs/screenshots/ come from `FLYWHEEL_SCREENSHOTS_DIR=docs/screenshots pytest <this file>`).
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from rich.console import Console

from flywheel.config import Settings
from flywheel.live import LiveConfig, RolloutSpec
from flywheel.registry import CHAMPION, PolicyRegistry
from flywheel.review import ReviewService
from flywheel.scheduler import FlywheelLoop, PhaseContext
from flywheel.scheduler.config import FlywheelConfig
from flywheel.store import EpisodeFilter, EpisodeStore
from tests.e2e_support import (
    CHROMIUM,
    CLEARED_ENV,
    WAIT_MS,
    ConsoleProcess,
    button,
    choose,
    chromium_page,
    combobox,
    go_to,
    install_probe,
    keyed,
    markdown_line,
    metric,
    running_console,
    screenshot,
    send_clear_cache,
    settle,
    takeover_ms,
)
from tests.live_support import LIVE_FRAMES_JS

pytestmark = pytest.mark.skipif(
    not CHROMIUM.is_file(), reason=f"no Debian chromium at {CHROMIUM} (apt-get install chromium)"
)

OPERATOR = "alice"
SEED = 7
NOTE = "hovered over the cube without closing the gripper"
# The loop at toy size (state observations, short episodes, tiny models): about 20 s on 2 CPU cores.
LOOP_CONFIG = {
    "task": "transfer_cube",
    "obs_mode": "state",
    "demos": 2,
    "bootstrap_steps": 20,
    "episodes_per_iteration": 2,
    "workers": 1,
    "max_steps": 60,
    "operator": {"no_progress_steps": 10, "min_policy_steps": 5, "handback_after_steps": 15},
    "train": {
        "method": "recap",
        "steps": 20,
        "critic_steps": 10,
        "batch_size": 16,
        "warmup_steps": 2,
        "log_every": 2,
        "checkpoint_every": 10,
        "cpu_threads": 1,
        "wandb": False,
        "model": {
            "encoder": {"hidden_dim": 32},
            "expert": {"chunk": 8, "dim": 32, "layers": 1, "heads": 2},
            "critic": {"hidden_dim": 32},
            "inference": {"num_steps": 2, "execute_steps": 8},
        },
    },
    "eval": {"episodes": 2, "workers": 1, "max_steps": 60, "gates": {"success_floor": 0.0}},
}


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A flywheel home after one real iteration of the loop."""
    for name in CLEARED_ENV:
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    settings = Settings(home=home)
    store = EpisodeStore.open(settings)
    try:
        ctx = PhaseContext(store, settings, FlywheelConfig.model_validate(LOOP_CONFIG), progress=False)
        FlywheelLoop(ctx, Console(file=io.StringIO())).run(1)
    finally:
        store.db.dispose()
    return home


@pytest.fixture
def store(home: Path) -> Iterator[EpisodeStore]:
    opened = EpisodeStore.open(Settings(home=home))
    yield opened
    opened.db.dispose()


@pytest.fixture
def console(home: Path, tmp_path: Path) -> Iterator[ConsoleProcess]:
    with running_console(home, tmp_path / "console.log") as process:
        yield process


@pytest.fixture
def browser_page(console: ConsoleProcess, tmp_path: Path) -> Iterator[Page]:
    """Headless Debian chromium; the last thing it showed is kept as `last_page.png` for a failed run."""
    with chromium_page(tmp_path) as page:
        yield page


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    return Path(os.environ.get("FLYWHEEL_SCREENSHOTS_DIR") or tmp_path / "screenshots")


def _sign_in(page: Page, url: str) -> None:
    """Open the console and enter the operator's name in the sidebar."""
    page.goto(url)
    expect(button(page, "live_start")).to_be_visible()
    settle(page)  # type once the first run is over, or that run's end resets the field
    name = page.get_by_role("textbox", name="Operator name")
    name.fill(OPERATOR)
    name.press("Enter")
    expect(page.get_by_test_id("stSidebar")).not_to_contain_text("Enter your name")


def test_take_over_save_label_and_see_the_dashboard_change(
    console: ConsoleProcess, browser_page: Page, store: EpisodeStore, shots: Path
) -> None:
    page = browser_page
    live = LiveConfig.from_env()  # what the console's sessions use (it inherits this environment)
    jog, grip, max_steps = live.jog_sim_steps, live.gripper_sim_steps, RolloutSpec().max_steps
    champion = PolicyRegistry(store.db).alias(CHAMPION)
    assert champion is not None, "the loop's bootstrap should have promoted a champion"

    _sign_in(page, console.url)

    go_to(page, "Dashboards", "dashboards")
    reviewed = store.count() - store.count(EpisodeFilter(review_status="unreviewed"))
    expect(metric(page, "Reviewed episodes")).to_have_text(str(reviewed))

    # Teleop / Live: start the champion, watch, take over, jog, hand back, save.
    go_to(page, "Teleop / Live")
    expect(combobox(page, "live_policy")).to_have_value(f"champion (v{champion})")
    seed = keyed(page, "live_seed").locator("input")
    seed.fill(str(SEED))
    seed.press("Enter")
    expect(seed).to_have_value(str(SEED))
    install_probe(page)
    button(page, "live_start").click()
    header = markdown_line(page, r"^Step \d+ / \d+ · controller")
    expect(header).to_contain_text("controller policy")
    expect(button(page, "live_jog_left_z_plus")).to_be_disabled()  # nobody may jog while the policy drives
    page.wait_for_function(f"() => ({LIVE_FRAMES_JS})() >= 8", timeout=WAIT_MS)  # the live stream's frames
    times = page.evaluate("() => window.__flywheelLive.frames.map(f => f[0])")
    fps, frames = (len(times) - 1) / ((times[-1] - times[0]) / 1000), len(times)
    button(page, "live_take_over").click()
    expect(header).to_contain_text(f"controller human · operator {OPERATOR}")
    took_over_ms = takeover_ms(page)
    send_clear_cache(console.url)  # another client clears Streamlit's caches: this operator's session goes on
    step = int(re.match(r"Step (\d+)", header.inner_text())[1])  # type: ignore[index]
    assert 0 < step < max_steps
    button(page, "live_jog_left_z_plus").click()
    expect(header).to_contain_text(f"Step {step + jog} / {max_steps}")
    button(page, "live_jog_right_y_minus").click()
    expect(header).to_contain_text(f"Step {step + 2 * jog} / {max_steps}")
    page.keyboard.press("x")  # keyboard shortcut: close the left gripper
    under_human = 2 * jog + grip
    expect(header).to_contain_text(f"Step {step + under_human} / {max_steps} · controller human")
    expect(page.get_by_text("Keys — take over T")).to_be_visible()
    screenshot(page, shots / "teleop_live.png")
    button(page, "live_hand_back").click()
    expect(header).to_contain_text("controller policy")
    button(page, "live_finish").click()
    saved = markdown_line(page, r"^Saved episode \d+ as intervention")
    expect(saved).to_be_visible()
    episode_id = int(re.search(r"Saved episode (\d+)", saved.inner_text())[1])  # type: ignore[index]
    expect(button(page, "live_start")).to_be_visible()  # back to the start form

    # Episodes: the new episode is an intervention.
    go_to(page, "Episodes", "episodes")
    choose(page, "ep_tag", "intervention")
    interventions = store.count(EpisodeFilter(tag="intervention"))
    expect(page.get_by_text(f"{interventions} of {interventions} matching episodes")).to_be_visible()
    expect(combobox(page, "ep_selected")).to_have_value(re.compile(f"^{episode_id} · intervention · transfer_cube"))
    expect(page.get_by_role("heading", name=f"Episode {episode_id}")).to_be_visible()
    expect(page.get_by_text("Overlay the policy's proposal")).to_be_visible()  # the last element
    screenshot(page, shots / "episodes.png")

    # Review & label: label the human segment, then accept the episode.
    go_to(page, "Review & label", "review")
    choose(page, "review_pick", f"{episode_id} · intervention")
    expect(page.get_by_role("heading", name=f"Episode {episode_id}")).to_be_visible()
    choose(page, "review_segment", f"human by {OPERATOR}")
    choose(page, "review_failure_mode", "stuck")
    keyed(page, "review_note").locator("textarea").fill(NOTE)
    page.get_by_role("button", name="Save label").click()
    expect(markdown_line(page, f"^Labelled episode {episode_id}: stuck")).to_be_visible()
    expect(page.get_by_text("Overlay the policy's proposal")).to_be_visible()
    screenshot(page, shots / "review.png")
    button(page, "review_accept").click()
    expect(markdown_line(page, f"^Episode {episode_id} accepted by {OPERATOR}")).to_be_visible()

    # Dashboards: one more reviewed episode.
    go_to(page, "Dashboards", "dashboards")
    expect(metric(page, "Reviewed episodes")).to_have_text(str(reviewed + 1))
    expect(page.get_by_role("heading", name="Training curves")).to_be_visible()
    screenshot(page, shots / "dashboards.png")

    go_to(page, "Policies", "policies")
    expect(page.get_by_test_id("stGraphVizChart")).to_be_visible()
    expect(page.get_by_test_id("stMain")).to_contain_text(f"v{champion} · champion")
    expect(page.get_by_role("heading", name="Alias history (audit)")).to_be_visible()
    screenshot(page, shots / "policies.png")

    go_to(page, "Jobs", "jobs")
    expect(metric(page, "Iteration")).to_have_text("1")
    expect(page.get_by_text("No scheduler is running on this database")).to_be_visible()
    expect(page.get_by_text("Refreshes every 3 s.")).to_be_visible()
    screenshot(page, shots / "jobs.png")

    # The store agrees with what the pages showed.
    record = store.get(episode_id)
    assert (record.tag, record.operator, record.env_seed, record.policy_version_id, record.review_status) == (
        "intervention",
        OPERATOR,
        SEED,
        champion,
        "accepted",
    )
    human = [s for s in record.segments if s.controller == "human"]
    assert [(s.start, s.end, s.operator, s.trigger) for s in human] == [(step, step + under_human, OPERATOR, "console")]
    labels = [
        (lab.author, lab.segment_id, lab.failure_mode, lab.note, lab.verdict, lab.undone)
        for lab in ReviewService(store).labels(episode_id)
    ]
    assert labels == [
        (OPERATOR, human[0].id, "stuck", NOTE, None, False),
        (OPERATOR, None, None, None, "accepted", False),
    ]
    pages = ("teleop_live", "episodes", "review", "dashboards", "policies", "jobs")
    assert {f"{name}.png" for name in pages} <= {shot.name for shot in shots.glob("*.png")}
    print(
        f"live view: {fps:.1f} frames/s ({frames} frames) · take over → frame under human control: "
        f"{took_over_ms:.0f} ms (in the browser)"
    )


def test_console_shutdown_mid_takeover_saves_the_open_session(
    console: ConsoleProcess, browser_page: Page, store: EpisodeStore
) -> None:
    """SIGTERM to `flywheel console` while an operator drives: the episode is stored up to that step, nothing lost."""
    page = browser_page
    before = {e.id for e in store.list_episodes()}
    _sign_in(page, console.url)
    go_to(page, "Teleop / Live")
    install_probe(page)
    button(page, "live_start").click()
    header = markdown_line(page, r"^Step \d+ / \d+ · controller")
    expect(header).to_contain_text("controller policy")
    page.wait_for_function(f"() => ({LIVE_FRAMES_JS})() >= 4", timeout=WAIT_MS)
    button(page, "live_take_over").click()
    expect(header).to_contain_text(f"controller human · operator {OPERATOR}")
    step = int(re.match(r"Step (\d+)", header.inner_text())[1])  # type: ignore[index]
    button(page, "live_jog_left_z_plus").click()
    expect(header).to_contain_text(f"Step {step + LiveConfig.from_env().jog_sim_steps} / ")

    console.stop()  # SIGTERM, as a service manager or Ctrl-C would

    new = [e for e in store.list_episodes() if e.id not in before]
    assert len(new) == 1, f"the open session was not saved at shutdown: {console.output()}"
    record = store.get(new[0].id)
    assert record.tag == "intervention" and record.operator == OPERATOR and not record.success
    assert record.error is not None and "the console shut down" in record.error
    assert [s.controller for s in record.segments][-1] == "human"
