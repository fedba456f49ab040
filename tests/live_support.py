"""Helpers for the console tests: a tiny real policy for transfer_cube, trained in about a second.

Two real expert episodes (short) and ten BC steps: the policy is bad on purpose (it stalls, so a simulated
operator's no-progress trigger fires early), but it is a real checkpoint that workers and the console load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from flywheel.collect import CollectSpec
from flywheel.presets import train_config
from flywheel.registry import PolicyRecord, PolicyRegistry
from flywheel.store import EpisodeStore
from flywheel.train import run_training
from flywheel.train.data import EpisodeInfo


def train_tiny_policy(
    out_dir: Path, task: str = "transfer_cube", pixels: bool = False, method: str = "bc"
) -> tuple[Path, str]:
    """(checkpoint dir, sha256) of a tiny policy (BC unless `method` says otherwise) trained on two short expert
    episodes of `task` (with `pixels`: on the default 96x128 'top' camera too, through a small CNN)."""
    from sim import make_env, run_episode

    env = make_env(task, obs_mode="pixels" if pixels else "state", max_steps=60)
    episodes = []
    for seed in range(2):
        result = run_episode(env, seed)
        assert result.frames is not None
        episodes.append((EpisodeInfo(f"demo-{seed}", task, "demo", result.success), result.frames))
    env.close()
    vision = {"model": {"encoder": {"vision": "cnn", "cnn_channels": 8}}} if pixels else {}
    cfg = train_config("tiny", {"method": method, "steps": 10, **vision})
    result = run_training(cfg, episodes, out_dir, progress=False)
    return Path(result.checkpoint_dir), result.sha256


def register_policy(store: EpisodeStore, checkpoint: Path, sha256: str, promote: bool = True) -> PolicyRecord:
    """Register the checkpoint as a candidate of transfer_cube (and make it champion)."""
    registry = PolicyRegistry(store.db)
    version = registry.register_candidate(
        task="transfer_cube",
        checkpoint_uri=str(checkpoint),
        sha256=sha256,
        config={"obs_mode": "state"},
        data_fingerprint={},
        metrics={},
    )
    if promote:
        registry.promote(version.id, actor="test", reason="console tests", force=True)
    return registry.get(version.id)


def random_takeover_spec(
    policy: PolicyRecord, iteration: int, max_steps: int, probability: float, min_policy_steps: int, handback: int
) -> CollectSpec:
    """An iteration's collection spec whose simulated operator takes over at random (and hands back after
    `handback` steps), so even a few short episodes carry takeovers.
    """
    return CollectSpec(
        task=policy.task,
        max_steps=max_steps,
        operator_mode="simulated",
        sim_operator={
            "no_progress_steps": None,
            "takeover_probability": probability,
            "min_policy_steps": min_policy_steps,
            "handback_after_steps": handback,
            "handback_on_progress": False,
        },
        policy_version_id=policy.id,
        policy_checkpoint=policy.checkpoint_uri,
        policy_sha256=policy.sha256,
        iteration=iteration,
        source_prefix=f"iteration-{iteration}",
    )


def random_observations(state_dim: int, n: int, seed: int = 0) -> list[dict]:
    """`n` policy observations with standard-normal states (for comparing ways of sampling the same inputs)."""
    rng = np.random.default_rng(seed)
    return [{"state": rng.standard_normal(state_dim).astype(np.float32)} for _ in range(n)]


# -- the live view component in a browser (flywheel/live/stream.py, app/components/live_view.js) ----------------

LIVE_FRAMES_JS = "() => (window.__flywheelLive ? window.__flywheelLive.frames.length : 0)"
LIVE_LAST_JS = "() => { const f = window.__flywheelLive.frames; return f.length ? f[f.length - 1] : null; }"
LIVE_SENT_JS = "() => window.__flywheelLive.sent"


def wait_for_live(page: Any, predicate_js: str, timeout_ms: int = 90_000) -> Any:
    """Wait until `predicate_js` (a JS expression over `last`: [time, t, applied_seq, controller] of the last frame
    the live view drew) holds; returns that frame."""
    handle = page.wait_for_function(
        f"() => {{ const f = (window.__flywheelLive || {{frames: []}}).frames; const last = f[f.length - 1];"
        f" return last && ({predicate_js}) ? last : null; }}",
        timeout=timeout_ms,
        polling=10,
    )
    return handle.json_value()


def acked(page: Any, timeout_ms: int = 90_000) -> int:
    """Wait until the server acknowledged the last input the live view sent; returns the step it applied at."""
    handle = page.wait_for_function(
        "() => { const r = window.__flywheelLive; const seq = r.sent.length ? r.sent[r.sent.length - 1][0] : 0;"
        " const ack = r.acks.find(a => a[0] === seq); return ack ? ack[1] : null; }",
        timeout=timeout_ms,
        polling=10,
    )
    return int(handle.json_value())


def hold_until_steps(page: Any, key: str, steps: int, timeout_ms: int = 90_000) -> int:
    """Hold `key` down until the live view shows `steps` more simulation steps, release it, and wait for the
    release's ack; returns the step the release applied at."""
    start = wait_for_live(page, "true", timeout_ms)[1]
    page.keyboard.down(key)
    try:
        wait_for_live(page, f"last[1] >= {start + steps}", timeout_ms)
    finally:
        page.keyboard.up(key)
    return acked(page, timeout_ms)


AXIS_KEYS = {"right": (("l", "j"), ("i", "k"), ("o", "u")), "left": (("d", "a"), ("w", "s"), ("e", "q"))}
OFFSET_JS = (
    "(() => {{ const o = window.__flywheelLive.header.overlay;"
    " return o.tcp['{arm}'][{axis}] - o.objects[0][{axis}] - {goal}; }})()"
)


def drive_to_object(
    page: Any,
    arm: str,
    goal: tuple[float, float, float],
    tolerance: float = 0.006,
    axes: tuple[int, ...] = (0, 1, 2),
) -> int:
    """Like a person watching the depth readout: per axis (in the order `axes`), hold the key that brings `arm`'s
    TCP to `goal` metres from the task's first object, release it once within `tolerance`; returns the step of the
    last release."""
    step = 0
    for axis in axes:
        plus, minus = AXIS_KEYS[arm][axis]
        offset = OFFSET_JS.format(arm=arm, axis=axis, goal=goal[axis])
        error = float(page.evaluate(f"() => {offset}"))
        if abs(error) <= tolerance:
            continue
        key = minus if error > 0 else plus
        sign = 1 if error > 0 else -1
        page.keyboard.down(key)
        try:  # within tolerance, or just past the goal
            page.wait_for_function(
                f"() => {{ const e = {offset}; return Math.abs(e) <= {tolerance} || e * {sign} < 0; }}",
                timeout=90_000,
                polling=5,
            )
        finally:
            page.keyboard.up(key)
        step = acked(page)
    return step
