"""Collect episodes into the store: dispatch seeds to workers, write each outcome through the store API."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from flywheel.collect.outcome import EpisodeOutcome
from flywheel.collect.pool import ProcessPool
from flywheel.collect.spec import CollectSpec
from flywheel.progress import episode_progress
from flywheel.store import EpisodeStore


@dataclass
class CollectReport:
    episode_ids: list[int] = field(default_factory=list)
    skipped_existing: int = 0
    successes: int = 0
    interventions: int = 0
    errors: int = 0
    discarded_seeds: list[int] = field(default_factory=list)
    empty_seeds: list[int] = field(default_factory=list)
    counts_by_tag: dict[str, int] = field(default_factory=dict)

    @property
    def collected(self) -> int:
        return len(self.episode_ids)


def collect(
    store: EpisodeStore,
    spec: CollectSpec,
    seeds: Sequence[int],
    workers: int = 1,
    use_ray: bool = False,
    progress: bool = True,
    on_episode: Callable[[EpisodeOutcome, int], None] | None = None,
) -> CollectReport:
    """Run one episode per seed and store it. Seeds already stored under this spec's prefix are skipped,
    so a re-run after a crash neither loses nor duplicates episodes."""
    report = CollectReport()
    todo = [s for s in seeds if store.find_by_source_key(spec.source_key(s)) is None]
    report.skipped_existing = len(seeds) - len(todo)
    if not todo:
        return report
    pool = _make_pool(spec, workers, use_ray)
    with episode_progress(progress) as bar:
        task = bar.add_task(f"{spec.task} ({_label(spec)})", total=len(todo), successes=0, interventions=0)
        for outcome in pool.run(todo):
            if outcome.frames is None and outcome.stored_episode_id is None:  # failed on its first action
                report.errors += 1
                report.empty_seeds.append(outcome.seed)
                bar.update(task, advance=1)
                continue
            if outcome.stored_episode_id is not None:  # attended: the console stored it under our source key
                record = store.get(outcome.stored_episode_id, with_segments=False)
            else:
                record = store.add(outcome.to_new_episode(spec))
            report.episode_ids.append(record.id)
            report.successes += int(outcome.success)
            report.interventions += outcome.interventions
            report.errors += int(outcome.error is not None)
            report.counts_by_tag[record.tag] = report.counts_by_tag.get(record.tag, 0) + 1
            bar.update(task, advance=1, successes=report.successes, interventions=report.interventions)
            if on_episode is not None:
                on_episode(outcome, record.id)
    report.discarded_seeds = list(pool.discarded)
    return report


def _make_pool(spec: CollectSpec, workers: int, use_ray: bool) -> ProcessPool:
    if use_ray:
        from flywheel.collect.ray_pool import RayPool

        return RayPool(spec, workers)  # type: ignore[return-value]
    return ProcessPool(spec, workers)


def _label(spec: CollectSpec) -> str:
    if spec.operator_mode == "expert":
        return "expert demos"
    return f"policy {spec.policy_version_id}, operator {spec.operator_mode}"
