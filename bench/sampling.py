"""How a benchmark samples a registered policy in place of its checkpoint's inference settings: the guidance β
and the receding horizon (`--cfg-beta`, `--execute-steps`), given to every episode's `CollectSpec`."""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class SamplingOverrides:
    """None keeps the checkpoint's own `inference` setting."""

    cfg_beta: float | None = None
    execute_steps: int | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> SamplingOverrides:
        return cls(cfg_beta=args.cfg_beta, execute_steps=args.execute_steps)

    def spec_settings(self) -> dict[str, Any]:
        """The `CollectSpec` fields these overrides set (`CollectSpec` validates them)."""
        return asdict(self)

    def effective(self, version: Any) -> dict[str, Any]:
        """What `version` (a registered policy) samples with under these overrides, for a result's record: the
        override where given, else its checkpoint's `inference` setting; the horizon capped at its chunk."""
        model = version.config["model"]
        inference = model["inference"]
        beta = inference["cfg_beta"] if self.cfg_beta is None else self.cfg_beta
        horizon = inference["execute_steps"] if self.execute_steps is None else self.execute_steps
        return {"cfg_beta": beta, "execute_steps": min(horizon, model["expert"]["chunk"])}


def add_sampling_arguments(parser: argparse.ArgumentParser) -> None:
    """`--cfg-beta` and `--execute-steps`, read back by `SamplingOverrides.from_args`."""
    parser.add_argument(
        "--cfg-beta",
        type=float,
        default=None,
        help="sample with this classifier-free guidance β instead of the checkpoint's (RECAP policies)",
    )
    parser.add_argument(
        "--execute-steps",
        type=int,
        default=None,
        help="execute this many actions of each sampled chunk before re-planning, instead of the checkpoint's "
        "inference.execute_steps (capped at the chunk)",
    )
