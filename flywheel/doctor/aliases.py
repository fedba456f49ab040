"""Aliases point at existing versions, and `champion` status and the champion alias agree.

The registry moves both together (`promote` sets the target's status to champion and retires the previous
one; `rollback` likewise), so exactly the champion alias's target has status `champion`.
"""

from __future__ import annotations

from sqlalchemy import select

from flywheel.doctor.problems import DoctorContext, Findings
from flywheel.registry import CHAMPION
from flywheel.store.models import Alias, PolicyVersion

CHECK = "alias"


def _dangling_fix(name: str) -> str:
    if name == CHAMPION:
        return (
            "point it at an existing version: `flywheel policies rollback --reason '...'` or "
            "`flywheel policies promote ID --force --reason '...'` (ids: `flywheel policies list`)"
        )
    return f"point it at an existing version (`PolicyRegistry.set_challenger`; no command moves {name})"


def check(ctx: DoctorContext) -> Findings:
    with ctx.store.db.read() as session:
        aliases = session.execute(select(Alias.name, Alias.policy_version_id).order_by(Alias.name)).all()
        statuses = dict(session.execute(select(PolicyVersion.id, PolicyVersion.status)).all())
    findings = Findings(CHECK, checked=len(aliases))
    target = dict(aliases)
    for name, version_id in aliases:
        if version_id not in statuses:
            findings.add(
                f"alias {name}", f"points at policy version {version_id}, which does not exist", _dangling_fix(name)
            )
        elif name == CHAMPION and statuses[version_id] != "champion":
            findings.add(
                f"alias {name}",
                f"points at policy version {version_id}, whose status is {statuses[version_id]}",
                f"`flywheel policies promote {version_id} --force --reason 'restore champion status'`",
            )
    champion = target.get(CHAMPION)
    alias_target = "nothing" if champion is None else f"version {champion}"
    for version_id, status in sorted(statuses.items()):
        if status == "champion" and version_id != champion:
            findings.add(
                f"policy version {version_id}",
                f"has status champion but the champion alias points at {alias_target}",
                f"if it should serve: `flywheel policies promote {version_id} --force --reason '...'`; otherwise it "
                "must be retired (no command does that yet)",
            )
    return findings
