"""Shared tail of the benchmarks: run, restore torch's thread count, write the JSON result, print one line."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

import torch


def run_and_report(
    run: Callable[[argparse.Namespace], dict[str, Any]],
    summary: Callable[[dict[str, Any]], str],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """`run(args)` (which may change torch's threads for its measurements), then `args.out` and the summary."""
    threads = torch.get_num_threads()
    try:
        result = run(args)
    finally:
        torch.set_num_threads(threads)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(summary(result))
    return result
