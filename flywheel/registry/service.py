"""Policy registry: versions with lineage and status, aliases (`champion`, `challenger`) with an audit trail."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from flywheel.errors import FlywheelError
from flywheel.identity import InvalidNameError, check_actor, process_identity
from flywheel.registry.records import AliasMove, PolicyRecord
from flywheel.store.db import Database
from flywheel.store.models import Alias, AliasEvent, EvalRun, PolicyVersion, utcnow

CHAMPION = "champion"
CHALLENGER = "challenger"
ALIASES = (CHAMPION, CHALLENGER)
ROLLBACK_PREFIX = "rollback: "  # how a rollback's alias move is recorded (its audited reason follows)
CORRUPT_REJECTION = "checkpoint no longer matches its registered sha256"  # a rejected_reason's opening words


def rejected_as_corrupt(status: str, metrics: dict[str, Any] | None) -> bool:
    """A version rejected because its checkpoint's files changed after registration (a known, recorded state)."""
    return status == "rejected" and str((metrics or {}).get("rejected_reason", "")).startswith(CORRUPT_REJECTION)


class RegistryError(FlywheelError):
    """A registry operation was refused."""


def code_version() -> str | None:
    """The git commit of the running code, when it runs from a checkout (an installed wheel: None, not the commit
    of whatever repository its venv sits in)."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


class PolicyRegistry:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- versions -------------------------------------------------------------------------------------

    def register_candidate(
        self,
        *,
        task: str,
        checkpoint_uri: str,
        sha256: str,
        config: dict[str, Any],
        data_fingerprint: dict[str, Any],
        metrics: dict[str, Any],
        parent_id: int | None = None,
        iteration: int | None = None,
    ) -> PolicyRecord:
        with self.db.write() as session:
            row = PolicyVersion(
                task=task,
                status="candidate",
                checkpoint_uri=checkpoint_uri,
                sha256=sha256,
                config=config,
                data_fingerprint=data_fingerprint,
                metrics=metrics,
                parent_id=parent_id,
                iteration=iteration,
                code_version=code_version(),
            )
            session.add(row)
            session.flush()
            return PolicyRecord.of(row)

    def get(self, version_id: int) -> PolicyRecord:
        with self.db.read() as session:
            return PolicyRecord.of(self._row(session, version_id))

    def list_versions(self, task: str | None = None) -> list[PolicyRecord]:
        query = select(PolicyVersion).order_by(PolicyVersion.id)
        if task is not None:
            query = query.where(PolicyVersion.task == task)
        with self.db.read() as session:
            return [PolicyRecord.of(r) for r in session.scalars(query)]

    def resolve(self, ref: str | int) -> PolicyRecord:
        """A version id, or an alias name (`champion`, `challenger`)."""
        if isinstance(ref, int) or str(ref).isdigit():
            return self.get(int(ref))
        if ref not in ALIASES:
            raise RegistryError(f"unknown policy reference {ref!r}: use a version id or one of {', '.join(ALIASES)}")
        version_id = self.alias(ref)
        if version_id is None:
            raise RegistryError(f"no policy is {ref} yet; train one (`flywheel train`) or run `flywheel run`")
        return self.get(version_id)

    def alias(self, name: str) -> int | None:
        with self.db.read() as session:
            row = session.get(Alias, name)
            return None if row is None else row.policy_version_id

    def history(self, alias: str | None = None) -> list[AliasMove]:
        query = select(AliasEvent).order_by(AliasEvent.id)
        if alias is not None:
            query = query.where(AliasEvent.alias == alias)
        with self.db.read() as session:
            return [AliasMove.of(r) for r in session.scalars(query)]

    def set_metrics(self, version_id: int, metrics: dict[str, Any]) -> None:
        with self.db.write() as session:
            row = self._row(session, version_id)
            row.metrics = {**(row.metrics or {}), **metrics}

    # -- status and aliases ---------------------------------------------------------------------------

    def promote(
        self, version_id: int, *, actor: str, reason: str, force: bool = False, recorded_by: str | None = None
    ) -> PolicyRecord:
        """Make a version champion. Without `force`, its latest eval run must have passed every gate.

        `actor` is the typed name (a real one: not blank, not `unknown`); `recorded_by` who the machine says acted
        (default: this process's `<os user>@<host>`)."""
        actor, reason = _audited(actor, reason, "a promotion")
        with self.db.write() as session:
            row = self._row(session, version_id)
            if not force:
                latest = session.scalars(
                    select(EvalRun)
                    .where(EvalRun.policy_version_id == version_id, EvalRun.kind == "gate")
                    .order_by(EvalRun.id.desc())
                ).first()
                if latest is None or not latest.passed:
                    verdict = "no eval run" if latest is None else f"eval run {latest.id} failed its gates"
                    raise RegistryError(
                        f"policy {version_id} cannot be promoted: {verdict}; run `flywheel eval --policy {version_id}`"
                        " or use --force with a reason"
                    )
            previous = self._move(
                session, CHAMPION, row.id, actor=actor, reason=reason, forced=force, recorded_by=recorded_by
            )
            if previous is not None and previous != row.id:
                self._row(session, previous).status = "retired"
            row.status = "champion"
            return PolicyRecord.of(row)

    def reject(self, version_id: int, *, reason: str) -> PolicyRecord:
        with self.db.write() as session:
            row = self._row(session, version_id)
            if row.status == "champion":
                raise RegistryError(f"policy {version_id} is the champion; roll back or promote another first")
            row.status = "rejected"
            metrics = dict(row.metrics or {})
            metrics["rejected_reason"] = reason
            row.metrics = metrics
            return PolicyRecord.of(row)

    def set_challenger(self, version_id: int, *, actor: str, reason: str, recorded_by: str | None = None) -> None:
        actor, reason = _audited(actor, reason, "a challenger change")
        with self.db.write() as session:
            self._row(session, version_id)
            self._move(
                session, CHALLENGER, version_id, actor=actor, reason=reason, forced=False, recorded_by=recorded_by
            )

    def rollback(self, *, actor: str, reason: str, recorded_by: str | None = None) -> PolicyRecord:
        """Move `champion` back to the version it pointed to before its last move."""
        actor, reason = _audited(actor, reason, "a rollback")
        with self.db.write() as session:
            moves = session.scalars(
                select(AliasEvent).where(AliasEvent.alias == CHAMPION).order_by(AliasEvent.id.desc())
            ).all()
            current = session.get(Alias, CHAMPION)
            if current is None or not moves or moves[0].from_version_id is None:
                raise RegistryError("nothing to roll back to: the champion has no earlier version")
            target = self._row(session, moves[0].from_version_id)
            self._row(session, current.policy_version_id).status = "retired"
            self._move(
                session,
                CHAMPION,
                target.id,
                actor=actor,
                reason=f"{ROLLBACK_PREFIX}{reason}",
                forced=True,
                recorded_by=recorded_by,
            )
            target.status = "champion"
            return PolicyRecord.of(target)

    # -- internals ------------------------------------------------------------------------------------

    @staticmethod
    def _row(session: Session, version_id: int) -> PolicyVersion:
        row = session.get(PolicyVersion, version_id)
        if row is None:
            raise RegistryError(f"policy version {version_id} does not exist; see `flywheel policies list`")
        return row

    @staticmethod
    def _move(
        session: Session,
        alias: str,
        version_id: int,
        *,
        actor: str,
        reason: str,
        forced: bool,
        recorded_by: str | None,
    ) -> int | None:
        row = session.get(Alias, alias)
        previous = None if row is None else row.policy_version_id
        if row is None:
            session.add(Alias(name=alias, policy_version_id=version_id))
        else:
            row.policy_version_id = version_id
            row.updated_at = utcnow()
        session.add(
            AliasEvent(
                alias=alias,
                from_version_id=previous,
                to_version_id=version_id,
                actor=actor,
                recorded_by=(recorded_by or process_identity())[:160],
                reason=reason,
                forced=forced,
            )
        )
        return previous


def _audited(actor: str, reason: str, what: str) -> tuple[str, str]:
    """A real actor name and a non-blank reason, or a RegistryError saying which is missing."""
    try:
        name = check_actor(actor)
    except InvalidNameError as exc:
        raise RegistryError(f"{what} is audited: {exc}") from None
    why = (reason or "").strip()
    if not why:
        raise RegistryError(f"{what} needs a reason: say why (it is recorded in the audit trail)")
    return name, why
