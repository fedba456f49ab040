"""Every episode row's file exists, inside the store, with the recorded size and sha256."""

from __future__ import annotations

from sqlalchemy import select

from flywheel.doctor.problems import DoctorContext, Findings
from flywheel.errors import FlywheelError
from flywheel.store.models import Episode

CHECK = "episode-file"


def _fix(episode_id: int, what: str) -> str:
    return f"restore {what} from backup, or drop the episode: `flywheel episodes delete {episode_id}`"


def check(ctx: DoctorContext) -> Findings:
    files = ctx.store.files
    with ctx.store.db.read() as session:
        rows = session.execute(
            select(Episode.id, Episode.file_uri, Episode.sha256, Episode.bytes).order_by(Episode.id)
        ).all()
    findings = Findings(CHECK, checked=len(rows))
    verb = "verifying" if ctx.hash_files else "sizing"
    with ctx.track(f"{verb} {len(rows)} episode files", len(rows)) as advance:
        for episode_id, uri, sha256, size in rows:
            subject = f"episode {episode_id}"
            try:
                path = files.path_for(uri)
            except FlywheelError as exc:  # a uri the store refuses to resolve
                findings.add(subject, f"file {uri} cannot be resolved: {exc}", _fix(episode_id, uri))
                advance(1)
                continue
            try:
                actual = path.stat().st_size
            except FileNotFoundError:
                findings.add(subject, f"file {path} is missing", _fix(episode_id, str(path)))
            except OSError as exc:
                findings.add(subject, f"file {path} cannot be read: {exc.strerror}", _fix(episode_id, str(path)))
            else:
                if actual != size:
                    findings.add(
                        subject,
                        f"file {path} is {actual} bytes, the row records {size} (truncated or altered)",
                        _fix(episode_id, str(path)),
                    )
                elif ctx.hash_files:
                    try:
                        files.verify(uri, sha256, episode_id=episode_id)
                    except (FlywheelError, OSError):
                        findings.add(
                            subject,
                            f"file {path} fails its sha256 check (corrupt or altered)",
                            _fix(episode_id, str(path)),
                        )
            advance(1)
    if not ctx.hash_files:
        findings.notes.append("episode files: sizes checked, sha256 skipped (--quick)")
    return findings
