"""RECAP, top to bottom: rewards → chunked returns → IQL critic → advantages → indicator labels → the
advantage-conditioned policy update (and the BC / AWR baselines' sample weights).

Read it beside the paper (π*0.6's RECAP, with IQL as the value learner). The trainer (`flywheel.train.trainer`)
owns only the loop around it: batches, gradient accumulation, DDP/FSDP, learning-rate schedule, checkpoints.

1. Rewards. The simulator stores a per-frame stage reward (0..4; 4 = task solved at that frame) and the episode
   keeps a success flag judged on the final state. Learning reward per frame t:

       r_t = -step_cost
             + stage_bonus · (new stage reached at t: max(0, max_{k≤t} s_k - max_{k<t} s_k))
             + success_bonus · 1[t is the last frame and the episode succeeded]

   The step cost makes faster solutions better; stage shaping gives dense credit for partial progress; the
   success bonus ties the value to the outcome the eval gates measure. A successful episode's last frame is
   terminal (no bootstrap past it). A failed one ends by the time limit or an abort, not by anything in the
   task: by default (`failed_episode_end: terminal`) it is treated as terminal all the same; `truncated` treats
   it as a truncation and bootstraps past it, with V of its last frame (less that frame's one-time reward)
   standing in for the unseen next state (Pardo et al., 2018, "Time Limits in Reinforcement Learning"): the
   observations carry no clock that could tell the critic the end is near.
2. Returns over an action chunk of H steps: R_t = Σ_{k<H} γ^k r_{t+k}, bootstrapped with γ^H · V(s_{t+H}).
3. Critic (IQL): twin Q(s, A_chunk) regress R_t + γ^H V(s_{t+H}); V regresses the τ-expectile of min target Q;
   the target nets follow by Polyak averaging.
4. Advantages: A = min target Q(s, A) − V(s) (`q_minus_v`), or the n-step R_t + γ^H V(s_{t+H}) − V(s) (`nstep`).
5. Labels: I = 1[A > ε_task], ε_task a quantile of the task's advantages; frames under human/expert control are
   forced positive, the policy's frames just before a takeover forced negative.
6. Policy: flow matching conditioned on I, with I dropped (replaced by "unconditional") at a configurable rate so
   the same network also models p(A | s) for classifier-free guidance at inference; the loss is a per-frame
   weighted mean (source weights; AWR weights for that baseline).
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from flywheel.policy.config import CriticConfig, EncoderConfig, Strict
from flywheel.policy.encoders import ObservationEncoder, mlp
from flywheel.policy.expert import NEGATIVE, POSITIVE, UNCONDITIONAL
from flywheel.vocab import Tag

if TYPE_CHECKING:
    from flywheel.policy.model import FlywheelPolicy
    from flywheel.train.config import TrainConfig
    from flywheel.train.dataset import Batch

# ----- 1. rewards ---------------------------------------------------------------------------------------------


class RewardConfig(Strict):
    step_cost: float = Field(default=0.01, ge=0.0, le=1.0)
    stage_bonus: float = Field(default=0.25, ge=0.0, le=10.0)
    success_bonus: float = Field(default=1.0, ge=0.0, le=100.0)
    failed_episode_end: Literal["terminal", "truncated"] = Field(
        default="terminal",
        description="terminal: nothing follows a failed episode's last frame (value 0 past it); truncated: the "
        "time limit or an abort cut it short, so returns crossing its end bootstrap from V of its last frame",
    )

    def truncates(self, success: bool) -> bool:
        """Whether an episode with this outcome ends by truncation (bootstrapped) rather than terminally."""
        return self.failed_episode_end == "truncated" and not success


def frame_rewards(stage_reward: np.ndarray, success: bool, cfg: RewardConfig) -> np.ndarray:
    """Per-frame learning reward (T,) float32 from the stored env reward and the success flag."""
    stage = np.maximum.accumulate(np.asarray(stage_reward, dtype=np.float64))
    progress = np.diff(stage, prepend=0.0).clip(min=0.0)
    r = -cfg.step_cost + cfg.stage_bonus * progress
    if success:
        r[-1] += cfg.success_bonus
    return r.astype(np.float32)


# ----- 2. chunked returns -------------------------------------------------------------------------------------


def chunk_targets(
    rewards: np.ndarray, gamma: float, chunk: int, truncated: bool = False, step_cost: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each frame t of one episode: (chunk return, index of the bootstrap frame, bootstrap factor).

    Where s_{t+H} exists inside the episode: (Σ_{k<H} γ^k r_{t+k}, t+H, γ^H). Where the episode ends inside the
    chunk the return sums the rewards up to its last frame T-1; a terminal end bootstraps nothing (index T-1,
    unused; factor 0). A `truncated` one bootstraps the unseen s_T by a stand-in, the last frame's value less the
    part of its reward that is not the recurring `-step_cost` (a stage bonus is earned once): index T-1, factor
    γ^(T-t), and γ^(T-t) · (r_{T-1} + step_cost) taken off the return. So a failed episode's last state is valued
    as staying there, paying the step cost every step: a bounded anchor rather than a value of 0.
    """
    r = np.asarray(rewards, dtype=np.float64)
    t_len = r.shape[0]
    padded = np.concatenate([r, np.zeros(chunk)])
    disc = gamma ** np.arange(chunk)
    windows = np.lib.stride_tricks.sliding_window_view(padded, chunk)[:t_len]
    ret = windows @ disc
    nxt = np.arange(t_len) + chunk
    alive = nxt < t_len
    if truncated:
        ahead = gamma ** (t_len - np.arange(t_len))
        bootstrap = np.where(alive, gamma**chunk, ahead)
        ret = ret - np.where(alive, 0.0, ahead * (r[-1] + step_cost))
    else:
        bootstrap = np.where(alive, gamma**chunk, 0.0)
    return ret.astype(np.float32), np.minimum(nxt, t_len - 1), bootstrap.astype(np.float32)


# ----- 3. the IQL critic: twin Q, expectile V, Polyak targets -------------------------------------------------


def expectile_loss(diff: torch.Tensor, expectile: float) -> torch.Tensor:
    """Element-wise |τ - 1[diff < 0]| · diff², diff = target - prediction."""
    weight = torch.where(diff < 0, 1.0 - expectile, expectile)
    return weight * diff.pow(2)


class ChunkQ(nn.Module):
    """Q(features, flattened normalised action chunk) → scalar."""

    def __init__(self, feat_dim: int, chunk_dim: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.net = mlp(feat_dim + chunk_dim, hidden, 1, layers)

    def forward(self, feat: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([feat, actions.flatten(1)], dim=-1)).squeeze(-1)


CriticObservation = tuple[torch.Tensor, dict | None, torch.Tensor | None]
"""(normalised state, camera images, backbone tokens): what the critic's encoder reads."""


class IqlCritic(nn.Module):
    """Own trainable observation head over the shared (frozen, detached) backbone tokens, twin Q, V."""

    def __init__(
        self,
        cfg: CriticConfig,
        enc_cfg: EncoderConfig,
        state_dim: int,
        action_dim: int,
        chunk: int,
        cameras: list[str],
        backbone_dim: int | None,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        h = cfg.hidden_dim
        self.encoder = ObservationEncoder(enc_cfg, state_dim, cameras, h, backbone_dim)
        self.q1 = ChunkQ(h, chunk * action_dim, h, cfg.layers)
        self.q2 = ChunkQ(h, chunk * action_dim, h, cfg.layers)
        self.v = mlp(h, h, 1, cfg.layers)
        self.target_encoder = copy.deepcopy(self.encoder).requires_grad_(False)
        self.target_q1 = copy.deepcopy(self.q1).requires_grad_(False)
        self.target_q2 = copy.deepcopy(self.q2).requires_grad_(False)

    def features(self, state: torch.Tensor, images: dict | None, tokens: torch.Tensor | None) -> torch.Tensor:
        return self.encoder(state, images, tokens).mean(dim=1)

    def value(self, state: torch.Tensor, images: dict | None, tokens: torch.Tensor | None) -> torch.Tensor:
        return self.v(self.features(state, images, tokens)).squeeze(-1)

    def target_q(
        self, state: torch.Tensor, images: dict | None, tokens: torch.Tensor | None, actions: torch.Tensor
    ) -> torch.Tensor:
        """min of the two target Qs (no graph)."""
        with torch.no_grad():
            feat = self.target_encoder(state, images, tokens).mean(dim=1)
            return torch.minimum(self.target_q1(feat, actions), self.target_q2(feat, actions))

    def losses(
        self,
        state: torch.Tensor,
        images: dict | None,
        tokens: torch.Tensor | None,
        actions: torch.Tensor,
        chunk_return: torch.Tensor,
        bootstrap: torch.Tensor,
        next_state: torch.Tensor,
        next_images: dict | None,
        next_tokens: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample (q_loss, v_loss).

        Q target = chunk return + bootstrap · V(next state), as `chunk_targets` gives them (γ^H and s_{t+H} inside
        the episode; past its end 0, or for a truncation γ^(T-t) and the last frame). V regresses the `expectile`
        of min target Q.
        """
        feat = self.features(state, images, tokens)
        with torch.no_grad():
            v_next = self.value(next_state, next_images, next_tokens)
            q_target = chunk_return + bootstrap * v_next
        tq = self.target_q(state, images, tokens, actions)
        v = self.v(feat).squeeze(-1)
        v_loss = expectile_loss(tq - v, self.cfg.expectile)
        q_loss = (self.q1(feat, actions) - q_target).pow(2) + (self.q2(feat, actions) - q_target).pow(2)
        return q_loss, v_loss

    @torch.no_grad()
    def advantage(
        self, state: torch.Tensor, images: dict | None, tokens: torch.Tensor | None, actions: torch.Tensor
    ) -> torch.Tensor:
        """A = min target Q(s, A) − V(s)."""
        return self.target_q(state, images, tokens, actions) - self.value(state, images, tokens)

    @torch.no_grad()
    def polyak_update(self) -> None:
        """θ' ← (1 − τ)·θ' + τ·θ for the target encoder and Qs."""
        tau = self.cfg.tau
        for online, target in (
            (self.encoder, self.target_encoder),
            (self.q1, self.target_q1),
            (self.q2, self.target_q2),
        ):
            for p, tp in zip(online.parameters(), target.parameters(), strict=True):
                tp.lerp_(p.detach(), tau)


class CriticObjective(nn.Module):
    """IQL (q_loss, v_loss) per sample, as one forward call (so DDP/FSDP hooks see it); backbone tokens come
    from the policy's frozen backbone."""

    def __init__(self, critic: IqlCritic, policy: FlywheelPolicy) -> None:
        super().__init__()
        self.critic = critic
        self._policy = (policy,)  # not a submodule: its parameters are not the critic's

    def tokens(self, images: dict | None) -> torch.Tensor | None:
        policy = self._policy[0]
        if policy.backbone is None:
            return None
        with torch.no_grad():
            return policy.backbone_tokens(images).detach()

    def observation(self, batch: Batch, following: bool = False) -> CriticObservation:
        """What the critic reads of `batch`'s frames (`following`: of the frames a chunk later): the policy's
        inputs, or a privileged critic's full state alone."""
        if self.critic.cfg.observations == "privileged":
            state = batch.next_critic_state if following else batch.critic_state
            if state is None:
                raise ValueError("a privileged critic needs the batch's full state (build_frame_table's critic_io)")
            return state, None, None
        images = batch.next_images if following else batch.images
        return (batch.next_state if following else batch.state), images, self.tokens(images)

    def forward(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        now, later = self.observation(batch), self.observation(batch, following=True)
        return self.critic.losses(*now, batch.actions, batch.chunk_return, batch.bootstrap, *later)


# ----- 4. advantages ------------------------------------------------------------------------------------------

AdvantageKind = Literal["q_minus_v", "nstep"]


@torch.no_grad()
def batch_advantages(objective: CriticObjective, batch: Batch, kind: AdvantageKind) -> torch.Tensor:
    """A per frame of `batch`: min target Q − V (`q_minus_v`), or R_t + bootstrap · V(s_{t+H}) − V(s) (`nstep`)."""
    critic = objective.critic
    now = objective.observation(batch)
    if kind == "q_minus_v":
        return critic.advantage(*now, batch.actions)
    v = critic.value(*now)
    v_next = critic.value(*objective.observation(batch, following=True))
    return batch.chunk_return + batch.bootstrap * v_next - v


# ----- 5. indicator labels (and the baselines' weights) -------------------------------------------------------


def pre_takeover_frames(policy_acting: np.ndarray, window: int, stage: np.ndarray | None = None) -> np.ndarray:
    """Policy frames among the last `window` before each switch from the policy to another controller.

    With `stage` (the per-frame task stage), each window also starts no earlier than the policy's last stage
    progress or the start of its current run of control, where the operator's no-progress clock restarts: only the
    stall the trigger measured is marked, never a frame that advanced the task.
    """
    acting = np.asarray(policy_acting, dtype=bool)
    marked = np.zeros(acting.shape, dtype=bool)
    if window <= 0:
        return marked
    clock_restarts = np.array([], dtype=np.int64)
    if stage is not None:
        best = np.maximum.accumulate(np.asarray(stage, dtype=float))
        rises = np.diff(best, prepend=0.0) > 0
        clock_restarts = np.flatnonzero(rises | ~acting)  # the stall starts after these frames
    for switch in np.flatnonzero(acting[:-1] & ~acting[1:]) + 1:
        start = max(0, switch - window)
        earlier = clock_restarts[clock_restarts < switch]
        if earlier.size:
            start = max(start, int(earlier[-1]) + 1)
        marked[start:switch] = acting[start:switch]
    return marked


def steps_before_control_changes(chunk_controllers: np.ndarray) -> np.ndarray:
    """(N, H) bool: which steps of each frame's action chunk come before the first change of controller (a
    takeover, a hand-back, or one operator handing to another). `chunk_controllers` (N, H): the controller codes
    of each frame's H target actions, its own first."""
    codes = np.asarray(chunk_controllers)
    return np.logical_and.accumulate(codes == codes[:, :1], axis=1)


def failed_correction_frames(policy_acting: np.ndarray, stage: np.ndarray, success: bool) -> np.ndarray:
    """Frames of takeovers that repaired nothing: runs of non-policy frames, in an episode the policy also drove,
    whose stage never rose above the best reached before the run (a run that ends a successful episode repaired it).
    """
    acting = np.asarray(policy_acting, dtype=bool)
    stage = np.asarray(stage, dtype=float)
    failed = np.zeros(acting.shape, dtype=bool)
    if acting.all() or not acting.any():  # autonomous, or a demo: no takeover to judge
        return failed
    edges = np.flatnonzero(np.diff(np.concatenate([[True], acting, [True]]).astype(np.int8)))
    for start, end in zip(edges[::2], edges[1::2], strict=True):  # each [start, end) run of non-policy frames
        best_before = stage[:start].max() if start > 0 else 0.0
        repaired = stage[start:end].max() > best_before or (success and end == len(acting))
        failed[start:end] = not repaired
    return failed


@dataclass(frozen=True)
class Labels:
    """Per-frame indicator (0 negative / 1 positive) and the per-task thresholds ε that produced it."""

    indicator: np.ndarray
    thresholds: dict[int, float]

    @property
    def positive_fraction(self) -> float:
        return float((self.indicator == POSITIVE).mean()) if self.indicator.size else 0.0


def binarize_advantages(
    advantages: np.ndarray,
    task_ids: np.ndarray,
    forced_positive: np.ndarray,
    quantile: float,
    forced_negative: np.ndarray | None = None,
) -> Labels:
    """I = 1[A > ε_task] with ε_task the `quantile` of all of that task's advantages; human/expert frames
    (`forced_positive`) are positive and `forced_negative` frames negative whatever their advantage.
    """
    adv = np.asarray(advantages, dtype=np.float64)
    tasks = np.asarray(task_ids)
    forced = np.asarray(forced_positive, dtype=bool)
    indicator = np.full(adv.shape, NEGATIVE, dtype=np.int64)
    thresholds: dict[int, float] = {}
    for task in np.unique(tasks).tolist():
        sel = tasks == task
        eps = float(np.quantile(adv[sel], quantile))
        thresholds[int(task)] = eps
        indicator[sel & (adv > eps)] = POSITIVE
    if forced_negative is not None:
        indicator[np.asarray(forced_negative, dtype=bool)] = NEGATIVE
    indicator[forced] = POSITIVE
    return Labels(indicator=indicator, thresholds=thresholds)


def awr_weights(advantages: np.ndarray, beta: float, max_weight: float) -> np.ndarray:
    """Clipped exp(β·Â) with Â = A / std(A) (scale-free temperature)."""
    adv = np.asarray(advantages, dtype=np.float64)
    std = float(adv.std()) or 1.0
    return np.minimum(np.exp(beta * adv / std), max_weight).astype(np.float32)


def source_weights(tags: np.ndarray, weights: Mapping[str, float]) -> np.ndarray:
    """Per-frame loss weight from its episode's tag name."""
    return np.array([weights[str(t)] for t in np.asarray(tags).tolist()], dtype=np.float32)


def takeover_frames(tags: np.ndarray, forced_positive: np.ndarray) -> np.ndarray:
    """The forced-positive frames of intervention episodes: the takeovers (demos excluded; with
    `failed_corrections_positive` off, the forced positives already leave out the takeovers that repaired nothing)."""
    return (np.asarray(tags).astype(str) == Tag.INTERVENTION.value) & np.asarray(forced_positive, dtype=bool)


@dataclass
class FrameLabels:
    """What the policy phase trains on, per frame of the dataset."""

    indicator: torch.Tensor  # (N,) long: 0/1, or 2 (unconditional) everywhere for bc/awr
    weight: torch.Tensor  # (N,) float: source weight × AWR weight
    stats: dict[str, float]

    @functools.cached_property
    def mean_weight(self) -> float:
        """Mean weight over the dataset: the policy loss divides by it, so weights shift emphasis between
        frames without changing the effective learning rate (AWR's exp(βA) or zeroed sources would)."""
        return max(float(self.weight.double().mean()), 1e-12)


@dataclass(frozen=True)
class LabelInputs:
    """The per-frame facts labelling reads (a `FrameTable` has them all)."""

    tag: np.ndarray  # episode tag name per frame
    task_id: np.ndarray
    tasks: list[str]  # task name per task id
    forced_positive: np.ndarray  # a human or the expert was in control
    forced_negative: np.ndarray  # policy frames just before a takeover (see pre_takeover_frames)


def frame_source_weights(config: TrainConfig, frames: LabelInputs) -> np.ndarray:
    """Each frame's loss weight before AWR: its episode's source weight, times `takeover_weight` on takeovers."""
    src = source_weights(frames.tag, config.source_weights)
    if config.takeover_weight != 1.0:
        src = np.where(takeover_frames(frames.tag, frames.forced_positive), src * config.takeover_weight, src)
    return src.astype(np.float32)


def label_frames(config: TrainConfig, frames: LabelInputs, advantages: np.ndarray | None) -> FrameLabels:
    """Indicator and weight per frame for `config.method`: RECAP's binarised advantages, AWR's exp-weights or
    plain BC (`advantages` is None for bc)."""
    src = frame_source_weights(config, frames)
    n = len(frames.tag)
    stats: dict[str, float] = {}
    if config.method == "bc":
        indicator = np.full(n, UNCONDITIONAL, dtype=np.int64)
        weight = src
    else:
        assert advantages is not None
        adv = advantages
        stats = {
            "train/adv_mean": float(adv.mean()),
            "train/adv_std": float(adv.std()),
            "train/adv_min": float(adv.min()),
            "train/adv_max": float(adv.max()),
        }
        if config.method == "awr":
            w = awr_weights(adv, config.awr_beta, config.awr_max_weight)
            indicator = np.full(n, UNCONDITIONAL, dtype=np.int64)
            weight = src * w
            stats["train/awr_weight_mean"] = float(w.mean())
        else:
            labels = binarize_advantages(
                adv, frames.task_id, frames.forced_positive, config.advantage_quantile, frames.forced_negative
            )
            indicator, weight = labels.indicator, src
            stats["train/positive_fraction"] = labels.positive_fraction
            for tid, eps in labels.thresholds.items():
                stats[f"train/threshold/{frames.tasks[tid]}"] = eps
    return FrameLabels(torch.from_numpy(indicator).long(), torch.from_numpy(weight).float(), stats)


# ----- 6. the advantage-conditioned policy update -------------------------------------------------------------


def dropout_indicator(indicator: torch.Tensor, uniform: torch.Tensor, rate: float) -> torch.Tensor:
    """Replace the indicator by UNCONDITIONAL where `uniform` (pre-drawn U[0, 1) per frame) < `rate`, so the
    model also learns p(A | s)."""
    return torch.where(uniform < rate, torch.full_like(indicator, UNCONDITIONAL), indicator)


def drop_indicator(indicator: torch.Tensor, rate: float, generator: torch.Generator) -> torch.Tensor:
    """`dropout_indicator` with the uniforms drawn from `generator`."""
    uniform = torch.rand(indicator.shape, generator=generator, device=indicator.device)
    return dropout_indicator(indicator, uniform, rate)


def policy_indicator(
    config: TrainConfig, labels: FrameLabels, idx: torch.Tensor, uniform: torch.Tensor
) -> torch.Tensor:
    """The indicator the policy is conditioned on for frames `idx` (dropout applies to RECAP only)."""
    ind = labels.indicator[idx]
    if config.method == "recap" and config.indicator_dropout > 0:
        ind = dropout_indicator(ind, uniform, config.indicator_dropout)
    return ind


@dataclass(frozen=True)
class PolicyLossParts:
    """The policy loss of each sample, by part: the squared velocity error (`flow_error`, (B, H, A)) over the
    chunk's valid steps (`step_mask`, (B, H)), and the objects' auxiliary loss (B,), if any."""

    flow_error: torch.Tensor
    step_mask: torch.Tensor
    aux: torch.Tensor | None

    @property
    def flow(self) -> torch.Tensor:
        """(B,): the flow-matching loss, the error averaged over action dimensions, then over the valid steps."""
        return self._over_valid_steps(self.flow_error.mean(dim=-1))

    @property
    def flow_by_dim(self) -> torch.Tensor:
        """(B, A): the error per action dimension, averaged over the valid steps."""
        return self._over_valid_steps(self.flow_error)

    def _over_valid_steps(self, per_step: torch.Tensor) -> torch.Tensor:
        mask = self.step_mask if per_step.dim() == 2 else self.step_mask[..., None]
        return (per_step * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


class PolicyObjective(nn.Module):
    """Flow-matching loss per sample, conditioned on the indicator: mean over the valid steps of the chunk; plus,
    when the encoder asks for it, the weighted squared error of the objects' predicted (x, y)."""

    def __init__(self, policy: FlywheelPolicy) -> None:
        super().__init__()
        self.policy = policy

    def forward(self, batch: Batch, indicator: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        parts = self.parts(batch, indicator, noise, t)
        return parts.flow if parts.aux is None else parts.flow + parts.aux

    def parts(self, batch: Batch, indicator: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> PolicyLossParts:
        """The per-sample loss split into its parts (what `forward` sums)."""
        head = self.policy.object_head
        if head is None:
            ctx = self.policy.context(batch.state, batch.images)
        else:
            features = self.policy.encoder.camera_features(batch.images)
            ctx = self.policy.encoder(batch.state, features=features)
        error = self.policy.expert.flow_error(batch.actions, ctx, indicator, noise, t)
        if head is None:
            return PolicyLossParts(error, batch.step_mask, None)
        if batch.object_xy is None:
            raise ValueError("the object auxiliary loss needs the batch's object positions (build_frame_table)")
        known = torch.isfinite(batch.object_xy)  # NaN: the object left the workspace, nothing to predict
        xy_error = torch.where(known, (head(features.flatten(1)).float() - batch.object_xy.nan_to_num()) ** 2, 0.0)
        aux = self.policy.cfg.encoder.object_aux_weight * xy_error.sum(dim=-1)
        return PolicyLossParts(error, batch.step_mask, aux)


def weighted_policy_loss(
    per_sample: torch.Tensor, weight: torch.Tensor, local_batch: int, mean_weight: float
) -> torch.Tensor:
    """Σ w_i · loss_i / (local batch · mean dataset weight): a micro-batch's share of the step's weighted mean."""
    return (per_sample.float() * weight).sum() / (local_batch * mean_weight)
