"""GPU training step time and peak memory with a PaliGemma-sized frozen backbone (random init, real shape).

    python -m bench.train_gpu [--batch 8] [--steps 10] [--small]

Writes bench/results/train_gpu.json. Without CUDA it says so and exits 0 (nothing to measure on CPU).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

# PaliGemma-3B-224: SigLIP so400m/14 vision tower + Gemma-2B decoder.
SIGLIP_SO400M = {
    "hidden_size": 1152,
    "intermediate_size": 4304,
    "num_hidden_layers": 27,
    "num_attention_heads": 16,
    "image_size": 224,
    "patch_size": 14,
}
GEMMA_2B = {
    "model_type": "gemma",
    "hidden_size": 2048,
    "intermediate_size": 16384,
    "num_hidden_layers": 18,
    "num_attention_heads": 8,
    "num_key_value_heads": 1,
    "head_dim": 256,
    "vocab_size": 257216,
}
SMALL_VISION = {**SIGLIP_SO400M, "num_hidden_layers": 2}
SMALL_TEXT = {**GEMMA_2B, "num_hidden_layers": 2, "vocab_size": 1024}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--cameras", type=int, default=1)
    ap.add_argument("--small", action="store_true", help="2-layer towers (quick check of the code path)")
    ap.add_argument("--out", default="bench/results/train_gpu.json")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("train_gpu: CUDA is not available on this machine; nothing measured (run it on a GPU host)")
        return 0

    from flywheel.policy.config import ModelConfig
    from flywheel.policy.model import FlywheelPolicy, PolicySpec
    from flywheel.policy.recap import PolicyObjective
    from flywheel.train.dataset import Batch

    vision, text = (SMALL_VISION, SMALL_TEXT) if args.small else (SIGLIP_SO400M, GEMMA_2B)
    backbone = {
        "kind": "paligemma",
        "config": {
            "vision_config": vision,
            "text_config": text,
            "projection_dim": text["hidden_size"],
            "image_token_index": text["vocab_size"] - 1,
        },
    }
    cfg = ModelConfig.model_validate(
        {
            "encoder": {"vision": "backbone", "backbone": backbone},
            "expert": {"chunk": 50, "dim": 512, "layers": 6, "heads": 8},
        }
    )
    cams = tuple(f"cam{i}" for i in range(args.cameras))
    spec = PolicySpec(state_dim=35, action_dim=14, cameras=cams, task="transfer_cube")
    dev = torch.device("cuda")
    t0 = time.perf_counter()
    with dev:
        policy = FlywheelPolicy(cfg, spec)
    policy.backbone.to(torch.bfloat16)  # type: ignore[union-attr]
    build_s = time.perf_counter() - t0
    obj = PolicyObjective(policy).train()
    opt = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=1e-4)
    b, h = args.batch, cfg.expert.chunk
    images = {c: torch.randint(0, 255, (b, 3, 224, 224), device=dev).float() for c in cams}
    batch = Batch(
        torch.randn(b, 35, device=dev),
        images,
        torch.randn(b, h, 14, device=dev),
        torch.ones(b, h, device=dev),
        torch.zeros(b, device=dev),
        torch.zeros(b, device=dev),
        torch.randn(b, 35, device=dev),
        images,
    )
    ind = torch.ones(b, dtype=torch.long, device=dev)
    torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(args.steps + 2):
        torch.cuda.synchronize()
        t = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = obj(batch, ind, torch.randn(b, h, 14, device=dev), torch.rand(b, device=dev)).mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    steady = times[2:]
    result = {
        "device": torch.cuda.get_device_name(),
        "backbone": "paligemma-3b-shape" if not args.small else "paligemma-small",
        "backbone_params": sum(p.numel() for p in policy.backbone.parameters()),  # type: ignore[union-attr]
        "trainable_params": sum(p.numel() for p in policy.parameters() if p.requires_grad),
        "batch": b,
        "cameras": args.cameras,
        "build_s": round(build_s, 2),
        "step_ms_mean": round(1000 * sum(steady) / len(steady), 2),
        "step_ms_min": round(1000 * min(steady), 2),
        "samples_per_s": round(b / (sum(steady) / len(steady)), 1),
        "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(
        f"train_gpu: {result['step_ms_mean']} ms/step at batch {b}, peak {result['peak_memory_gib']} GiB "
        f"({result['backbone']}, {result['backbone_params'] / 1e9:.2f}B frozen params)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
