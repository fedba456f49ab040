"""Dashboard queries: plain DataFrames and dataclasses from the store's read sessions (no Streamlit here)."""

from flywheel.dashboards.datamix import data_mix, mix_by_tag
from flywheel.dashboards.facets import EpisodeFacets, episode_facets
from flywheel.dashboards.gates import EvalRunView, champion_numbers, eval_runs, gate_history
from flywheel.dashboards.interventions import interventions_by_iteration, interventions_over_time, policy_episodes
from flywheel.dashboards.jobs import IterationInfo, JobInfo, LockInfo, SchedulerStatus, scheduler_status
from flywheel.dashboards.overview import Overview, overview
from flywheel.dashboards.success import collection_success_by_policy, eval_success_by_policy, success_by_iteration
from flywheel.dashboards.training import TrainingCurves, final_metrics_by_version, training_curves

__all__ = [
    "EpisodeFacets",
    "EvalRunView",
    "IterationInfo",
    "JobInfo",
    "LockInfo",
    "Overview",
    "SchedulerStatus",
    "TrainingCurves",
    "champion_numbers",
    "collection_success_by_policy",
    "data_mix",
    "episode_facets",
    "eval_runs",
    "eval_success_by_policy",
    "final_metrics_by_version",
    "gate_history",
    "interventions_by_iteration",
    "interventions_over_time",
    "mix_by_tag",
    "overview",
    "policy_episodes",
    "scheduler_status",
    "success_by_iteration",
    "training_curves",
]
