"""The state/action shapes each simulated task records, taken from `sim` (the single source of truth)."""

from __future__ import annotations

from dataclasses import dataclass

from flywheel.interop.lerobot_schema import InteropError


@dataclass(frozen=True)
class TaskShapes:
    task: str
    action_dim: int
    state_dim: int
    state_names: tuple[str, ...]
    action_names: tuple[str, ...]

    def check(self, state_dim: int, action_dim: int, source: str) -> None:
        """Refuse data whose state/action sizes are not this task's, naming what was expected."""
        problems = []
        if action_dim != self.action_dim:
            problems.append(f"action has {action_dim} dims, {self.task} needs {self.action_dim} (14 joint targets)")
        if state_dim != self.state_dim:
            problems.append(
                f"observation.state has {state_dim} dims, {self.task} records {self.state_dim} "
                f"({describe_layout(self.task)})"
            )
        if problems:
            raise InteropError(f"{source} does not match task {self.task}: " + "; ".join(problems))


def known_tasks() -> tuple[str, ...]:
    from sim.tasks import TASKS

    return tuple(sorted(TASKS))


def task_shapes(task: str) -> TaskShapes:
    """Shapes of `task` (UnknownTaskError, with the list of tasks, for an unknown name)."""
    from sim.constants import ACTION_DIM, JOINT_NAMES
    from sim.env import POSE_COMPONENTS, posed_object_name, state_layout

    layout = state_layout(task)
    names: list[str] = []
    for part, span in layout.items():
        width = span.stop - span.start
        if part == "qpos":
            names += [f"{j}.pos" for j in JOINT_NAMES]
        elif part == "qvel":
            names += [f"{j}.vel" for j in JOINT_NAMES]
        elif (obj := posed_object_name(part)) is not None and width == len(POSE_COMPONENTS):
            names += [f"{obj}.{c}" for c in POSE_COMPONENTS]
        else:
            names += [f"{part}.{i}" for i in range(width)]
    state_dim = max(s.stop for s in layout.values())
    if len(names) != state_dim:
        names = [f"state.{i}" for i in range(state_dim)]
    return TaskShapes(task, ACTION_DIM, state_dim, tuple(names), tuple(JOINT_NAMES))


def describe_layout(task: str) -> str:
    from sim.env import state_layout

    return " + ".join(f"{part} {s.stop - s.start}" for part, s in state_layout(task).items())
