"""Optimizer state ↔ (safetensors tensors, JSON document): resumable without pickles."""

from __future__ import annotations

from typing import Any

import torch


def optimizer_state(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split `opt.state_dict()` into flat tensors (`state.<param>.<key>`) and a JSON-able rest."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, entry in sd["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{pid}.{key}"] = value.detach().cpu().clone()
            else:
                scalars.setdefault(str(pid), {})[key] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def load_optimizer_state(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], doc: dict[str, Any]) -> None:
    """Inverse of `optimizer_state`; tensors are moved to each parameter's device by the optimizer."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        _, pid, key = name.split(".", 2)
        state.setdefault(int(pid), {})[key] = value
    for pid, entry in doc.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(entry)
    groups = [{**g, "betas": tuple(g["betas"])} if "betas" in g else g for g in doc["param_groups"]]
    opt.load_state_dict({"state": state, "param_groups": groups})
