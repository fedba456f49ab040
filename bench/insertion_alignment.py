"""Where Insertion episodes stall: the peg's pose relative to the socket, from the stored physics state, in the
episodes a policy solved alone, the episodes whose first takeover began with the peg touching the socket, and the
expert's demos.

    python -m bench.insertion_alignment --home DIR [--out FILE]

Each episode that brought the peg to the socket is read just after the lift (`LIFT_SETTLE_STEPS` after both parts
first left the table), on the approach (the first frame, before any contact, with the peg's centre within
`APPROACH_ALONG_M` of the socket's centre along the socket's axis), at contact (the first frame with the peg touching
the socket) and, for a stall, at the takeover (the frame before the operator took over).
At each it gives the peg centre's offset from the socket's axis, sideways (horizontal) and vertical, in mm, and
the peg's tilt against the socket's axis, sideways (yaw) and vertical (pitch), in degrees: per group the median
and 90th percentile of each magnitude, and the mean vertical offset (its sign says whether the peg comes in low).
It also splits the height: how far each part hangs below its gripper's tool point (the right gripper holds the
peg, the left the socket; tool points from the stored joints by forward kinematics), and the right tool point's
height over the left's; per group their mean and standard deviation, in mm.
Policies that read a top-down camera see sideways errors far better than vertical ones, so the split says whether
a stall is a matter of height. Reads the store (checking every episode file's sha256) and changes nothing.
Writes bench/results/insertion_alignment.json unless `--out` says otherwise.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.common import RESULTS, headless_defaults, store_result_header, write_json

if TYPE_CHECKING:
    from flywheel.store import EpisodeStore

headless_defaults()

APPROACH_ALONG_M = 0.14
"""The approach snapshot: the peg's centre this close to the socket's centre along the socket's axis (the expert
holds it 0.17 m ahead before pushing it in, and it touches the pin at about 0.10 m)."""

LIFTED_STAGE = 2
"""`sim.tasks.Insertion.stages[2]`: both parts lifted."""

SOCKET_STAGE = 3
"""`sim.tasks.Insertion.stages[3]`: the peg touches the socket."""

LIFT_SETTLE_STEPS = 10
"""The lift snapshot: this many steps after both parts first left the table (the grasp has settled)."""

MOMENTS = ("lifted", "approach", "contact", "takeover")

GROUPS = ("solved alone", "stalled at the socket", "demo")


@dataclass(frozen=True)
class Alignment:
    """The peg against the socket's axis: centre offsets (m) and tilts (rad), sideways and vertical."""

    along: float
    sideways: float
    vertical: float
    yaw: float
    pitch: float


@dataclass(frozen=True)
class Heights:
    """Where the height comes from (m): each part's centre below its gripper's tool point, and the right tool
    point over the left."""

    peg_below_grip: float
    socket_below_grip: float
    grips_apart: float


class GripHeights:
    """`Heights` of a stored Insertion state, the tool points by forward kinematics of its joint positions."""

    def __init__(self, peg: slice, socket: slice) -> None:
        from sim.constants import ARM_JOINTS, ARMS, JOINT_NAMES
        from sim.kinematics import ArmKinematics
        from sim.scene import load_model
        from sim.tasks import task_class

        self.kinematics = ArmKinematics(load_model(task_class("insertion").xml_file))
        self.joints = {arm: [JOINT_NAMES.index(f"{arm}_arm_{j}") for j in ARM_JOINTS] for arm in ARMS}
        self.peg, self.socket = peg, socket

    def __call__(self, state: np.ndarray) -> Heights:
        grip = {
            arm: self.kinematics.forward(arm, state[idx].astype(np.float64)).pos[2] for arm, idx in self.joints.items()
        }
        return Heights(
            peg_below_grip=float(grip["right"] - state[self.peg][2]),
            socket_below_grip=float(grip["left"] - state[self.socket][2]),
            grips_apart=float(grip["right"] - grip["left"]),
        )


def peg_alignment(peg_pose: np.ndarray, socket_pose: np.ndarray) -> Alignment:
    """The peg's pose ([x, y, z, qw, qx, qy, qz], world) in the socket's axis frame: x along its bore, a
    horizontal axis across it and the vertical axis perpendicular to both."""
    from sim.experts.insertion import object_axis

    axis = object_axis(socket_pose[3:])
    across = np.cross([0.0, 0.0, 1.0], axis)
    across /= max(float(np.linalg.norm(across)), 1e-9)
    up = np.cross(axis, across)
    offset = peg_pose[:3] - socket_pose[:3]
    peg_axis = object_axis(peg_pose[3:])
    peg_axis = peg_axis if float(peg_axis @ axis) >= 0 else -peg_axis  # the peg's axis has no preferred end
    return Alignment(
        along=float(offset @ axis),
        sideways=float(offset @ across),
        vertical=float(offset @ up),
        yaw=float(np.arcsin(np.clip(peg_axis @ across, -1.0, 1.0))),
        pitch=float(np.arcsin(np.clip(peg_axis @ up, -1.0, 1.0))),
    )


def episode_group(is_demo: bool, success: bool, takeover_starts: Sequence[int], reached: np.ndarray) -> str | None:
    """Which group an episode that reached the socket belongs to (None: none of them)."""
    if is_demo:
        return "demo"
    if not takeover_starts:
        return "solved alone" if success else None
    first = min(takeover_starts)
    return "stalled at the socket" if first > 0 and int(reached[first - 1]) == SOCKET_STAGE else None


def moment_frames(
    states: np.ndarray, reached: np.ndarray, group: str, takeover_starts: Sequence[int], peg: slice, socket: slice
) -> dict[str, int] | None:
    """The frame of each of `MOMENTS` the episode has (the takeover: stalls only), from its states and the highest
    stage reached by each frame; None when it never approached before touching the socket."""
    along = [peg_alignment(s[peg], s[socket]).along for s in states]
    before = [i for i, a in enumerate(along) if abs(a) < APPROACH_ALONG_M and reached[i] < SOCKET_STAGE]
    if not before:
        return None
    lifted = min(int(np.argmax(reached >= LIFTED_STAGE)) + LIFT_SETTLE_STEPS, before[0])
    frames = {"lifted": lifted, "approach": before[0], "contact": int(np.argmax(reached >= SOCKET_STAGE))}
    if group == "stalled at the socket":
        frames["takeover"] = min(takeover_starts) - 1
    return frames


def summarise_heights(rows: list[Heights]) -> dict[str, Any]:
    """Mean and standard deviation (mm) of each `Heights` field."""
    if not rows:
        return {"episodes": 0}
    out: dict[str, Any] = {"episodes": len(rows)}
    for name in Heights.__dataclass_fields__:
        values = np.array([getattr(r, name) for r in rows]) * 1000.0
        out[f"{name}_mm_mean"] = float(values.mean())
        out[f"{name}_mm_sd"] = float(values.std())
    return out


def summarise(rows: list[Alignment]) -> dict[str, Any]:
    """Median and 90th percentile of each magnitude (mm, degrees), and the mean vertical offset (mm)."""
    if not rows:
        return {"episodes": 0}
    out: dict[str, Any] = {"episodes": len(rows)}
    for name, scale, unit in (
        ("sideways", 1000.0, "mm"),
        ("vertical", 1000.0, "mm"),
        ("yaw", 180.0 / np.pi, "deg"),
        ("pitch", 180.0 / np.pi, "deg"),
    ):
        values = np.abs([getattr(r, name) * scale for r in rows])
        out[f"{name}_{unit}_median"] = float(np.median(values))
        out[f"{name}_{unit}_p90"] = float(np.percentile(values, 90))
    out["vertical_mm_mean"] = float(np.mean([r.vertical * 1000.0 for r in rows]))
    return out


def alignment_by_group(store: EpisodeStore) -> dict[str, Any]:
    """Every Insertion episode of the store that reached the socket, grouped and summarised at each of `MOMENTS`."""
    from flywheel.store.episodes import EpisodeFilter
    from flywheel.vocab import ControllerKind, Tag
    from sim.env import object_pose_key, state_layout

    layout = state_layout("insertion")
    peg, socket = layout[object_pose_key("peg")], layout[object_pose_key("socket")]
    moments: dict[str, dict[str, list[Alignment]]] = defaultdict(lambda: defaultdict(list))
    heights: dict[str, dict[str, list[Heights]]] = defaultdict(lambda: defaultdict(list))
    versions: dict[str, set[int]] = defaultdict(set)
    grip_heights = GripHeights(peg, socket)
    for record in store.list_episodes(EpisodeFilter(task="insertion"), with_segments=True):
        frames = store.read_record_frames(record)
        reached = np.maximum.accumulate(np.asarray(frames.reward, dtype=float))
        if reached.max() < SOCKET_STAGE:
            continue
        starts = [s.start for s in record.segments if s.controller != ControllerKind.POLICY.value]
        group = episode_group(record.tag == Tag.DEMO.value, record.success, starts, reached)
        if group is None:
            continue
        states = np.asarray(frames.state)
        found = moment_frames(states, reached, group, starts, peg, socket)
        if found is None:
            continue
        for moment, i in found.items():
            moments[group][moment].append(peg_alignment(states[i][peg], states[i][socket]))
            heights[group][moment].append(grip_heights(states[i]))
        if record.policy_version_id is not None:
            versions[group].add(record.policy_version_id)
    return {
        group: {"policy_versions": sorted(versions[group])}
        | {moment: summarise(moments[group][moment]) for moment in MOMENTS}
        | {"heights": {moment: summarise_heights(heights[group][moment]) for moment in MOMENTS}}
        for group in GROUPS
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True, help="a flywheel home with Insertion episodes")
    parser.add_argument("--out", type=Path, default=RESULTS / "insertion_alignment.json")
    args = parser.parse_args(argv)

    from flywheel.config import Settings
    from flywheel.errors import FlywheelError
    from flywheel.store import EpisodeStore

    if not (args.home / "flywheel.db").is_file():
        sys.exit(f"insertion_alignment: no store in {args.home}")
    try:
        groups = alignment_by_group(EpisodeStore.open(Settings(home=args.home), migrate=False))
    except FlywheelError as exc:
        sys.exit(f"insertion_alignment: {exc}")
    result = store_result_header("insertion_alignment", args.home) | {
        "approach_along_m": APPROACH_ALONG_M,
        "groups": groups,
    }
    write_json(args.out, result)
    for group, row in groups.items():
        for moment in MOMENTS:
            s = row[moment]
            if s["episodes"]:
                print(
                    f"{group}, {moment} ({s['episodes']} episodes): sideways {s['sideways_mm_median']:.1f} mm, "
                    f"vertical {s['vertical_mm_median']:.1f} mm (mean {s['vertical_mm_mean']:+.1f}), "
                    f"yaw {s['yaw_deg_median']:.1f}°, pitch {s['pitch_deg_median']:.1f}° (medians)"
                )
        lifted = row["heights"]["lifted"]
        if lifted["episodes"]:
            print(
                f"{group}, lifted: the peg hangs {lifted['peg_below_grip_mm_mean']:.1f} ± "
                f"{lifted['peg_below_grip_mm_sd']:.1f} mm below the right tool point, the socket "
                f"{lifted['socket_below_grip_mm_mean']:.1f} ± {lifted['socket_below_grip_mm_sd']:.1f} mm below the left"
            )
    return result


if __name__ == "__main__":
    main()
