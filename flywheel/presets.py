"""Named, validated presets: the loop's and the trainer's settings by name (`flywheel presets` lists them).

A preset is a set of overrides laid over the schema defaults of `FlywheelConfig` (whose `train` is a
`TrainConfig`); those defaults are the quickstart, so `quickstart` overrides nothing and every other preset
says only how it differs. `flywheel run --preset NAME` (or `preset: NAME` in its YAML) uses the whole config;
`flywheel train --preset NAME` uses its `train` section (with no champion to warm-start from, see `bootstrap`).
A YAML file given as well is laid over the preset, key by key.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from pydantic import ValidationError

from flywheel.errors import ConfigError, describe_validation_error
from flywheel.scheduler.config import FlywheelConfig
from flywheel.train.config import TrainConfig
from flywheel.vocab import DEFAULT_IMAGE_SIZE

DEFAULT_PRESET = "quickstart"


class UnknownPresetError(ConfigError):
    """No preset has that name."""


@dataclass(frozen=True)
class Preset:
    name: str
    summary: str
    overrides: Mapping[str, Any]
    bootstrap: bool = False  # `train` is the no-champion training (`FlywheelConfig.bootstrap_train`)

    def flywheel(self, overrides: Mapping[str, Any] | None = None, source: str = "") -> FlywheelConfig:
        """This preset's loop config with `overrides` (nested dicts, like the YAML) laid over it, validated."""
        return _validated(FlywheelConfig, deep_merge(self._base(), overrides or {}), self.name, "flywheel", source)

    def train(self, overrides: Mapping[str, Any] | None = None, source: str = "") -> TrainConfig:
        """This preset's training config with `overrides` (TrainConfig keys) laid over it, validated."""
        base = self._base().get("train", {})
        return _validated(TrainConfig, deep_merge(base, overrides or {}), self.name, "training", source)

    def _base(self) -> dict[str, Any]:
        config = _validated(FlywheelConfig, dict(self.overrides), self.name, "flywheel", "")
        if self.bootstrap:
            config = config.model_copy(update={"train": config.bootstrap_train()})
        return config.model_dump(mode="json")


def _validated(model: type[Any], data: dict[str, Any], preset: str, what: str, source: str) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        where = f"{source}: " if source else ""
        raise ConfigError(
            f"{where}invalid {what} config (preset {preset!r}): {describe_validation_error(exc)}"
        ) from None


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `over` laid on it: nested mappings merge key by key, anything else is replaced."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


_TINY_MODEL: dict[str, Any] = {
    "encoder": {"hidden_dim": 32},
    "expert": {"chunk": 8, "dim": 32, "layers": 1, "heads": 2},
    "critic": {"hidden_dim": 32},
    "inference": {"num_steps": 2, "execute_steps": 8},
}

PIXELS_MODEL: dict[str, Any] = {
    "inputs": {"state": ["qpos", "qvel"], "cameras": ["top"]},
    "encoder": {"vision": "cnn", "cnn_pool": "spatial_softmax", "augment_shift": 4},
}

PIXELS_AUX_MODEL: dict[str, Any] = deep_merge(
    PIXELS_MODEL,
    {"inputs": {"cameras": ["table"]}, "encoder": {"cnn_downsample": 8, "object_aux_weight": 1.0}},
)
"""`pixels` seen from the top-down `table` camera, a 12x16 keypoint map, and the sim-only auxiliary loss that teaches
the CNN where the objects are (training only: the policy still reads images and joints alone)."""

PIXELS_GATES: dict[str, Any] = {"success_floor": 0.0}
"""A first camera policy is weak; with no floor it becomes the champion the operator corrects (takeovers keep the
collected episodes whole), and every later candidate must still beat or match it on the paired gates."""

PIXELS_LOOP: dict[str, Any] = {
    "obs_mode": "pixels",
    "image_size": list(DEFAULT_IMAGE_SIZE),
    "envs_per_worker": 8,
    "bootstrap_steps": 3000,
    "eval": {"episodes": 100, "workers": 2, "fresh_episodes": 50, "gates": PIXELS_GATES},
}
"""What every pixels preset's loop shares: rendered episodes, a longer bootstrap, and its evaluation and gates."""

PIXELS_AUX: dict[str, Any] = {
    "cameras": ["table"],
    "train": {"cpu_threads": 2, "cpu_bf16": True, "model": PIXELS_AUX_MODEL},
}
"""`pixels-aux` over the pixels loop: the `table` camera, the object auxiliary loss, bf16."""

PIXELS_AUX_LONG: dict[str, Any] = {
    "bootstrap_steps": 8000,
    "bootstrap_lr": 3e-4,
    "train": {"lr": 1e-4, "failed_corrections_positive": False},
}
"""`pixels-aux-long` over `pixels-aux`: a bootstrap as long as the baselines' BC, then gentle fine-tunes."""

PRESETS: Mapping[str, Preset] = MappingProxyType(
    {
        p.name: p
        for p in (
            Preset(
                "quickstart",
                "what `flywheel run` and `flywheel train` use by default: state observations, five iterations "
                "within 30 minutes on 2 CPU cores",
                {},
            ),
            Preset(
                "bootstrap",
                "the quickstart's first policy: trained from demos alone for `bootstrap_steps` policy steps "
                "(iteration 0 of `flywheel run`; `flywheel train --preset bootstrap` on a fresh store)",
                {},
                bootstrap=True,
            ),
            Preset(
                "tiny",
                "a tiny debug model and loop (seconds per iteration, lenient gates) for tests and smoke runs; "
                "never a useful policy",
                {
                    "demos": 3,
                    "episodes_per_iteration": 2,
                    "workers": 1,
                    "max_steps": 120,
                    "heartbeat_seconds": 1,
                    "bootstrap_steps": None,
                    "train": {
                        "steps": 20,
                        "critic_steps": 10,
                        "batch_size": 16,
                        "warmup_steps": 2,
                        "checkpoint_every": 5,
                        "log_every": 10,
                        "wandb": False,
                        "cpu_threads": 1,
                        "model": _TINY_MODEL,
                    },
                    "eval": {
                        "episodes": 2,
                        "workers": 1,
                        "max_steps": 120,
                        "fresh_episodes": 2,
                        "gates": {"success_floor": 0.0, "non_inferiority_margin": 1.0, "latency_p95_budget_ms": 10000},
                    },
                },
            ),
            Preset(
                "pixels",
                "the vision flywheel: policies read the top camera (96x128) and the joints only, never an object "
                "pose; a small CNN with keypoints and random-shift augmentation, trained on 2 CPU threads; no "
                "success floor (the first camera policy is weak and the operator corrects it)",
                deep_merge(PIXELS_LOOP, {"cameras": ["top"], "train": {"cpu_threads": 2, "model": PIXELS_MODEL}}),
            ),
            Preset(
                "pixels-aux",
                "`pixels` from the top-down `table` camera with a finer keypoint map and a sim-only training loss "
                "that predicts the objects' positions from the image features (the policy still reads images and "
                "joints only); bf16 training on CPU",
                deep_merge(PIXELS_LOOP, PIXELS_AUX),
            ),
            Preset(
                "pixels-aux-long",
                "`pixels-aux` with an 8000-step bootstrap, gentler fine-tunes (lr 1e-4) and the takeovers that "
                "raised no stage left to the critic: the recipe of the README's Insertion results; the bootstrap "
                "alone takes a little over an hour on 2 CPU threads",
                deep_merge(deep_merge(PIXELS_LOOP, PIXELS_AUX), PIXELS_AUX_LONG),
            ),
        )
    }
)


def get_preset(name: str) -> Preset:
    """The preset called `name`; an unknown name is an error suggesting the closest known one."""
    try:
        return PRESETS[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(PRESETS), n=1, cutoff=0.5)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise UnknownPresetError(
            f"unknown preset {name!r}; {hint}known presets: {', '.join(PRESETS)} (`flywheel presets` lists them)"
        ) from None


def flywheel_config(name: str, overrides: Mapping[str, Any] | None = None, source: str = "") -> FlywheelConfig:
    """The loop config of preset `name` with `overrides` laid over it."""
    return get_preset(name).flywheel(overrides, source)


def train_config(name: str, overrides: Mapping[str, Any] | None = None, source: str = "") -> TrainConfig:
    """The training config of preset `name` with `overrides` (TrainConfig keys) laid over it."""
    return get_preset(name).train(overrides, source)
