"""Seed ranges: demos, collection, gating evaluation and fresh re-measurement never share an env seed."""

from __future__ import annotations

DEMO_SEED_BASE = 500_000
COLLECT_SEEDS_PER_ITERATION = 10_000
EVAL_SEED_BASE = 1_000_000
FRESH_SEED_BASE = 2_000_000  # re-measuring promoted champions: never used to gate


def demo_seeds(n: int, start: int = 0) -> list[int]:
    return [DEMO_SEED_BASE + start + i for i in range(n)]


def collection_seeds(iteration: int, n: int) -> list[int]:
    """Seeds for iteration `iteration` (≥ 0): a disjoint block per iteration, below the demo range."""
    if n > COLLECT_SEEDS_PER_ITERATION:
        raise ValueError(f"at most {COLLECT_SEEDS_PER_ITERATION} episodes per iteration, asked for {n}")
    base = iteration * COLLECT_SEEDS_PER_ITERATION
    if base + n > DEMO_SEED_BASE:
        raise ValueError(f"iteration {iteration} is past the collection seed range")
    return [base + i for i in range(n)]


def eval_seeds(n: int, start: int = 0) -> list[int]:
    return [EVAL_SEED_BASE + start + i for i in range(n)]


def fresh_seeds(n: int, start: int = 0) -> list[int]:
    return [FRESH_SEED_BASE + start + i for i in range(n)]


def is_fresh_seed(seed: int) -> bool:
    """True for seeds reserved for re-measuring champions (gating evaluation must avoid them)."""
    return seed >= FRESH_SEED_BASE


def is_training_seed(seed: int) -> bool:
    """True for any seed that demos or collection may use (evaluation must avoid them)."""
    return 0 <= seed < EVAL_SEED_BASE
