"""Registry: promotion only on a stored passing verdict, forced promotion audited, rollback."""

from __future__ import annotations

import pytest

from flywheel.registry import CHAMPION, PolicyRegistry, RegistryError
from flywheel.store import EpisodeStore
from flywheel.store.models import EvalRun


def _candidate(registry: PolicyRegistry, parent: int | None = None) -> int:
    return registry.register_candidate(
        task="transfer_cube",
        checkpoint_uri="ckpt",
        sha256="0" * 64,
        config={"method": "recap"},
        data_fingerprint={"episode_ids": [1, 2], "counts_by_tag": {"demo": 2}},
        metrics={},
        parent_id=parent,
    ).id


def _eval(store: EpisodeStore, version_id: int, passed: bool) -> None:
    with store.db.write() as session:
        session.add(
            EvalRun(
                policy_version_id=version_id,
                task="transfer_cube",
                seeds=[1],
                outcomes=[passed],
                episodes=1,
                successes=int(passed),
                success_rate=float(passed),
                ci_low=0.0,
                ci_high=1.0,
                mean_length=10.0,
                latency_p50_ms=1.0,
                latency_p95_ms=2.0,
                gates=[],
                passed=passed,
            )
        )


def test_promotion_needs_a_passing_eval(store: EpisodeStore) -> None:
    registry = PolicyRegistry(store.db)
    first = _candidate(registry)
    with pytest.raises(RegistryError, match="no eval run"):
        registry.promote(first, actor="ci", reason="try")
    _eval(store, first, passed=False)
    with pytest.raises(RegistryError, match="failed its gates"):
        registry.promote(first, actor="ci", reason="try")
    assert registry.alias(CHAMPION) is None
    _eval(store, first, passed=True)
    assert registry.promote(first, actor="ci", reason="gates passed").status == "champion"
    assert registry.resolve("champion").id == first


def test_forced_promotion_and_rollback_are_audited(store: EpisodeStore) -> None:
    registry = PolicyRegistry(store.db)
    first = _candidate(registry)
    _eval(store, first, passed=True)
    registry.promote(first, actor="scheduler", reason="gates passed")
    second = _candidate(registry, parent=first)
    with pytest.raises(RegistryError, match="needs a reason"):
        registry.promote(second, actor="alice", reason=" ", force=True)
    registry.promote(second, actor="alice", reason="hotfix", force=True)
    assert registry.get(first).status == "retired"
    assert registry.get(second).status == "champion"
    restored = registry.rollback(actor="bob", reason="regressed on insertion")
    assert restored.id == first and registry.get(second).status == "retired"
    moves = [(m.from_version_id, m.to_version_id, m.actor, m.forced, m.reason) for m in registry.history(CHAMPION)]
    assert moves == [
        (None, first, "scheduler", False, "gates passed"),
        (first, second, "alice", True, "hotfix"),
        (second, first, "bob", True, "rollback: regressed on insertion"),
    ]


def test_rollback_without_history_and_unknown_refs(store: EpisodeStore) -> None:
    registry = PolicyRegistry(store.db)
    with pytest.raises(RegistryError, match="nothing to roll back"):
        registry.rollback(actor="x", reason="y")
    with pytest.raises(RegistryError, match="no policy is champion yet"):
        registry.resolve("champion")
    with pytest.raises(RegistryError, match="unknown policy reference 'best'"):
        registry.resolve("best")
    with pytest.raises(RegistryError, match="policy version 99 does not exist"):
        registry.get(99)
