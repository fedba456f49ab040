"""Detached snapshots of policy versions and alias moves."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flywheel.store.models import AliasEvent, PolicyVersion
from flywheel.store.records import snapshot


@dataclass(frozen=True)
class PolicyRecord:
    id: int
    parent_id: int | None
    task: str
    status: str
    checkpoint_uri: str
    sha256: str
    config: dict[str, Any]
    data_fingerprint: dict[str, Any]
    metrics: dict[str, Any]
    code_version: str | None
    iteration: int | None
    created_at: datetime

    @classmethod
    def of(cls, row: PolicyVersion) -> PolicyRecord:
        return snapshot(
            cls,
            row,
            config=dict(row.config or {}),
            data_fingerprint=dict(row.data_fingerprint or {}),
            metrics=dict(row.metrics or {}),
        )

    def as_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["created_at"] = self.created_at.isoformat()
        return data


@dataclass(frozen=True)
class AliasMove:
    id: int
    alias: str
    from_version_id: int | None
    to_version_id: int | None
    actor: str
    reason: str
    forced: bool
    created_at: datetime
    recorded_by: str | None = None

    @classmethod
    def of(cls, row: AliasEvent) -> AliasMove:
        return snapshot(cls, row)
