"""Fork a store: a new home holding this one as it stood when one loop iteration finished.

For ablations from a shared start: fork after the bootstrap (iteration 0) and run each arm's loop with its own
config in its own fork. The source is only read (one read transaction, so a loop may keep running on it).

What "as it stood" means, table by table: iterations up to N and their jobs; every other row created up to the
moment iteration N finished, among them policy versions and episodes of iterations up to N (or of none), their
segments, labels, evaluations, alias moves and takeover requests. The aliases point where the last kept alias
move put them, and a version's status is recomputed from that: the champion, `retired` for earlier champions,
and otherwise the status it has now, except that a version promoted only later is `rejected` if its last kept
gate evaluation failed and `candidate` otherwise. An episode reviewed after the fork point gets back the review
status it had then (from the first later label's record of it); an undo made later stays. Ids are kept, so
`v3` names the same policy in both homes. Times are stored in UTC.

Episode files are hard-linked where the filesystem allows (they are immutable), copied otherwise; the kept
versions' checkpoint folders are copied and their paths rewritten. The fork is built in a hidden folder beside
the destination and renamed into place, so it appears whole or not at all. The home's other files (settings,
console accounts) are not copied.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, select

from flywheel.config import Settings
from flywheel.errors import FlywheelError
from flywheel.fsutil import fsync_path, fsync_tree
from flywheel.ownership import checkpoints_marker
from flywheel.redact import database_identity
from flywheel.registry.service import CHAMPION
from flywheel.store.db import Database, is_sqlite
from flywheel.store.files import EpisodeFiles
from flywheel.store.migrate import current_revision, ensure_schema, head_revision
from flywheel.store.models import Base, IterationState

Row = dict[str, Any]
Progress = Callable[[str], None]


class ForkError(FlywheelError):
    """The fork cannot be made as asked; nothing was written."""


@dataclass(frozen=True)
class ForkReport:
    destination: Path
    iteration: int
    cutoff: datetime
    rows: dict[str, int] = field(default_factory=dict)
    linked_files: int = 0
    copied_files: int = 0
    checkpoints: int = 0
    champion: int | None = None


def _utc(value: Any) -> Any:
    """Datetimes as aware UTC: SQLite returns naive ones (stored in UTC), PostgreSQL aware ones in the session's
    zone, and SQLite would store an aware one's wall clock without converting it."""
    if not isinstance(value, datetime):
        return value
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _until(rows: list[Row], cutoff: datetime, column: str = "created_at") -> list[Row]:
    return [r for r in rows if r[column] is not None and r[column] <= cutoff]


Snapshot = dict[str, list[Row]]
"""Every source row by table, each table in primary-key order (parents before the children that name them, and
every later filter keeps that order), times in UTC."""


def _read_tables(conn: Connection) -> Snapshot:
    return {
        table.name: [
            {k: _utc(v) for k, v in r._mapping.items()}
            for r in conn.execute(select(table).order_by(*table.primary_key.columns))
        ]
        for table in Base.metadata.sorted_tables
    }


def _fork_iteration(snapshot: Snapshot, iteration: int | None) -> Row:
    done = [r for r in snapshot["iteration"] if r["state"] == IterationState.DONE.value and r["finished_at"]]
    if not done:
        raise ForkError("this store has no finished loop iteration to fork at; run `flywheel run` first")
    if iteration is None:
        return max(done, key=lambda r: r["number"])
    for row in snapshot["iteration"]:
        if row["number"] == iteration:
            if row in done:
                return row
            raise ForkError(
                f"iteration {iteration} has not finished (its promotion is not decided): fork at an earlier one, "
                "or let it finish"
            )
    numbers = ", ".join(str(r["number"]) for r in sorted(done, key=lambda r: r["number"]))
    raise ForkError(f"this store has no iteration {iteration}; finished iterations: {numbers}")


def _select_rows(snapshot: Snapshot, number: int, cutoff: datetime) -> dict[str, list[Row]]:
    """The rows of the fork, table by table (statuses and aliases not yet recomputed)."""
    in_time = {
        name: _until(rows, cutoff) for name, rows in snapshot.items() if "created_at" in Base.metadata.tables[name].c
    }

    def up_to_iteration(row: Row) -> bool:
        return row["iteration"] is None or row["iteration"] <= number

    rows: dict[str, list[Row]] = {}
    rows["iteration"] = [r for r in snapshot["iteration"] if r["number"] <= number]
    iteration_ids = {r["id"] for r in rows["iteration"]}
    rows["job"] = [r for r in snapshot["job"] if r["iteration_id"] in iteration_ids]
    job_ids = {r["id"] for r in rows["job"]}
    rows["job_retry"] = [r for r in in_time["job_retry"] if r["job_id"] in job_ids]
    rows["policy_version"] = [r for r in in_time["policy_version"] if up_to_iteration(r)]
    versions = {r["id"] for r in rows["policy_version"]}
    for row in rows["policy_version"]:
        if row["parent_id"] not in versions:
            row["parent_id"] = None
    rows["episode"] = [
        r
        for r in in_time["episode"]
        if up_to_iteration(r) and (r["policy_version_id"] is None or r["policy_version_id"] in versions)
    ]
    episodes = {r["id"] for r in rows["episode"]}
    rows["segment"] = [r for r in snapshot["segment"] if r["episode_id"] in episodes]
    segments = {r["id"] for r in rows["segment"]}
    rows["label"] = [
        r for r in in_time["label"] if r["episode_id"] in episodes and r["segment_id"] in (segments | {None})
    ]
    _restore_review_status(rows["episode"], [r for r in snapshot["label"] if r["created_at"] > cutoff])
    rows["eval_run"] = [r for r in in_time["eval_run"] if r["policy_version_id"] in versions]
    rows["eval_episode"] = [r for r in in_time["eval_episode"] if r["policy_version_id"] in versions]
    rows["alias_event"] = in_time["alias_event"]
    for row in rows["alias_event"]:
        for column in ("from_version_id", "to_version_id"):
            if row[column] not in versions:
                row[column] = None
    rows["takeover_request"] = in_time["takeover_request"]
    for row in rows["takeover_request"]:
        if row["episode_id"] not in episodes:
            row["episode_id"] = None
        if row["policy_version_id"] not in versions:
            row["policy_version_id"] = None
    rows["alias"] = []
    rows["scheduler_lock"] = []
    missing = set(snapshot) - set(rows)
    if missing:  # a table added to the schema without a rule here: refuse rather than drop its rows silently
        raise ForkError(f"the fork has no rule for table(s) {', '.join(sorted(missing))}")
    return rows


def _restore_review_status(episodes: list[Row], later_labels: list[Row]) -> None:
    """An episode's review status before the first label written after the cutoff (every label records it)."""
    first_later: dict[int, Row] = {}
    for label in later_labels:
        if label["previous_status"] is not None:
            first_later.setdefault(label["episode_id"], label)
    for episode in episodes:
        if episode["id"] in first_later:
            episode["review_status"] = first_later[episode["id"]]["previous_status"]


def _recompute_aliases_and_statuses(rows: dict[str, list[Row]]) -> int | None:
    """Aliases from the last kept move of each; version statuses as of the cutoff. Returns the champion's id.

    A version rejected by hand after the cutoff stays rejected (its row does not say when)."""
    targets: dict[str, Row] = {}
    champions: set[int] = set()
    for event in rows["alias_event"]:
        targets[event["alias"]] = event
        if event["alias"] == CHAMPION and event["to_version_id"] is not None:
            champions.add(event["to_version_id"])
    rows["alias"] = [
        {"name": name, "policy_version_id": e["to_version_id"], "updated_at": e["created_at"]}
        for name, e in sorted(targets.items())
        if e["to_version_id"] is not None
    ]
    champion = next((a["policy_version_id"] for a in rows["alias"] if a["name"] == CHAMPION), None)
    last_gate: dict[int, Row] = {}
    for run in rows["eval_run"]:
        if run["kind"] == "gate":
            last_gate[run["policy_version_id"]] = run
    for version in rows["policy_version"]:
        if version["id"] == champion:
            version["status"] = "champion"
        elif version["id"] in champions:
            version["status"] = "retired"
        elif version["status"] in ("champion", "retired"):
            gate = last_gate.get(version["id"])
            version["status"] = "rejected" if gate is not None and gate["passed"] is False else "candidate"
    return champion


def _inside(path: Path, root: Path) -> Path | None:
    """`path` relative to `root` (as written, or with symlinks resolved), or None when it lies elsewhere."""
    for candidate in (Path(os.path.normpath(path)), path.resolve()):
        try:
            return candidate.relative_to(root)
        except ValueError:
            continue
    return None


def _place_checkpoints(rows: dict[str, list[Row]], source_root: Path, build_root: Path, final_root: Path) -> int:
    """Copy each kept version's checkpoint folder that lives in the source home (contents, not links); rewrite
    its path, and the same path where a kept takeover request names it."""
    copied = 0
    moved: dict[str, str] = {}
    for version in rows["policy_version"]:
        path = Path(version["checkpoint_uri"])
        relative = _inside(path, source_root)
        if relative is None:
            continue  # registered from elsewhere: the fork points at the same place
        if version["checkpoint_uri"] in moved:  # registered twice: one copy serves both
            version["checkpoint_uri"] = moved[version["checkpoint_uri"]]
            continue
        if not path.is_dir():
            raise ForkError(f"policy v{version['id']}'s checkpoint {path} is missing; run `flywheel doctor`")
        shutil.copytree(path, build_root / relative, symlinks=False)
        old_uri, version["checkpoint_uri"] = version["checkpoint_uri"], str(final_root / relative)
        moved[old_uri] = version["checkpoint_uri"]
        copied += 1
    for request in rows["takeover_request"]:
        request["policy_checkpoint"] = moved.get(request["policy_checkpoint"], request["policy_checkpoint"])
    return copied


def _place_episode_files(rows: dict[str, list[Row]], source: EpisodeFiles, build: EpisodeFiles) -> tuple[int, int]:
    linked = copied = 0
    for episode in rows["episode"]:
        src = source.path_for(episode["file_uri"], episode_id=episode["id"])
        if not src.is_file():
            raise ForkError(f"episode {episode['id']}'s file {src} is missing; run `flywheel doctor`")
        dst = build.root / episode["file_uri"]
        dst.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            os.link(src, dst)
            linked += 1
        except OSError:
            shutil.copy2(src, dst)
            copied += 1
    return linked, copied


def _insert(db: Database, rows: dict[str, list[Row]]) -> None:
    def write(session: Any) -> None:
        for table in Base.metadata.sorted_tables:
            batch = rows[table.name]
            if batch:
                session.execute(table.insert(), batch)

    db.transaction(write)


def _read_snapshot(db: Database) -> Snapshot:
    """All tables in one transaction: SQLite's snapshot, or PostgreSQL's REPEATABLE READ (one snapshot for every
    statement, where the default READ COMMITTED takes one per statement)."""
    with db.engine.connect() as conn:
        if not is_sqlite(db.url):
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            return _read_tables(conn)


def fork_store(
    source: Settings, destination: Path, iteration: int | None = None, progress: Progress | None = None
) -> ForkReport:
    """Write a new home at `destination` holding `source` as it stood when `iteration` (default: the last
    finished one) finished. Refuses an existing destination; leaves nothing behind on failure."""
    say = progress or (lambda _msg: None)
    final = destination.expanduser().resolve()
    if final.exists():
        raise ForkError(f"{final} already exists: fork into a new folder")
    if not final.parent.is_dir():
        raise ForkError(f"{final.parent} is not a folder: create it first")
    source_db = Database(source.database_url, source.sqlite_busy_timeout_ms, source.db_retry_seconds)
    try:
        source_db.ping()
        revision, head = current_revision(source_db), head_revision()
        if revision != head:
            raise ForkError(
                f"the source database is at schema {revision or 'empty'}, not {head}: run `flywheel db upgrade` first"
            )
        snapshot = source_db.retrying(lambda: _read_snapshot(source_db))
    finally:
        source_db.dispose()
    fork_point = _fork_iteration(snapshot, iteration)
    number, cutoff = fork_point["number"], fork_point["finished_at"]
    rows = _select_rows(snapshot, number, cutoff)
    champion = _recompute_aliases_and_statuses(rows)
    say(f"forking at iteration {number} (finished {cutoff:%Y-%m-%d %H:%M:%S} UTC): {len(rows['episode'])} episodes")

    build = Path(tempfile.mkdtemp(prefix=f".{final.name}.fork-incomplete-", dir=final.parent))
    try:
        final_settings = Settings(home=final, db_url=None, episodes_dir=None, checkpoints_dir=None)
        build_settings = Settings(home=build, db_url=None, episodes_dir=None, checkpoints_dir=None)
        checkpoints = _place_checkpoints(
            rows, source.checkpoints_root, build_settings.checkpoints_root, final_settings.checkpoints_root
        )
        say(f"copied {checkpoints} checkpoint(s)")
        owner = database_identity(final_settings.database_url)
        checkpoints_marker(build_settings.checkpoints_root).claim(owner)
        build_files = EpisodeFiles(build_settings.episodes_root, owner=owner)
        build_files.claim()
        linked, copied = _place_episode_files(rows, EpisodeFiles(source.episodes_root), build_files)
        say(f"placed {linked + copied} episode file(s) ({linked} hard-linked, {copied} copied)")
        build_db = Database(build_settings.database_url)
        try:
            ensure_schema(build_db)
            _insert(build_db, rows)
        finally:
            build_db.dispose()
        fsync_tree(build)  # copied checkpoints and episode files are on disk before the fork appears
        os.rename(build, final)
        fsync_path(final.parent)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    return ForkReport(
        destination=final,
        iteration=number,
        cutoff=cutoff,
        rows={name: len(batch) for name, batch in rows.items()},
        linked_files=linked,
        copied_files=copied,
        checkpoints=checkpoints,
        champion=champion,
    )
