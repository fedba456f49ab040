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


def make_expert(task: str, align_handed_peg: bool = True) -> ClosedLoopExpert:
    """The expert for `task`; `align_handed_peg` is `InsertionPlan.align_handed_peg` (Insertion only)."""
    from sim.tasks import task_class

    task_class(task)
    if task == "insertion":
        return InsertionExpert(InsertionPlan(align_handed_peg=align_handed_peg))
    experts: dict[str, type[ClosedLoopExpert]] = {"transfer_cube": TransferCubeExpert}
    return experts[task]()
