"""Timestamps from either backend as timezone-aware UTC (SQLite hands back naive datetimes)."""

from __future__ import annotations

from datetime import datetime

from flywheel.store.models import as_utc


def age_seconds(value: datetime | None, now: datetime) -> float | None:
    moment = as_utc(value)
    return None if moment is None else max(0.0, (now - moment).total_seconds())
