"""`flywheel doctor`: run every check, optionally the safe repairs, then check again."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.progress import Progress
from sqlalchemy.engine import make_url

from flywheel.config import Settings
from flywheel.doctor import aliases, checkpoints, episode_files, jobs, orphans, schema
from flywheel.doctor.problems import DoctorContext, Findings, Problem
from flywheel.errors import StoreError
from flywheel.store import EpisodeStore
from flywheel.store.db import is_sqlite
from flywheel.store.models import utcnow

Check = Callable[[DoctorContext], Findings]
Repair = Callable[[DoctorContext], list[str]]

CHECKS: tuple[Check, ...] = (
    episode_files.check,
    orphans.check,
    checkpoints.check,
    aliases.check,
    jobs.check,
    jobs.check_failed,
)
"""Checks that read the tables; they run only once the schema check passes."""

REPAIRS: tuple[Repair, ...] = (orphans.repair, jobs.repair)
"""The safe repairs: nothing they remove or reset is needed by anyone (see each module)."""

RECHECKS: tuple[Check, ...] = (orphans.check, jobs.check, jobs.check_failed)
"""What the repairs can change (unreferenced files, job rows: handing back a job on its last attempt fails it),
so after repairing only these checks run again."""


@dataclass(frozen=True)
class DoctorReport:
    problems: tuple[Problem, ...]
    repaired: tuple[str, ...]
    checked: dict[str, int]
    notes: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "problems": [p.as_dict() for p in self.problems],
            "repaired": list(self.repaired),
            "checked": dict(self.checked),
            "notes": list(self.notes),
        }


def open_store(settings: Settings) -> EpisodeStore:
    """Open the store as it is: no migration, and no database created where there is none."""
    url = settings.database_url
    if is_sqlite(url):
        database = make_url(url).database
        if database and database != ":memory:" and not Path(database).is_file():
            raise StoreError(f"no flywheel database at {database}; check --home / FLYWHEEL_HOME (or FLYWHEEL_DB_URL)")
    return EpisodeStore.open(settings, migrate=False)


def _run_checks(ctx: DoctorContext) -> list[Findings]:
    first = schema.check(ctx)
    if first.problems:
        first.notes.append("other checks skipped until the schema is at head")
        return [first]
    return [first, *(check(ctx) for check in CHECKS)]


def _report(findings: Sequence[Findings], repaired: Sequence[str]) -> DoctorReport:
    return DoctorReport(
        problems=tuple(p for f in findings for p in f.problems),
        repaired=tuple(repaired),
        checked={f.check: f.checked for f in findings},
        notes=tuple(n for f in findings for n in f.notes),
    )


def run_doctor(
    store: EpisodeStore,
    settings: Settings,
    *,
    repair: bool = False,
    hash_files: bool = True,
    progress: Progress | None = None,
) -> DoctorReport:
    """Check every invariant; with `repair`, apply the safe repairs when anything repairable was found and
    check their part again (the report then lists what remains)."""
    ctx = DoctorContext(store=store, settings=settings, now=utcnow(), hash_files=hash_files, progress=progress)
    findings = _run_checks(ctx)
    if not repair or not any(p.repairable for f in findings for p in f.problems):
        return _report(findings, ())
    repaired = [line for fix in REPAIRS for line in fix(ctx)]
    again = DoctorContext(store=store, settings=settings, now=utcnow(), hash_files=hash_files, progress=progress)
    by_name = {f.check: f for f in (check(again) for check in RECHECKS)}
    return _report([by_name.get(f.check, f) for f in findings], repaired)
