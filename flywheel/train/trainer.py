"""The training run: IQL critic → RECAP labels → flow-matching policy (or BC / AWR), resumable.

The learning itself (rewards, critic losses, advantages, labels, the conditioned policy loss) is in
`flywheel.policy.recap`; this module is the loop around it: batches, accumulation, DDP/FSDP, checkpoints.

Every random draw of step s in phase p (batch indices, image shifts, noise, flow times, indicator dropout) comes
from a generator seeded by (seed, p, s) over the *global* batch, each rank taking its slice. A run resumed from a
checkpoint therefore replays exactly the steps an uninterrupted run would, for any world size.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from flywheel.policy.checkpoint import (
    CheckpointError,
    read_document,
    read_tensors,
    verify_checkpoint,
    write_checkpoint,
)
from flywheel.policy.input_spec import IO_DOCUMENT, InputSpec, InputSpecError
from flywheel.policy.io import PolicyIO
from flywheel.policy.loading import (
    CRITIC_NORM,
    build_critic,
    load_critic,
    load_critic_norm,
    load_policy,
    model_document,
)
from flywheel.policy.model import FlywheelPolicy, PolicySpec
from flywheel.policy.normalize import NormStats
from flywheel.policy.recap import (
    CriticObjective,
    FrameLabels,
    PolicyObjective,
    batch_advantages,
    label_frames,
    policy_indicator,
    weighted_policy_loss,
)
from flywheel.train.augment import draw_shift_offsets, shift_batch
from flywheel.train.config import TrainConfig
from flywheel.train.data import EpisodeMeta, TrainingEpisode, data_fingerprint, usable_episodes
from flywheel.train.dataset import Batch, FrameTable, build_frame_table
from flywheel.train.distributed import DistContext, setup_distributed, shard_fsdp, unwrap, wrap_ddp
from flywheel.train.ema import WeightAverage
from flywheel.train.errors import ResumeMismatchError, TrainingDivergedError
from flywheel.train.logger import MetricsLogger, Progress
from flywheel.train.norm_fit import fit_norm_stats
from flywheel.train.state_io import load_optimizer_state, optimizer_state
from flywheel.vocab import EpisodeFrames

PHASES = {"critic": 1, "policy": 2}
KEEP_CHECKPOINTS = 2
POLICY_AVERAGE = "policy_average"  # resumable checkpoints: the weight average (`ema_decay`) beside the live policy


@dataclass
class TrainResult:
    checkpoint_dir: Path
    sha256: str
    metrics: dict[str, float]
    data_fingerprint: dict[str, Any]
    steps: int
    completed: bool = True
    timings: dict[str, float] = field(default_factory=dict)


def lr_factor(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """Linear warmup to 1, then cosine decay to `min_ratio` at `total`."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    span = max(1, total - warmup)
    progress = min(1.0, (step - warmup) / span)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def _step_generator(seed: int, phase: str, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + PHASES[phase] * 100_000_007 + step)


def _as_episodes(episodes: Iterable[TrainingEpisode | tuple[EpisodeMeta, EpisodeFrames]]) -> list[TrainingEpisode]:
    pairs = [(e.meta, e.frames) if isinstance(e, TrainingEpisode) else e for e in episodes]
    return usable_episodes(pairs, "the given episodes")


def _specs(config: TrainConfig, episodes: list[TrainingEpisode]) -> tuple[InputSpec, PolicySpec]:
    """What the policy reads (the model config's `inputs` over the episodes' env layout) and its network shapes.

    Every episode must provide it: a state-only episode in pixels training, or a missing camera, is refused with
    the episode named, before anything is written.
    """
    tasks = sorted({e.meta.task for e in episodes})
    first = episodes[0]
    layout, proprioception = _state_layout(tasks[0], int(first.frames.state.shape[1]))
    inputs = config.model.inputs
    vision = config.model.encoder.vision != "none"
    cameras: tuple[str, ...] = ()
    image_size: tuple[int, int] | None = None
    if vision:
        cameras = tuple(inputs.cameras) if inputs.cameras is not None else tuple(sorted(first.frames.images))
        if not cameras:
            raise InputSpecError(
                f"encoder vision={config.model.encoder.vision!r} needs camera images, but episode {first.meta.id} "
                "has none (state-only data): collect pixels episodes or use a state preset"
            )
        if cameras[0] not in first.frames.images:
            raise InputSpecError(f"episode {first.meta.id} lacks camera images {[cameras[0]]} this policy reads")
        h, w = first.frames.images[cameras[0]].shape[1:3]
        image_size = (int(h), int(w))
    spec = InputSpec.from_layout(
        tasks[0],
        layout,
        inputs.state,
        int(first.frames.action.shape[1]),
        proprioception=proprioception,
        cameras=cameras,
        image_size=image_size,
    )
    for ep in episodes:
        where = f"episode {ep.meta.id}"
        if ep.meta.task != spec.task:
            raise InputSpecError(f"{where} is task {ep.meta.task!r}; one policy trains on one task ({spec.task!r})")
        spec.select_state(ep.frames.state[:1], where)
        if ep.frames.action.shape[1] != spec.action_dim:
            raise InputSpecError(f"{where}: action size {ep.frames.action.shape[1]}, expected {spec.action_dim}")
        spec.check_images(ep.frames.images, where)
    return spec, PolicySpec(spec.state_dim, spec.action_dim, spec.cameras, spec.task)


def _state_layout(task: str, state_dim: int) -> tuple[dict[str, slice], tuple[str, ...]]:
    """The named state entries of `task`'s env and which of them are proprioception; data of a task the sim does not
    know (toy data) has one entry, `state`, of its whole width."""
    from sim.env import PROPRIOCEPTION, state_layout
    from sim.errors import UnknownTaskError

    try:
        return state_layout(task), PROPRIOCEPTION
    except UnknownTaskError:
        return {"state": slice(0, state_dim)}, ()


def _privileged_critic_spec(policy_spec: InputSpec, episodes: list[TrainingEpisode]) -> InputSpec:
    """A privileged critic's inputs: every entry of the env's state vector (object poses too), no camera."""
    first = episodes[0]
    layout, proprioception = _state_layout(policy_spec.task, int(first.frames.state.shape[1]))
    spec = InputSpec.from_layout(policy_spec.task, layout, None, policy_spec.action_dim, proprioception=proprioception)
    for ep in episodes:
        spec.select_state(ep.frames.state[:1], f"episode {ep.meta.id}")
    return spec


class Trainer:
    """One training run in `out_dir` (checkpoints under `out_dir/checkpoints`, final under `out_dir/final`
    unless `final_dir` names another directory)."""

    def __init__(
        self,
        config: TrainConfig,
        episodes: Iterable[TrainingEpisode | tuple[EpisodeMeta, EpisodeFrames]],
        out_dir: Path,
        init_from: Path | None,
        progress: bool,
        final_dir: Path | None = None,
    ) -> None:
        episodes = _as_episodes(episodes)
        self.config = config
        self.out_dir = Path(out_dir)
        self.final_dir = Path(final_dir) if final_dir is not None else self.out_dir / "final"
        self.ctx: DistContext = setup_distributed(config.device)
        self.fingerprint = data_fingerprint(episodes)
        self.input_spec, self.spec = _specs(config, episodes)
        self.progress_enabled = progress and self.ctx.is_main
        cfg = config.model
        privileged = config.uses_critic and cfg.critic.observations == "privileged"
        critic_spec = _privileged_critic_spec(self.input_spec, episodes) if privileged else None
        torch.manual_seed(config.seed)
        self.policy = FlywheelPolicy(cfg, self.spec).to(self.ctx.device)
        privileged_width = critic_spec.state_dim if critic_spec is not None else None
        self.critic = (
            build_critic(cfg, self.spec, self.policy, privileged_width).to(self.ctx.device)
            if config.uses_critic
            else None
        )
        critic_norm = None
        if init_from is not None:
            loaded = load_policy(init_from, self.ctx.device)
            if not loaded.input_spec.reads_like(self.input_spec):
                raise InputSpecError(
                    f"cannot fine-tune {init_from}: it reads {loaded.input_spec.describe()}, this run "
                    f"{self.input_spec.describe()}"
                )
            self.policy.load_state_dict(loaded.policy.state_dict())
            self.norm = loaded.norm
            stored_critic_norm = load_critic_norm(init_from)
            same_critic = (stored_critic_norm is None) == (critic_spec is None)
            if self.critic is not None and same_critic and (Path(init_from) / "critic.safetensors").is_file():
                self.critic.load_state_dict(load_critic(init_from, loaded, self.ctx.device).state_dict())
                critic_norm = stored_critic_norm
        else:
            self.norm = fit_norm_stats(episodes, cfg.norm, config.norm_frames, cfg.state_clip, self.input_spec)
        if critic_spec is not None and critic_norm is None:
            critic_norm = fit_norm_stats(episodes, cfg.norm, config.norm_frames, cfg.state_clip, critic_spec)
        self.critic_norm = critic_norm
        critic_io = PolicyIO(critic_spec, critic_norm) if critic_spec is not None and critic_norm is not None else None
        self.table: FrameTable = build_frame_table(
            episodes,
            self.io,
            cfg.expert.chunk,
            cfg.critic.gamma,
            config.reward,
            pre_takeover_steps=config.pre_takeover_negative_steps if config.method == "recap" else 0,
            pre_takeover_since_progress=config.pre_takeover_since_progress,
            failed_corrections_positive=config.failed_corrections_positive,
            critic_io=critic_io,
            object_targets=self.policy.object_head is not None,
            mask_control_changes=config.mask_control_changes,
        )
        self.tags = self.table.tag
        self.shift_pad = cfg.encoder.augment_shift if cfg.encoder.vision == "cnn" and self.input_spec.cameras else 0
        self.policy_opt = torch.optim.AdamW(
            [p for p in self.policy.parameters() if p.requires_grad], lr=config.lr, weight_decay=config.weight_decay
        )
        self.critic_opt = (
            torch.optim.Adam([p for p in self.critic.parameters() if p.requires_grad], lr=config.critic_lr)
            if self.critic is not None
            else None
        )
        fsdp = config.strategy == "fsdp" and self.ctx.device.type == "cuda"
        wrap = shard_fsdp if fsdp else wrap_ddp
        self.policy_obj = wrap(PolicyObjective(self.policy), self.ctx)
        self.critic_obj = wrap(CriticObjective(self.critic, self.policy), self.ctx) if self.critic else None
        self.labels: FrameLabels | None = None
        self.policy_average: WeightAverage | None = None  # from the first policy step, with `ema_decay`
        self.phase = "critic" if config.uses_critic else "policy"
        self.step = 0
        self.last_checkpoint: Path | None = None
        self.metrics: dict[str, float] = {}
        self.timings = {"data_s": 0.0, "total_s": 0.0, "samples": 0.0}
        self._check_batch_split()

    # ----- helpers -------------------------------------------------------------------------------------
    @property
    def io(self) -> PolicyIO:
        """The input/output processor saved with this run's checkpoints."""
        return PolicyIO(self.input_spec, self.norm)

    def _check_batch_split(self) -> None:
        per = self.ctx.world_size * self.config.grad_accum
        if self.config.batch_size % per:
            raise ValueError(
                f"batch_size {self.config.batch_size} must be divisible by world_size × grad_accum = {per}"
            )

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.ctx.device.type == "cuda" and self.config.bf16:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        if self.ctx.device.type == "cpu" and self.config.cpu_bf16:
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _local(self, x: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous slice of a global-batch tensor."""
        return x.view(self.ctx.world_size, -1, *x.shape[1:])[self.ctx.rank]

    @property
    def ckpt_root(self) -> Path:
        return self.out_dir / "checkpoints"

    # ----- one step of each phase ----------------------------------------------------------------------
    def _draw(self, phase: str, step: int) -> dict[str, torch.Tensor]:
        g = _step_generator(self.config.seed, phase, step)
        b, h, a = self.config.batch_size, self.config.model.expert.chunk, self.spec.action_dim
        draw = {"idx": torch.randint(0, len(self.table), (b,), generator=g)}
        if phase == "policy":
            draw["noise"] = torch.randn((b, h, a), generator=g)
            draw["t"] = torch.rand((b,), generator=g)
            draw["drop"] = torch.rand((b,), generator=g)
        if self.shift_pad:
            draw["shift"] = draw_shift_offsets(g, b, len(self.input_spec.cameras), self.shift_pad)
        return {k: self._local(v) for k, v in draw.items()}

    def _micro_batches(self, draw: dict[str, torch.Tensor]) -> Iterable[tuple[int, dict[str, torch.Tensor]]]:
        n = self.config.grad_accum
        parts = {k: v.chunk(n) for k, v in draw.items()}
        for m in range(n):
            yield m, {k: v[m] for k, v in parts.items()}

    def _diverged(self, phase: str, step: int, micro: int, idx: torch.Tensor) -> TrainingDivergedError:
        frames = idx[:6].tolist()
        where = f"; last good checkpoint: {self.last_checkpoint}" if self.last_checkpoint else "; no checkpoint yet"
        return TrainingDivergedError(
            f"non-finite {phase} loss at step {step} (micro-batch {micro}, frames {frames}…){where}. "
            "Lower lr, check the data for outliers, or resume from that checkpoint."
        )

    def _batch(self, part: dict[str, torch.Tensor]) -> Batch:
        """The micro-batch's frames (the time spent reading them counts as data wait), images shifted by its drawn
        offsets when the encoder augments."""
        t0 = time.perf_counter()
        batch = self.table.batch(part["idx"], self.ctx.device)
        self.timings["data_s"] += time.perf_counter() - t0
        return shift_batch(batch, part["shift"], self.shift_pad) if "shift" in part else batch

    def critic_step(self, step: int) -> dict[str, float]:
        """One IQL optimiser step (`step` sets the learning-rate schedule); its metrics."""
        assert self.critic_obj is not None and self.critic_opt is not None and self.critic is not None
        cfg = self.config
        factor = lr_factor(step, cfg.critic_steps, cfg.warmup_steps, cfg.min_lr_ratio)
        for group in self.critic_opt.param_groups:
            group["lr"] = cfg.critic_lr * factor
        self.critic_opt.zero_grad(set_to_none=True)
        local_b = cfg.batch_size // self.ctx.world_size
        q_tot = v_tot = 0.0
        for m, part in self._micro_batches(self._draw("critic", step)):
            batch = self._batch(part)
            sync = m == cfg.grad_accum - 1 or not hasattr(self.critic_obj, "no_sync")
            with contextlib.nullcontext() if sync else self.critic_obj.no_sync(), self._autocast():
                q_loss, v_loss = self.critic_obj(batch)
                loss = (q_loss.float().sum() + v_loss.float().sum()) / local_b
            if not self.ctx.all_finite(loss):
                raise self._diverged("critic", step, m, part["idx"])
            with contextlib.nullcontext() if sync else self.critic_obj.no_sync():
                loss.backward()
            q_tot += float(q_loss.detach().float().sum()) / local_b
            v_tot += float(v_loss.detach().float().sum()) / local_b
        grad_norm = nn.utils.clip_grad_norm_([p for p in self.critic.parameters() if p.requires_grad], cfg.grad_clip)
        self.critic_opt.step()
        self.critic.polyak_update()
        return {
            "train/loss": q_tot + v_tot,
            "train/q_loss": q_tot,
            "train/v_loss": v_tot,
            "train/lr": cfg.critic_lr * factor,
            "train/critic_grad_norm": float(grad_norm),
        }

    def policy_step(self, step: int) -> dict[str, float]:
        """One policy optimiser step on the frames' labels (`compute_labels` first); its metrics."""
        assert self.labels is not None
        cfg = self.config
        factor = lr_factor(step, cfg.steps, cfg.warmup_steps, cfg.min_lr_ratio)
        for group in self.policy_opt.param_groups:
            group["lr"] = cfg.lr * factor
        self.policy_opt.zero_grad(set_to_none=True)
        local_b = cfg.batch_size // self.ctx.world_size
        total = 0.0
        for m, part in self._micro_batches(self._draw("policy", step)):
            idx = part["idx"]
            batch = self._batch(part)
            ind = policy_indicator(cfg, self.labels, idx, part["drop"])
            weight = self.labels.weight[idx].to(self.ctx.device)
            sync = m == cfg.grad_accum - 1 or not hasattr(self.policy_obj, "no_sync")
            with contextlib.nullcontext() if sync else self.policy_obj.no_sync(), self._autocast():
                per_sample = self.policy_obj(
                    batch, ind.to(self.ctx.device), part["noise"].to(self.ctx.device), part["t"].to(self.ctx.device)
                )
                loss = weighted_policy_loss(per_sample, weight, local_b, self.labels.mean_weight)
            if not self.ctx.all_finite(loss):
                raise self._diverged("policy", step, m, idx)
            with contextlib.nullcontext() if sync else self.policy_obj.no_sync():
                loss.backward()
            total += float(loss.detach())
        grad_norm = nn.utils.clip_grad_norm_([p for p in self.policy.parameters() if p.requires_grad], cfg.grad_clip)
        if cfg.ema_decay is not None and self.policy_average is None:
            self.policy_average = WeightAverage.of(self.policy, cfg.ema_decay)
        self.policy_opt.step()
        if self.policy_average is not None:
            self.policy_average.update(self.policy)
        return {
            "train/loss": total,
            "train/policy_loss": total,
            "train/lr": cfg.lr * factor,
            "train/policy_grad_norm": float(grad_norm),
        }

    # ----- labelling -----------------------------------------------------------------------------------
    @torch.no_grad()
    def _advantages(self) -> np.ndarray:
        assert self.critic is not None
        critic_obj = unwrap(self.critic_obj)  # type: ignore[arg-type]
        self.critic.eval()
        out = []
        for start in range(0, len(self.table), 1024):
            idx = torch.arange(start, min(start + 1024, len(self.table)))
            b = self.table.batch(idx, self.ctx.device)
            with self._autocast():
                adv = batch_advantages(critic_obj, b, self.config.advantage)
            out.append(adv.float().cpu())
        self.critic.train()
        return torch.cat(out).numpy()

    def compute_labels(self) -> FrameLabels:
        """Label every frame for the policy phase (RECAP: from the critic's advantages) and keep the labels."""
        advantages = None if self.config.method == "bc" else self._advantages()
        self.labels = label_frames(self.config, self.table.label_inputs(), advantages)
        return self.labels

    # ----- checkpoints ---------------------------------------------------------------------------------
    def _meta(self) -> dict[str, Any]:
        return {
            "method": self.config.method,
            "conditioned": self.config.method == "recap",
            "critic_observations": self.config.model.critic.observations if self.critic is not None else None,
            "object_aux_weight": self.config.model.encoder.object_aux_weight,
            "seed": self.config.seed,
            "ema_decay": self.config.ema_decay,
            "data_fingerprint_sha256": self.fingerprint["sha256"],
            "label_stats": self.labels.stats if self.labels else {},
        }

    def _model_files(self, final: bool = False) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, Any]]:
        """The model's tensors and documents; `final`: the policy is the weight average when there is one."""
        average = self.policy_average.state_dict() if final and self.policy_average is not None else None
        policy = average if average is not None else self.policy.state_dict()
        tensors = {"policy": policy, "norm": self.norm.to_tensors()}
        if self.critic is not None:
            tensors["critic"] = self.critic.state_dict()
        if self.critic_norm is not None:
            tensors[CRITIC_NORM] = self.critic_norm.to_tensors()
        docs = {
            "model": model_document(self.config.model, self.spec, self._meta()),
            IO_DOCUMENT: self.input_spec.to_document(),
        }
        return tensors, docs

    def save_state(self) -> Path:
        """A resumable checkpoint (models, optimisers, labels, position); keeps the newest few."""
        tensors, docs = self._model_files()
        t, d = optimizer_state(self.policy_opt)
        tensors["optim_policy"] = t
        docs["optim_policy"] = d
        if self.critic_opt is not None:
            t, d = optimizer_state(self.critic_opt)
            tensors["optim_critic"] = t
            docs["optim_critic"] = d
        if self.policy_average is not None:
            tensors[POLICY_AVERAGE] = self.policy_average.state_dict()
        if self.labels is not None:
            tensors["labels"] = {"indicator": self.labels.indicator, "weight": self.labels.weight}
            docs["labels"] = self.labels.stats
        docs["state"] = {
            "phase": self.phase,
            "step": self.step,
            "config": self.config.model_dump(mode="json"),
            "data_sha256": self.fingerprint["sha256"],
            "world_size": self.ctx.world_size,
            "timings": self.timings,
        }
        name = f"{self.phase}-{self.step:08d}"
        path = self.ckpt_root / name
        write_checkpoint(path, tensors, docs)
        tmp = self.ckpt_root / "LATEST.tmp"
        tmp.write_text(name)
        os.replace(tmp, self.ckpt_root / "LATEST")
        old = sorted(p for p in self.ckpt_root.iterdir() if p.is_dir() and not p.name.startswith("."))
        for stale in [p for p in old if p.name != name][: -(KEEP_CHECKPOINTS - 1) or None]:
            shutil.rmtree(stale, ignore_errors=True)
        self.last_checkpoint = path
        return path

    def try_resume(self) -> bool:
        """Continue from `out_dir/checkpoints/LATEST` when present (same config and data required)."""
        pointer = self.ckpt_root / "LATEST"
        if not pointer.is_file():
            return False
        path = self.ckpt_root / pointer.read_text().strip()
        verify_checkpoint(path)
        state = read_document(path, "state")
        if state["config"] != self.config.model_dump(mode="json"):
            raise ResumeMismatchError(
                f"{self.out_dir} holds a run with a different training config; use a new output directory"
            )
        if state["data_sha256"] != self.fingerprint["sha256"]:
            raise ResumeMismatchError(f"{self.out_dir} holds a run on different episodes; use a new directory")
        self.policy.load_state_dict(read_tensors(path, "policy", self.ctx.device))
        self.norm = NormStats.from_tensors(read_tensors(path, "norm"))
        load_optimizer_state(self.policy_opt, read_tensors(path, "optim_policy"), read_document(path, "optim_policy"))
        if self.critic is not None and self.critic_opt is not None:
            self.critic.load_state_dict(read_tensors(path, "critic", self.ctx.device))
            load_optimizer_state(
                self.critic_opt, read_tensors(path, "optim_critic"), read_document(path, "optim_critic")
            )
        if self.config.ema_decay is not None and (path / f"{POLICY_AVERAGE}.safetensors").is_file():
            shadow = read_tensors(path, POLICY_AVERAGE, self.ctx.device)
            self.policy_average = WeightAverage(self.config.ema_decay, shadow)
        if (path / "labels.safetensors").is_file():
            lab = read_tensors(path, "labels")
            self.labels = FrameLabels(lab["indicator"].long(), lab["weight"].float(), read_document(path, "labels"))
        self.phase, self.step = state["phase"], int(state["step"])
        self.timings = {k: float(v) for k, v in state.get("timings", {}).items()} or self.timings
        self.last_checkpoint = path
        return True

    # ----- the loop ------------------------------------------------------------------------------------
    def run(self, should_stop: Callable[[int], bool] | None = None) -> TrainResult:
        cfg = self.config
        if self.ctx.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        self.try_resume()
        total = (cfg.critic_steps if cfg.uses_critic else 0) + cfg.steps
        done = self.step + (cfg.critic_steps if self.phase == "policy" and cfg.uses_critic else 0)
        log = MetricsLogger(self.out_dir, self.ctx.is_main, cfg.wandb, cfg.wandb_project, cfg.model_dump(mode="json"))
        bar = Progress(self.progress_enabled, total, done)
        self.policy.train()
        if self.critic is not None:
            self.critic.train()
        t_start = time.perf_counter()
        try:
            while True:
                if self.phase == "critic" and self.step >= cfg.critic_steps:
                    self.phase, self.step = "policy", 0
                if self.phase == "policy" and self.labels is None:
                    self.compute_labels()
                    log.log(self.labels.stats, done)
                    self.metrics.update(self.labels.stats)
                if self.phase == "policy" and self.step >= cfg.steps:
                    break
                step_fn = self.critic_step if self.phase == "critic" else self.policy_step
                metrics = step_fn(self.step)
                self.step += 1
                done += 1
                self.timings["samples"] += cfg.batch_size
                self.metrics.update(metrics)
                if self.step % cfg.log_every == 0 or self.step == 1:
                    log.log(metrics, done)
                bar.update(self.phase, f"loss {metrics['train/loss']:.4f}")
                if self.step % cfg.checkpoint_every == 0:
                    self._save_synced()
                if should_stop is not None and should_stop(done):
                    self._save_synced()
                    return self._result(completed=False, t_start=t_start)
            return self._finish(t_start)
        finally:
            bar.close()
            log.close()

    def _save_synced(self) -> None:
        if self.ctx.is_main:
            self.save_state()
        else:
            self.last_checkpoint = self.ckpt_root / f"{self.phase}-{self.step:08d}"
        self.ctx.barrier()

    def _finish(self, t_start: float) -> TrainResult:
        return self._result(completed=True, t_start=t_start)

    def _result(self, completed: bool, t_start: float) -> TrainResult:
        self.timings["total_s"] += time.perf_counter() - t_start
        final = self.final_dir
        sha = ""
        if completed:
            if self.ctx.is_main:
                tensors, docs = self._model_files(final=True)
                docs["metrics"] = {**self.metrics, "timings": self.timings}
                docs["fingerprint"] = self.fingerprint
                docs["train_config"] = self.config.model_dump(mode="json")
                sha = write_checkpoint(final, tensors, docs)
            self.ctx.barrier()
        elif self.last_checkpoint is None:
            raise CheckpointError("training stopped before any checkpoint was written")
        return TrainResult(
            checkpoint_dir=final if completed else self.last_checkpoint,  # type: ignore[arg-type]
            sha256=sha,
            metrics=dict(self.metrics),
            data_fingerprint=self.fingerprint,
            steps=self.step,
            completed=completed,
            timings=dict(self.timings),
        )


def run_training(
    config: TrainConfig,
    episodes: Iterable[TrainingEpisode | tuple[EpisodeMeta, EpisodeFrames]],
    out_dir: str | Path,
    init_from: str | Path | None = None,
    progress: bool = True,
    should_stop: Callable[[int], bool] | None = None,
    final_dir: str | Path | None = None,
) -> TrainResult:
    """Train (or resume the run already in `out_dir`) and return the final checkpoint and its sha256.

    The final checkpoint goes to `final_dir` (default `out_dir/final`).

    `should_stop(steps_done)` lets a scheduler pre-empt: a resumable checkpoint is written and the result
    has `completed=False`; calling again with the same arguments continues where it stopped.
    """
    threads = torch.get_num_threads()
    if config.cpu_threads is not None:
        torch.set_num_threads(config.cpu_threads)
    try:
        trainer = Trainer(
            config,
            episodes,
            Path(out_dir),
            Path(init_from) if init_from else None,
            progress,
            Path(final_dir) if final_dir is not None else None,
        )
        return trainer.run(should_stop)
    finally:
        torch.set_num_threads(threads)
