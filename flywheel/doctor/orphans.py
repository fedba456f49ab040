"""No episode file (or writer's temp file) without a row; the safe repair removes them.

Finding them is the store's own `gc` (dry run), so what counts as a store file is defined once there.
Files younger than the grace period are left alone: a writer may still be committing their row.
"""

from __future__ import annotations

from datetime import UTC, datetime

from flywheel.doctor.problems import DoctorContext, Findings
from flywheel.errors import StoreError
from flywheel.store.files import TEMP_PREFIX

CHECK = "orphan-file"


def _old_orphans(ctx: DoctorContext) -> tuple[list[str], int, int]:
    """(orphans older than the grace period, orphans still in their grace period, files referenced)."""
    report = ctx.store.gc(dry_run=True)
    old: list[str] = []
    young = 0
    for uri in report.removed:
        try:
            mtime = datetime.fromtimestamp(ctx.store.files.own_path(uri).stat().st_mtime, UTC)
        except FileNotFoundError:
            continue  # removed since the scan
        if ctx.now - mtime < ctx.grace:
            young += 1
        else:
            old.append(uri)
    return old, young, report.kept


def _grace_note(young: int, ctx: DoctorContext) -> str:
    minutes = int(ctx.grace.total_seconds() // 60)
    return f"{young} unreferenced file(s) younger than {minutes} min not judged (a writer may still commit them)"


def check(ctx: DoctorContext) -> Findings:
    try:
        old, young, kept = _old_orphans(ctx)
    except StoreError as exc:  # gc refuses a directory that is not (only) this store's: so does the check
        findings = Findings(CHECK)
        fix = "move the other files out, or `flywheel gc --adopt`"
        findings.add(f"directory {ctx.store.files.root}", str(exc), fix)
        return findings
    findings = Findings(CHECK, checked=kept + len(old) + young)
    for uri in old:
        name = uri.rsplit("/", 1)[-1]
        what = (
            "temp file of a writer that was killed" if name.startswith(TEMP_PREFIX) else "no episode row points to it"
        )
        findings.add(f"file {uri}", what, "`flywheel doctor --repair` removes it", repairable=True)
    if young:
        findings.notes.append(_grace_note(young, ctx))
    return findings


def repair(ctx: DoctorContext) -> list[str]:
    """Remove orphans past their grace period that are still unreferenced on a second look (as `gc` re-checks)."""
    try:
        first, _, _ = _old_orphans(ctx)
        still = set(_old_orphans(ctx)[0])
    except StoreError:
        return []  # not only this store's directory: reported by `check`, never repaired
    removed = [uri for uri in first if uri in still]
    for uri in removed:
        ctx.store.files.delete_own(uri)
    return [f"removed orphan file {uri}" for uri in removed]
