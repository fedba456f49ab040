"""Checks `flywheel run` makes before collecting anything: the loop, its data and its policies agree on what a
policy observes."""

from __future__ import annotations

from flywheel.errors import ConfigError
from flywheel.policy.input_spec import InputSpecError, read_checkpoint_inputs
from flywheel.registry import CHAMPION
from flywheel.scheduler.phases import PhaseContext
from flywheel.store import EpisodeFilter

_SHOWN = 5


def check_observations(ctx: PhaseContext) -> None:
    """Raise `InputSpecError` when the loop's config, the stored episodes of its task or its champion disagree
    about the observations a policy consumes (cameras rendered, cameras read, image size), and `ConfigError` when
    the champion was trained for another task."""
    cfg = ctx.config
    model = cfg.train.model
    vision = model.encoder.vision != "none"
    recorded = tuple(cfg.cameras) if cfg.obs_mode == "pixels" else ()
    if vision and not recorded:
        raise InputSpecError(
            f"train.model.encoder.vision is {model.encoder.vision!r} but obs_mode is {cfg.obs_mode!r}: set "
            "obs_mode: pixels and the cameras to record (or use a pixels preset)"
        )
    read = tuple(model.inputs.cameras) if model.inputs.cameras is not None else recorded
    if vision:
        missing = [c for c in read if c not in recorded]
        if missing:
            raise InputSpecError(
                f"train.model.inputs.cameras reads {missing}, which the loop does not record ({list(recorded)})"
            )
        lacking = [
            record.id
            for record in ctx.store.list_episodes(EpisodeFilter(task=cfg.task))
            if not set(read) <= set(record.cameras)
        ]
        if lacking:
            shown = ", ".join(map(str, lacking[:_SHOWN])) + (" …" if len(lacking) > _SHOWN else "")
            raise InputSpecError(
                f"the store holds {len(lacking)} {cfg.task} episodes without the camera images {list(read)} a pixels "
                f"policy reads (episodes {shown}): use a store of pixels episodes (another --home) or delete them"
            )
    champion_id = ctx.registry.alias(CHAMPION)
    if champion_id is not None:
        champion = ctx.registry.get(champion_id)
        if champion.task != cfg.task:
            raise ConfigError(
                f"the champion (policy {champion_id}) is a {champion.task} policy, but this loop runs {cfg.task}: "
                f"run --task {champion.task}, or use another --home for {cfg.task}"
            )
        inputs = read_checkpoint_inputs(champion.checkpoint_uri)
        if inputs.cameras and (
            not set(inputs.cameras) <= set(recorded)
            or (inputs.image_size is not None and tuple(inputs.image_size) != tuple(cfg.image_size))
        ):
            raise InputSpecError(
                f"the champion (policy {champion_id}) reads {inputs.describe()}, but the loop records "
                f"{list(recorded) or 'no cameras'} at {cfg.image_size[0]}x{cfg.image_size[1]}"
            )
