"""DDP on gloo: two processes on halves of a global batch produce the single-process gradients."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from flywheel.presets import train_config
from flywheel.train.synthetic import toy_episode
from flywheel.train.trainer import Trainer

MODEL = {"expert": {"chunk": 4}, "inference": {"execute_steps": 2}}  # over the tiny preset's model


def _grads(out: Path, tag: str) -> None:
    torch.set_num_threads(1)
    eps = [toy_episode(i, length=10) for i in range(2)] + [toy_episode(7, ["policy"] * 5 + ["human"] * 5, 10)]
    cfg = train_config("tiny", {"batch_size": 8, "grad_accum": 2, "model": MODEL, "indicator_dropout": 0.5})
    trainer = Trainer(cfg, eps, out / tag, None, progress=False)
    grads: dict[str, torch.Tensor] = {}
    trainer.critic_step(0)
    grads.update({f"critic.{n}": p.grad.clone() for n, p in trainer.critic.named_parameters() if p.grad is not None})
    trainer.compute_labels()
    trainer.policy_step(0)
    grads.update({f"policy.{n}": p.grad.clone() for n, p in trainer.policy.named_parameters() if p.grad is not None})
    rank = dist.get_rank() if dist.is_initialized() else 0
    save_file(grads, str(out / f"{tag}-rank{rank}.safetensors"))


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank)
    )
    try:
        _grads(Path(out), "ddp")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_two_gloo_processes_match_single_process_gradients(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    _grads(tmp_path, "single")
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    single = load_file(str(tmp_path / "single-rank0.safetensors"))
    assert len(single) > 10
    for rank in (0, 1):
        ddp = load_file(str(tmp_path / f"ddp-rank{rank}.safetensors"))
        assert ddp.keys() == single.keys()
        for name, g in single.items():
            torch.testing.assert_close(ddp[name], g, rtol=1e-4, atol=1e-6, msg=name)
    assert any(float(g.abs().sum()) > 0 for g in single.values())
