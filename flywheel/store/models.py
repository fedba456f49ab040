"""SQLAlchemy 2 ORM models: the data model of DESIGN.md §3. Alembic owns the schema (see migrations/)."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, overload

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from flywheel.vocab import TAGS, ControllerKind

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class JobState(StrEnum):
    """Where a scheduler job stands: `pending` (to run, or to retry), `running`, `succeeded`, `failed` (its attempts
    are spent)."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class IterationState(StrEnum):
    """Where a loop iteration stands: `running` (its jobs under way or to resume) or `done` (promotion decided)."""

    RUNNING = "running"
    DONE = "done"


REVIEW_STATUSES = ("unreviewed", "accepted", "rejected")
CONTROLLERS = tuple(kind.value for kind in ControllerKind)
POLICY_STATUSES = ("candidate", "champion", "rejected", "retired")
JOB_KINDS = ("collect", "train", "eval", "promote")  # in the order an iteration runs them
JOB_STATES = tuple(state.value for state in JobState)
ITERATION_STATES = tuple(state.value for state in IterationState)


def utcnow() -> datetime:
    return datetime.now(UTC)


@overload
def as_utc(value: datetime) -> datetime: ...
@overload
def as_utc(value: None) -> None: ...
def as_utc(value: datetime | None) -> datetime | None:
    """A stored timestamp as timezone-aware UTC (SQLite hands datetimes back naive; every stored time is UTC)."""
    if value is None:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON, datetime: DateTime(timezone=True)}


class PolicyVersion(Base):
    __tablename__ = "policy_version"
    __table_args__ = (CheckConstraint(_in("status", POLICY_STATUSES), name="status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("policy_version.id", ondelete="SET NULL"))
    task: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(16), default="candidate", index=True)
    checkpoint_uri: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    data_fingerprint: Mapped[dict[str, Any]] = mapped_column(default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    code_version: Mapped[str | None] = mapped_column(String(64))
    iteration: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Episode(Base):
    __tablename__ = "episode"
    __table_args__ = (
        CheckConstraint(_in("tag", TAGS), name="tag"),
        CheckConstraint(_in("review_status", REVIEW_STATUSES), name="review_status"),
        CheckConstraint("length > 0", name="length_positive"),
        Index("ix_episode_task_tag_created", "task", "tag", "created_at"),
        Index("ix_episode_task_created", "task", "created_at"),
        Index("ix_episode_review_created", "review_status", "created_at"),
        Index("ix_episode_policy_created", "policy_version_id", "created_at"),
        Index("ix_episode_created", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task: Mapped[str] = mapped_column(String(64))
    tag: Mapped[str] = mapped_column(String(16))
    policy_version_id: Mapped[int | None] = mapped_column(ForeignKey("policy_version.id", ondelete="RESTRICT"))
    iteration: Mapped[int | None] = mapped_column(Integer, index=True)
    env_seed: Mapped[int] = mapped_column(BigInteger)
    length: Mapped[int] = mapped_column(Integer)
    success: Mapped[bool] = mapped_column(Boolean)
    episode_return: Mapped[float] = mapped_column("return", Float)
    operator: Mapped[str | None] = mapped_column(String(64))
    # An imported episode's operator as its dataset names it: a claim nobody here verified (`operator` is the importer).
    claimed_operator: Mapped[str | None] = mapped_column(String(64))
    review_status: Mapped[str] = mapped_column(String(16), default="unreviewed")
    review_version: Mapped[int] = mapped_column(Integer, default=0)
    file_uri: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    bytes: Mapped[int] = mapped_column(BigInteger)
    cameras: Mapped[list[Any]] = mapped_column(default=list)
    error: Mapped[str | None] = mapped_column(Text)
    source_key: Mapped[str | None] = mapped_column(String(128), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    segments: Mapped[list[Segment]] = relationship(
        back_populates="episode", cascade="all, delete-orphan", passive_deletes=True, order_by="Segment.start"
    )
    labels: Mapped[list[Label]] = relationship(
        back_populates="episode", cascade="all, delete-orphan", passive_deletes=True, order_by="Label.id"
    )


class Segment(Base):
    __tablename__ = "segment"
    __table_args__ = (
        CheckConstraint(_in("controller", CONTROLLERS), name="controller"),
        CheckConstraint('start >= 0 AND "end" > start', name="span"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    episode_id: Mapped[int] = mapped_column(ForeignKey("episode.id", ondelete="CASCADE"), index=True)
    start: Mapped[int] = mapped_column(Integer)
    end: Mapped[int] = mapped_column(Integer)
    controller: Mapped[str] = mapped_column(String(16))
    operator: Mapped[str | None] = mapped_column(String(64))
    claimed_operator: Mapped[str | None] = mapped_column(String(64))  # from an imported dataset, unverified
    trigger: Mapped[str | None] = mapped_column(String(128))

    episode: Mapped[Episode] = relationship(back_populates="segments")


class Label(Base):
    """A review verdict and/or failure-mode label on an episode (optionally one segment). Never edits frames."""

    __tablename__ = "label"
    __table_args__ = (CheckConstraint("verdict IS NULL OR verdict IN ('accepted', 'rejected')", name="verdict"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    episode_id: Mapped[int] = mapped_column(ForeignKey("episode.id", ondelete="CASCADE"), index=True)
    segment_id: Mapped[int | None] = mapped_column(ForeignKey("segment.id", ondelete="CASCADE"))
    author: Mapped[str] = mapped_column(String(64))
    # Who the machine says wrote it (`<os user>@<host>`, plus `console:<session>` in the console); undo matches it.
    recorded_by: Mapped[str | None] = mapped_column(String(160))
    verdict: Mapped[str | None] = mapped_column(String(16))
    failure_mode: Mapped[str | None] = mapped_column(String(64))
    note: Mapped[str | None] = mapped_column(Text)
    previous_status: Mapped[str | None] = mapped_column(String(16))
    undone: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    episode: Mapped[Episode] = relationship(back_populates="labels")


class Alias(Base):
    __tablename__ = "alias"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    policy_version_id: Mapped[int] = mapped_column(ForeignKey("policy_version.id", ondelete="RESTRICT"))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class AliasEvent(Base):
    """Audit trail: every alias move, who or what made it, and why."""

    __tablename__ = "alias_event"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    alias: Mapped[str] = mapped_column(String(32), index=True)
    from_version_id: Mapped[int | None] = mapped_column(ForeignKey("policy_version.id", ondelete="SET NULL"))
    to_version_id: Mapped[int | None] = mapped_column(ForeignKey("policy_version.id", ondelete="SET NULL"))
    actor: Mapped[str] = mapped_column(String(64))
    recorded_by: Mapped[str | None] = mapped_column(String(160))  # the OS user/host (or console session) beside `actor`
    reason: Mapped[str] = mapped_column(Text)
    forced: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class EvalRun(Base):
    __tablename__ = "eval_run"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    policy_version_id: Mapped[int] = mapped_column(ForeignKey("policy_version.id", ondelete="CASCADE"), index=True)
    task: Mapped[str] = mapped_column(String(64))
    seeds: Mapped[list[Any]] = mapped_column(default=list)
    outcomes: Mapped[list[Any]] = mapped_column(default=list)
    episodes: Mapped[int] = mapped_column(Integer)
    successes: Mapped[int] = mapped_column(Integer)
    success_rate: Mapped[float] = mapped_column(Float)
    ci_low: Mapped[float] = mapped_column(Float)
    ci_high: Mapped[float] = mapped_column(Float)
    mean_length: Mapped[float] = mapped_column(Float)
    latency_p50_ms: Mapped[float] = mapped_column(Float)
    latency_p95_ms: Mapped[float] = mapped_column(Float)
    nan_actions: Mapped[int] = mapped_column(Integer, default=0)
    joint_limit_violations: Mapped[int] = mapped_column(Integer, default=0)
    gates: Mapped[list[Any]] = mapped_column(default=list)
    passed: Mapped[bool | None] = mapped_column(Boolean)
    iteration: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # gate: judged by the gates; baseline: a champion measured for a comparison; fresh: re-measured on fresh seeds
    kind: Mapped[str] = mapped_column(String(16), default="gate", server_default="gate")
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=dict)  # throughput, sequential stopping


class EvalEpisode(Base):
    """One eval episode of a policy version on one seed, stored as it completes: an interrupted evaluation
    resumes from these without re-running (or double-counting) a seed."""

    __tablename__ = "eval_episode"
    __table_args__ = (
        UniqueConstraint("policy_version_id", "seed", "max_steps", name="uq_eval_episode_version_seed_steps"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    policy_version_id: Mapped[int] = mapped_column(ForeignKey("policy_version.id", ondelete="CASCADE"), index=True)
    seed: Mapped[int] = mapped_column(BigInteger)
    max_steps: Mapped[int] = mapped_column(Integer)
    success: Mapped[bool] = mapped_column(Boolean)
    steps: Mapped[int] = mapped_column(Integer)
    act_latency_ms: Mapped[list[Any]] = mapped_column(default=list)
    nan_action: Mapped[bool] = mapped_column(Boolean, default=False)
    joint_limit_violations: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Iteration(Base):
    __tablename__ = "iteration"
    __table_args__ = (CheckConstraint(_in("state", ITERATION_STATES), name="state"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[int] = mapped_column(Integer, unique=True)
    task: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), default=IterationState.RUNNING.value)
    summary: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column()

    jobs: Mapped[list[Job]] = relationship(back_populates="iteration", order_by="Job.id")


class Job(Base):
    __tablename__ = "job"
    __table_args__ = (
        CheckConstraint(_in("kind", JOB_KINDS), name="kind"),
        CheckConstraint(_in("state", JOB_STATES), name="state"),
        UniqueConstraint("iteration_id", "kind", name="uq_job_iteration_kind"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    iteration_id: Mapped[int] = mapped_column(ForeignKey("iteration.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), default=JobState.PENDING.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    heartbeat_at: Mapped[datetime | None] = mapped_column()
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    result: Mapped[dict[str, Any]] = mapped_column(default=dict)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()

    iteration: Mapped[Iteration] = relationship(back_populates="jobs")


class JobRetry(Base):
    """Audit trail: an operator reset a failed job's attempts (`flywheel run --retry-failed`): who, why, when,
    and what the job had failed with."""

    __tablename__ = "job_retry"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("job.id", ondelete="CASCADE"), index=True)
    iteration: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    previous_attempts: Mapped[int] = mapped_column(Integer)
    previous_error: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(64))
    recorded_by: Mapped[str | None] = mapped_column(String(160))  # the OS user@host beside the typed `actor`
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SchedulerLock(Base):
    """At most one scheduler per database: the row names the holder."""

    __tablename__ = "scheduler_lock"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    pid: Mapped[int] = mapped_column(Integer)
    host: Mapped[str] = mapped_column(String(128))
    acquired_at: Mapped[datetime] = mapped_column(default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(default=utcnow)


TAKEOVER_STATES = ("pending", "claimed", "completed", "expired", "abandoned")


class TakeoverRequest(Base):
    """An attended-collection worker asking a console operator to take over (flywheel/collect/attended.py).

    Holds what the console needs to rebuild the episode exactly (state mode is deterministic for a seed): the
    env settings, the policy, and the actions executed before the takeover step, plus the state reached there.
    """

    __tablename__ = "takeover_request"
    __table_args__ = (
        CheckConstraint(_in("status", TAKEOVER_STATES), name="status"),
        Index("ix_takeover_request_status_created", "status", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    source_key: Mapped[str] = mapped_column(String(128), index=True)
    task: Mapped[str] = mapped_column(String(64))
    env_seed: Mapped[int] = mapped_column(BigInteger)
    step: Mapped[int] = mapped_column(Integer)
    trigger: Mapped[str | None] = mapped_column(String(128))
    policy_version_id: Mapped[int | None] = mapped_column(ForeignKey("policy_version.id", ondelete="SET NULL"))
    iteration: Mapped[int | None] = mapped_column(Integer)
    env_config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    policy_checkpoint: Mapped[str] = mapped_column(Text)
    policy_sha256: Mapped[str | None] = mapped_column(String(64))
    actions: Mapped[list[Any]] = mapped_column(default=list)
    state: Mapped[list[Any]] = mapped_column(default=list)
    worker: Mapped[str] = mapped_column(String(128))
    deadline_at: Mapped[datetime] = mapped_column()
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    claim_token: Mapped[str | None] = mapped_column(String(64))
    claimed_at: Mapped[datetime | None] = mapped_column()
    heartbeat_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()
    episode_id: Mapped[int | None] = mapped_column(ForeignKey("episode.id", ondelete="SET NULL"))
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
