"""MuJoCo ALOHA simulation: envs on gym-aloha's assets, closed-loop experts, teleop, simulated operator, rollouts."""

from __future__ import annotations

from sim.controllers import (
    Controller,
    ExpertController,
    PolicyController,
    PolicyLike,
    RandomWalkPolicy,
    ScriptedReplay,
)
from sim.env import AlohaSimEnv, EnvConfig, make_env, state_layout
from sim.errors import InvalidActionError, SimError, UnknownTaskError
from sim.experts import make_expert
from sim.operator import SimOperatorConfig, SimulatedOperator
from sim.rollout import EpisodeResult, EpisodeRunner, run_episode
from sim.tasks import TASKS
from sim.teleop import TeleopController

__all__ = [
    "TASKS",
    "AlohaSimEnv",
    "Controller",
    "EnvConfig",
    "EpisodeResult",
    "EpisodeRunner",
    "ExpertController",
    "InvalidActionError",
    "PolicyController",
    "PolicyLike",
    "RandomWalkPolicy",
    "ScriptedReplay",
    "SimError",
    "SimOperatorConfig",
    "SimulatedOperator",
    "TeleopController",
    "UnknownTaskError",
    "make_env",
    "make_expert",
    "run_episode",
    "state_layout",
]
