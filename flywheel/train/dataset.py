"""The training frame table: normalised state inputs, action chunks, chunked Bellman targets, tags, controllers in
RAM; camera frames stay in the episodes' arrays (memory maps of the store's files) and are gathered per batch."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from flywheel.policy.io import PolicyIO
from flywheel.policy.recap import (
    LabelInputs,
    RewardConfig,
    chunk_targets,
    failed_correction_frames,
    frame_rewards,
    pre_takeover_frames,
    steps_before_control_changes,
)
from flywheel.train.data import TrainingEpisode, _text
from flywheel.vocab import CONTROLLER_CODES, ControllerKind
from flywheel.vocab.frames import gather_rows


@dataclass
class Batch:
    state: torch.Tensor  # (B, S) normalised
    images: dict[str, torch.Tensor] | None  # cam → (B, 3, H, W) float in [0, 255]
    actions: torch.Tensor  # (B, H, A) normalised
    step_mask: torch.Tensor  # (B, H) 1 on the steps the flow loss counts (inside the episode; see build_frame_table)
    chunk_return: torch.Tensor  # (B,)
    bootstrap: torch.Tensor  # (B,)
    next_state: torch.Tensor
    next_images: dict[str, torch.Tensor] | None
    critic_state: torch.Tensor | None = None  # (B, S_full) normalised: a privileged critic's input
    next_critic_state: torch.Tensor | None = None
    object_xy: torch.Tensor | None = None  # (B, 2 * objects) `sim.env.object_xy_targets`: NaN = no target


@dataclass(frozen=True)
class EpisodeImages:
    """One camera's frames across episodes, left where they are (memory maps of episode files, or arrays)."""

    per_episode: list[np.ndarray]
    offsets: np.ndarray  # (E + 1,) first global frame of each episode, then the total

    def gather(self, idx: torch.Tensor) -> torch.Tensor:
        """(B, H, W, 3) uint8 frames by global frame index."""
        return torch.from_numpy(gather_rows(self.per_episode, self.offsets, idx.numpy()))


@dataclass
class FrameTable:
    """All training frames, flattened across episodes (frame i belongs to episode `episode_of[i]`)."""

    state: torch.Tensor
    action: torch.Tensor
    chunk_idx: torch.Tensor
    step_mask: torch.Tensor
    chunk_return: torch.Tensor
    next_idx: torch.Tensor
    bootstrap: torch.Tensor
    forced_positive: np.ndarray
    forced_negative: np.ndarray
    task_id: np.ndarray
    tag: np.ndarray
    episode_of: np.ndarray
    tasks: list[str]
    images: dict[str, EpisodeImages] = field(default_factory=dict)
    critic_state: torch.Tensor | None = None
    object_xy: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.state.shape[0])

    def label_inputs(self) -> LabelInputs:
        """The per-frame facts that labelling and loss weights read."""
        return LabelInputs(self.tag, self.task_id, self.tasks, self.forced_positive, self.forced_negative)

    def _images(self, idx: torch.Tensor, device: torch.device) -> dict[str, torch.Tensor] | None:
        if not self.images:
            return None
        return {c: v.gather(idx).to(device).permute(0, 3, 1, 2).float() for c, v in self.images.items()}

    def batch(self, idx: torch.Tensor, device: torch.device) -> Batch:
        nxt = self.next_idx[idx]
        return Batch(
            state=self.state[idx].to(device),
            images=self._images(idx, device),
            actions=self.action[self.chunk_idx[idx]].to(device),
            step_mask=self.step_mask[idx].to(device),
            chunk_return=self.chunk_return[idx].to(device),
            bootstrap=self.bootstrap[idx].to(device),
            next_state=self.state[nxt].to(device),
            next_images=self._images(nxt, device),
            critic_state=None if self.critic_state is None else self.critic_state[idx].to(device),
            next_critic_state=None if self.critic_state is None else self.critic_state[nxt].to(device),
            object_xy=None if self.object_xy is None else self.object_xy[idx].to(device),
        )


def build_frame_table(
    episodes: list[TrainingEpisode],
    io: PolicyIO,
    chunk: int,
    gamma: float,
    reward: RewardConfig,
    pre_takeover_steps: int = 0,
    pre_takeover_since_progress: bool = False,
    failed_corrections_positive: bool = True,
    critic_io: PolicyIO | None = None,
    object_targets: bool = False,
    mask_control_changes: bool = False,
) -> FrameTable:
    """Flatten episodes into the policy's inputs (`io`: the state entries and cameras it reads, normalised);
    action chunks past an episode's end repeat its last action and are masked. `critic_io`, for a privileged
    critic, selects and normalises the critic's own state inputs. `object_targets` adds every frame's objects'
    (x, y) from the recorded physics state (`sim.env.object_xy_targets`: standardised by the task's spawn boxes, NaN
    where an object left the workspace), for the auxiliary loss; the policy's inputs are unchanged.
    `mask_control_changes` also masks each chunk's steps from the first change of controller on
    (`steps_before_control_changes`): the flow loss then counts no other controller's actions as the frame's own,
    while the model's input chunk and the critic's chunk return stay the executed ones.

    `forced_negative` marks the last `pre_takeover_steps` policy frames before each takeover by a person or the
    expert (with `pre_takeover_since_progress`, none before the policy's last stage progress): the takeover is the
    operator's verdict that the policy was failing there. `forced_positive` marks every
    frame a person or the expert drove; with `failed_corrections_positive` False, not those of takeovers that
    repaired nothing (`failed_correction_frames`), which the critic's advantage labels instead.
    """
    states, actions, chunk_idx, masks, rets, nexts, boots = [], [], [], [], [], [], []
    critic_states: list[np.ndarray] = []
    forced, negative, task_ids, tags, episode_of = [], [], [], [], []
    tasks = sorted({e.meta.task for e in episodes})
    offset = 0
    policy_code = CONTROLLER_CODES[ControllerKind.POLICY]
    for ep_i, ep in enumerate(episodes):
        f = ep.frames
        t_len = len(f)
        steps = np.arange(t_len)[:, None] + np.arange(chunk)[None]
        clamped = np.minimum(steps, t_len - 1)
        chunk_idx.append(clamped + offset)
        inside = steps < t_len
        if mask_control_changes:
            inside &= steps_before_control_changes(f.controller[clamped])
        masks.append(inside.astype(np.float32))
        success = bool(ep.meta.success)
        r = frame_rewards(f.reward, success, reward)
        ret, nxt, boot = chunk_targets(r, gamma, chunk, truncated=reward.truncates(success), step_cost=reward.step_cost)
        rets.append(ret)
        nexts.append(nxt + offset)
        boots.append(boot)
        states.append(io.spec.select_state(f.state, f"episode {ep.meta.id}"))
        if critic_io is not None:
            critic_states.append(critic_io.spec.select_state(f.state, f"episode {ep.meta.id}"))
        actions.append(f.action)
        policy_acting = f.controller == policy_code
        driven = ~policy_acting
        if not failed_corrections_positive:
            driven &= ~failed_correction_frames(policy_acting, f.reward, success)
        forced.append(driven)
        negative.append(
            pre_takeover_frames(policy_acting, pre_takeover_steps, f.reward if pre_takeover_since_progress else None)
        )
        task_ids.append(np.full(t_len, tasks.index(ep.meta.task)))
        tags.append(np.full(t_len, _text(ep.meta.tag), dtype=object))
        episode_of.append(np.full(t_len, ep_i))
        offset += t_len
    state = io.norm.state.normalize(torch.from_numpy(np.concatenate(states)))
    action = io.normalize_actions(np.concatenate(actions))
    offsets = np.concatenate([[0], np.cumsum([len(e.frames) for e in episodes])]).astype(np.int64)
    images = {c: EpisodeImages([e.frames.images[c] for e in episodes], offsets) for c in io.spec.cameras}
    return FrameTable(
        object_xy=_object_targets(episodes) if object_targets else None,
        state=state.float(),
        action=action.float(),
        chunk_idx=torch.from_numpy(np.concatenate(chunk_idx)).long(),
        step_mask=torch.from_numpy(np.concatenate(masks)),
        chunk_return=torch.from_numpy(np.concatenate(rets)),
        next_idx=torch.from_numpy(np.concatenate(nexts)).long(),
        bootstrap=torch.from_numpy(np.concatenate(boots)),
        forced_positive=np.concatenate(forced),
        forced_negative=np.concatenate(negative),
        task_id=np.concatenate(task_ids),
        tag=np.concatenate(tags),
        episode_of=np.concatenate(episode_of),
        tasks=tasks,
        images=images,
        critic_state=None
        if critic_io is None
        else critic_io.norm.state.normalize(torch.from_numpy(np.concatenate(critic_states))).float(),
    )


def _object_targets(episodes: list[TrainingEpisode]) -> torch.Tensor:
    """Every frame's objects' (x, y) targets (`sim.env.object_xy_targets`): (frames, 2 * objects)."""
    from sim.env import object_xy_targets

    tasks = {e.meta.task for e in episodes}
    if len(tasks) != 1:
        raise ValueError(f"the object auxiliary loss needs episodes of one task, got {sorted(tasks)}")
    task = tasks.pop()
    return torch.from_numpy(np.concatenate([object_xy_targets(task, e.frames.state) for e in episodes]))
