"""Ray actors (one env + policy copy each) for collection beyond one machine; same outcomes as ProcessPool."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from flywheel.collect.outcome import EpisodeOutcome
from flywheel.collect.pool import CollectionError
from flywheel.collect.spec import CollectSpec


def actor_gpu_share(workers: int, gpus: int) -> float:
    """The GPU share that lets `workers` actors fit on `gpus` GPUs: Ray places a share below one GPU on a single
    GPU, so it must fit a whole number of times into one (rounded down to Ray's 1e-4 resolution)."""
    per_gpu = math.ceil(workers / gpus)
    return 1.0 if per_gpu == 1 else math.floor(10_000 / per_gpu) / 10_000


class RayPool:
    """Runs jobs of seeds on `workers` Ray actors (up to `envs_per_worker` per job, stepped in lockstep); a dead
    actor's job is re-collected on a new actor."""

    def __init__(self, spec: CollectSpec, workers: int, max_restarts: int = 4, address: str | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise CollectionError("--ray needs the ray extra: pip install 'flywheel[ray]'") from None
        self._ray = ray
        if spec.policy_device not in ("cpu", "cuda"):
            raise CollectionError("with --ray, use policy device 'cuda': Ray assigns each actor its GPU")
        started = not ray.is_initialized()
        if started:
            ray.init(
                address=address,
                num_cpus=None if address else workers,
                include_dashboard=False,
                log_to_driver=False,
                ignore_reinit_error=True,
            )
        self.spec = spec
        self.workers = workers
        self.max_restarts = max_restarts
        self.restarts = 0
        self.discarded: list[int] = []
        try:
            gpu_share = self._gpu_share(spec, workers)
        except CollectionError:
            if started:
                ray.shutdown()
            raise
        self._actor_cls = ray.remote(num_cpus=1, num_gpus=gpu_share)(_CollectActor)

    def _gpu_share(self, spec: CollectSpec, workers: int) -> float:
        """The fraction of a GPU each actor asks for: none for CPU policies; with `policy_device` cuda, the actors
        spread over the cluster's GPUs (Ray hides GPUs from actors that ask for none)."""
        if spec.policy_device == "cpu":
            return 0.0
        gpus = int(self._ray.cluster_resources().get("GPU", 0.0))
        if gpus <= 0:
            raise CollectionError("policy device 'cuda' asked for, but the Ray cluster has no GPUs")
        return actor_gpu_share(workers, gpus)

    def run(self, seeds: Sequence[int], on_start: Callable[[int], None] | None = None) -> Iterator[EpisodeOutcome]:
        ray = self._ray
        pending = deque(seeds)
        actors = [self._actor_cls.remote(self.spec) for _ in range(min(self.workers, len(pending)))]
        in_flight: dict[Any, tuple[Any, list[int]]] = {}

        def submit(actor: Any) -> None:
            if pending:
                job = [pending.popleft() for _ in range(self.spec.job_size(len(pending), len(actors)))]
                in_flight[actor.run_many.remote(job)] = (actor, job)
                if on_start is not None:
                    for seed in job:
                        on_start(seed)

        for actor in actors:
            submit(actor)
        try:
            while in_flight:
                ready, _ = ray.wait(list(in_flight), num_returns=1)
                ref = ready[0]
                actor, job = in_flight.pop(ref)
                try:
                    outcomes = ray.get(ref)
                except ray.exceptions.RayActorError:
                    self.discarded.extend(job)
                    pending.extendleft(reversed(job))
                    self.restarts += 1
                    if self.restarts > self.max_restarts:
                        raise CollectionError(f"Ray collection actors died {self.restarts} times; giving up") from None
                    actors.append(self._actor_cls.remote(self.spec))
                    submit(actors[-1])
                    continue
                except ray.exceptions.RayTaskError as exc:
                    raise CollectionError(f"episode with seed(s) {job} crashed in its Ray actor: {exc}") from None
                yield from outcomes
                submit(actor)
        finally:
            for actor in actors:
                ray.kill(actor)


class _CollectActor:
    def __init__(self, spec: CollectSpec) -> None:
        from flywheel.collect.runtime import WorkerRuntime

        self.runtime = WorkerRuntime(spec)

    def run_many(self, seeds: list[int]) -> list[EpisodeOutcome]:
        return list(self.runtime.run_many(seeds))

    def pid(self) -> int:
        import os

        return os.getpid()
