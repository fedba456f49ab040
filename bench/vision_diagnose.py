"""Where a pixels policy fails: does its encoder see the objects, and does the policy act on what it sees?

    python -m bench.vision_diagnose --policy CHECKPOINT_DIR --home DIR --task transfer_cube --name NAME \
        [--episodes 30] [--reach-steps 150]

Two measurements, one row appended to bench/results/vision_diagnose.json:

- `probe`: a ridge regression from the policy's CNN features (its spatial-softmax keypoints) to each object's
  (x, y), fitted on the frames of the first 80% of the demos in DIR and scored on the rest: the median error in cm
  on every frame and on first frames (where the policy must decide where to reach), beside the error of
  predicting the training mean. Small errors mean the encoder sees the object.
- `reach`: closed-loop rollouts on validation seeds (those of `bench.vision_encoders`). For each arm and the object it
  must grasp, the gripper's (x, y) at its closest approach is regressed on the object's initial (x, y): a slope
  near 1 means the arm goes where the object is, near 0 that it ignores it. The task's expert on the same seeds is
  the reference, measured in the same run. The gripper's point is the mean of its finger geoms' frames, so the
  closest-approach distance has a constant offset: compare it with the expert's, not with zero.

A policy whose probe error is small but whose reach slope is far below the expert's sees the object and does not
use it (for BC with joint velocities as input, the copycat shortcut: the next joint target follows from the
current joint state alone).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import RESULTS, append_row, headless_defaults
from flywheel.vocab import DEFAULT_CAMERA

REACHES: dict[str, tuple[tuple[str, str], ...]] = {
    "transfer_cube": (("right", "box"),),
    "insertion": (("right", "peg"), ("left", "socket")),
}
"""(arm, object) pairs: which gripper must reach which object first."""

HOLDOUT_SHARE = 0.2

headless_defaults()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", type=Path, required=True, help="a pixels policy's checkpoint directory")
    parser.add_argument("--home", type=Path, required=True, help="a flywheel home holding the task's pixels demos")
    parser.add_argument("--task", default="transfer_cube", choices=sorted(REACHES))
    parser.add_argument("--name", required=True, help="the row's name in the results")
    parser.add_argument("--episodes", type=int, default=30, help="closed-loop validation episodes")
    parser.add_argument("--reach-steps", type=int, default=150, help="steps of each closed-loop episode")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.episodes < 3 or args.reach_steps < 1:
        parser.error("--episodes must be at least 3 and --reach-steps at least 1")

    import torch

    from bench.vision_encoders import VALIDATION_OFFSET
    from flywheel.collect.seeds import eval_seeds
    from flywheel.policy.loading import load_policy

    torch.set_num_threads(1)
    loaded = load_policy(args.policy)
    if loaded.policy.encoder.cnn is None:
        parser.error(f"{args.policy} has no CNN encoder (vision: {loaded.model_config.encoder.vision})")
    load_start = os.getloadavg()[0]
    probe = probe_objects(loaded, args.home, args.task)
    seeds = eval_seeds(args.episodes, VALIDATION_OFFSET)
    reach = {
        "policy": reach_slopes(args.task, seeds, args.reach_steps, loaded),
        "expert": reach_slopes(args.task, seeds, args.reach_steps, None),
    }
    row = {
        "name": args.name,
        "task": args.task,
        "policy": str(args.policy),
        "inputs": loaded.model_config.inputs.model_dump(mode="json"),
        "probe": probe,
        "reach": reach,
        "episodes": len(seeds),
        "load_average_start": load_start,
        "load_average_end": os.getloadavg()[0],
        "cpus": os.cpu_count(),
    }
    append_row(args.out / "vision_diagnose.json", row)
    for obj, p in probe.items():
        print(
            f"{args.name}: {obj} located to {p['median_cm_first_frames']:.1f} cm on first frames "
            f"(training mean: {p['mean_baseline_cm_first_frames']:.1f} cm)"
        )
    for who, pairs in reach.items():
        for pair, r in pairs.items():
            print(f"{args.name}: {who} {pair}: reach slope x {r['slope_x']:.2f}, y {r['slope_y']:.2f}")


def _features(cnn: Any, images: np.ndarray) -> np.ndarray:
    import torch

    out = []
    with torch.no_grad():
        for start in range(0, len(images), 256):
            x = torch.from_numpy(np.ascontiguousarray(images[start : start + 256])).permute(0, 3, 1, 2)
            out.append(cnn(x).flatten(1).float().numpy())
    return np.concatenate(out)


def _ridge(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, lam: float = 1e-3) -> np.ndarray:
    mean, scale = train_x.mean(0), train_x.std(0) + 1e-6
    a = np.c_[(train_x - mean) / scale, np.ones(len(train_x))]
    b = np.c_[(test_x - mean) / scale, np.ones(len(test_x))]
    weights = np.linalg.solve(a.T @ a + lam * len(a) * np.eye(a.shape[1]), a.T @ train_y)
    return b @ weights


def probe_objects(loaded: Any, home: Path, task: str) -> dict[str, dict[str, float]]:
    """Per object, the held-out median (x, y) error in cm of a linear probe on the policy's CNN features."""
    from flywheel.config import Settings
    from flywheel.store import EpisodeStore
    from sim.env import object_pose_key, state_layout

    store = EpisodeStore.open(Settings(home=home))
    demos = [e for e in store.list_episodes() if e.tag == "demo" and e.task == task]
    camera = loaded.spec.cameras[0]
    if len(demos) < 5:
        raise SystemExit(f"{home} holds {len(demos)} {task} demos; the probe needs at least 5")
    layout = state_layout(task)
    features, states, episode, first = [], [], [], []
    for k, record in enumerate(demos):
        if camera not in record.cameras:
            raise SystemExit(f"demo episode {record.id} lacks camera {camera!r} (it has {record.cameras})")
        frames = store.read_record_frames(record)
        features.append(_features(loaded.policy.encoder.cnn, frames.images[camera]))
        states.append(frames.state)
        episode.append(np.full(len(frames.state), k))
        first.append(np.arange(len(frames.state)) == 0)
    x, s, ep, is_first = (np.concatenate(v) for v in (features, states, episode, first))
    test = ep >= round(len(demos) * (1 - HOLDOUT_SHARE))
    out = {}
    for name in (o.name for o in _task_objects(task)):
        y = s[:, layout[object_pose_key(name)]][:, :2]
        err = np.linalg.norm(_ridge(x[~test], y[~test], x[test]) - y[test], axis=1) * 100
        base = np.linalg.norm(y[~test].mean(0) - y[test], axis=1) * 100
        first_test = is_first[test]
        out[name] = {
            "median_cm": float(np.median(err)),
            "median_cm_first_frames": float(np.median(err[first_test])),
            "mean_baseline_cm_first_frames": float(np.median(base[first_test])),
            "test_episodes": len(np.unique(ep[test])),
        }
    return out


def _task_objects(task: str) -> tuple[Any, ...]:
    from sim.tasks import task_class

    return task_class(task).objects


def reach_slopes(task: str, seeds: list[int], steps: int, loaded: Any | None) -> dict[str, dict[str, float]]:
    """Per (arm, object): slopes of the gripper's (x, y) at closest approach on the object's initial (x, y),
    and the median closest distance in cm. `loaded` None runs the task's expert."""
    from flywheel.policy.runner import PolicyRunner
    from sim import ExpertController, make_env

    cameras = tuple(loaded.spec.cameras) if loaded is not None else ()
    env = make_env(task, obs_mode="pixels" if cameras else "state", cameras=cameras or (DEFAULT_CAMERA,))
    runner = PolicyRunner(loaded) if loaded is not None else None
    expert = ExpertController(task) if loaded is None else None
    names = [o.name for o in _task_objects(task)]
    records: dict[tuple[str, str], list[tuple[float, ...]]] = {pair: [] for pair in REACHES[task]}
    try:
        for seed in seeds:
            obs, _ = env.reset(seed=seed)
            if runner is not None:
                runner.reset()
            if expert is not None:
                expert.reset(env)
            adr = {n: env.task.object_qpos_adr[names.index(n)] for n in names}
            start = {n: env.data.qpos[adr[n] : adr[n] + 2].copy() for n in names}
            best = {pair: (np.inf, np.zeros(3)) for pair in records}
            for _ in range(steps):
                action = runner.act(obs) if runner is not None else expert.act(obs, env)  # type: ignore[union-attr]
                obs, _, terminated, truncated, _ = env.step(action)
                for arm, obj in records:
                    grip = env.data.geom_xpos[list(env.task.fingers[arm])].mean(0)
                    dist = float(np.linalg.norm(grip - env.data.qpos[adr[obj] : adr[obj] + 3]))
                    if dist < best[(arm, obj)][0]:
                        best[(arm, obj)] = (dist, grip.copy())
                if terminated or truncated:
                    break
            for pair, (dist, grip) in best.items():
                records[pair].append((*start[pair[1]], grip[0], grip[1], dist))
    finally:
        env.close()
    out = {}
    for (arm, obj), rows in records.items():
        r = np.array(rows)
        out[f"{arm}->{obj}"] = {
            "slope_x": float(np.polyfit(r[:, 0], r[:, 2], 1)[0]),
            "slope_y": float(np.polyfit(r[:, 1], r[:, 3], 1)[0]),
            "closest_median_cm": float(np.median(r[:, 4]) * 100),
        }
    return out


if __name__ == "__main__":
    main()
