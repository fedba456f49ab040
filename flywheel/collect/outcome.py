"""The result of one collected episode, as it travels from a worker to the store writer."""

from __future__ import annotations

from dataclasses import dataclass

from flywheel.collect.spec import CollectSpec
from flywheel.store import NewEpisode
from flywheel.vocab import ControllerKind, EpisodeFrames, SegmentSpan, Tag


@dataclass(frozen=True)
class EpisodeOutcome:
    seed: int
    frames: EpisodeFrames | None  # None when the very first action was invalid, or stored by the console
    success: bool
    error: str | None = None
    segments: tuple[SegmentSpan, ...] = ()  # the rollout's, stored as they are
    act_latency_ms: tuple[float, ...] = ()
    joint_limit_violations: int = 0
    stored_episode_id: int | None = None  # attended mode: a console operator already stored this episode

    @property
    def interventions(self) -> int:
        """Takeovers: segments under a person or the expert inside a policy episode (as `takeover_count` counts
        them in the store); 0 for demos, and for an episode a console operator stored.
        """
        if self.frames is None or self.frames.tag is not Tag.INTERVENTION:
            return 0
        return sum(1 for s in self.segments if s.controller is not ControllerKind.POLICY)

    def to_new_episode(self, spec: CollectSpec) -> NewEpisode:
        if self.frames is None:
            raise ValueError(f"seed {self.seed}: nothing to store ({self.error})")
        return NewEpisode(
            task=spec.task,
            frames=self.frames,
            env_seed=self.seed,
            success=self.success,
            policy_version_id=None if self.frames.tag is Tag.DEMO else spec.policy_version_id,
            iteration=spec.iteration,
            operator=spec.operator_name if self.frames.tag is not Tag.AUTONOMOUS else None,
            error=self.error,
            source_key=spec.source_key(self.seed),
            segments=self.segments,
        )
