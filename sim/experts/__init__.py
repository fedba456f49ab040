"""Closed-loop scripted experts (differential IK to waypoints computed from the current object poses)."""

from __future__ import annotations

from sim.experts.base import ClosedLoopExpert, ExpertStatus
from sim.experts.insertion import InsertionExpert, InsertionPlan
from sim.experts.transfer_cube import TransferCubeExpert, TransferCubePlan

__all__ = [
    "ClosedLoopExpert",
    "ExpertStatus",
    "InsertionExpert",
    "InsertionPlan",
    "TransferCubeExpert",
    "TransferCubePlan",
    "make_expert",
]


def make_expert(task: str) -> ClosedLoopExpert:
    """The expert for `task`."""
    from sim.tasks import task_class

    task_class(task)
    experts: dict[str, type[ClosedLoopExpert]] = {
        "transfer_cube": TransferCubeExpert,
        "insertion": InsertionExpert,
    }
    return experts[task]()
