"""Every registered policy version's checkpoint matches its registered sha256 (manifest and every file)."""

from __future__ import annotations

from pathlib import Path

from flywheel.doctor.problems import DoctorContext, Findings
from flywheel.policy.checkpoint import CheckpointError, checkpoint_sha256, verify_checkpoint
from flywheel.registry import CHAMPION, PolicyRecord, PolicyRegistry
from flywheel.registry.service import rejected_as_corrupt

CHECK = "checkpoint"


def checkpoint_dir(record: PolicyRecord) -> Path:
    """Where a version's checkpoint lives (the registry stores the directory as given at registration)."""
    return Path(record.checkpoint_uri)


def _fix(record: PolicyRecord, champion: int | None, directory: Path) -> str:
    restore = f"restore {directory} from backup"
    if record.id == champion:
        return f"{restore}, or move the champion back: `flywheel policies rollback --reason '...'`"
    if record.status == "candidate":
        return f"{restore}; until then the candidate can be neither evaluated nor served"
    return f"{restore} (needed only to serve or roll back to this {record.status} version)"


def check(ctx: DoctorContext) -> Findings:
    registry = PolicyRegistry(ctx.store.db)
    versions = registry.list_versions()
    champion = registry.alias(CHAMPION)
    findings = Findings(CHECK, checked=len(versions))
    with ctx.track(f"verifying {len(versions)} checkpoints", len(versions)) as advance:
        for record in versions:
            directory = checkpoint_dir(record)
            if rejected_as_corrupt(record.status, record.metrics):
                findings.notes.append(f"policy version {record.id}: rejected as corrupt, checkpoint not checked")
                advance(1)
                continue
            try:
                if ctx.hash_files:
                    verify_checkpoint(directory, record.sha256)
                elif checkpoint_sha256(directory) != record.sha256:
                    raise CheckpointError(f"checkpoint {directory}: manifest sha256 differs from the registered one")
            except (CheckpointError, OSError, ValueError, KeyError) as exc:
                detail = str(exc) if isinstance(exc, CheckpointError) else f"checkpoint {directory} unreadable: {exc}"
                findings.add(f"policy version {record.id} ({record.status})", detail, _fix(record, champion, directory))
            advance(1)
    if not ctx.hash_files:
        findings.notes.append("checkpoints: manifests checked, file sha256 skipped (--quick)")
    return findings
