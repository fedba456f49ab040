"""What a policy consumes: which named entries of the environment's state vector (`sim.env.state_layout`), which
cameras at which size. Saved with every checkpoint (`io.json`), so the checkpoint is the only answer to "which
observations does this policy need"; `flywheel.policy.io.PolicyIO` applies it. Reading it needs no network:
`read_checkpoint_inputs` loads just the documents.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from flywheel.errors import FlywheelError

IO_DOCUMENT = "io"
"""Checkpoint document name (`io.json`) holding the `InputSpec`."""


class InputSpecError(FlywheelError, ValueError):
    """An observation, env or dataset does not provide what a policy's input spec asks for."""


@dataclass(frozen=True)
class StateEntry:
    """A named slice [start, stop) of the environment's state vector."""

    name: str
    start: int
    stop: int

    @property
    def size(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class InputSpec:
    """What a policy reads: state entries of an env state vector of `env_state_dim`, cameras at `image_size`.

    `privileged` is True when an entry is not proprioception (an object pose read from the physics): such a policy
    cannot run on a real robot and its results are an upper bound. `image_size` None (checkpoints written before
    input specs existed) accepts any size.
    """

    task: str
    env_state_dim: int
    state_entries: tuple[StateEntry, ...]
    action_dim: int
    cameras: tuple[str, ...] = ()
    image_size: tuple[int, int] | None = None
    privileged: bool = True

    def __post_init__(self) -> None:
        if not self.state_entries:
            raise InputSpecError("input spec: at least one state entry is needed")
        for entry in self.state_entries:
            if not 0 <= entry.start < entry.stop <= self.env_state_dim:
                raise InputSpecError(
                    f"input spec: state entry {entry.name!r} [{entry.start}, {entry.stop}) lies outside the env "
                    f"state of size {self.env_state_dim}"
                )

    @classmethod
    def from_layout(
        cls,
        task: str,
        layout: Mapping[str, slice],
        entries: Sequence[str] | None,
        action_dim: int,
        *,
        proprioception: Sequence[str],
        cameras: Sequence[str] = (),
        image_size: tuple[int, int] | None = None,
    ) -> InputSpec:
        """A spec reading `entries` (None: every entry of `layout`) of an env whose state vector has `layout`."""
        names = list(layout) if entries is None else list(entries)
        unknown = [n for n in names if n not in layout]
        if unknown:
            raise InputSpecError(f"state entries {unknown} are not in {task}'s state layout {list(layout)}")
        chosen = tuple(StateEntry(n, int(layout[n].start), int(layout[n].stop)) for n in names)
        return cls(
            task=task,
            env_state_dim=max(int(s.stop) for s in layout.values()),
            state_entries=chosen,
            action_dim=action_dim,
            cameras=tuple(cameras),
            image_size=tuple(image_size) if cameras and image_size is not None else None,  # type: ignore[arg-type]
            privileged=any(n not in proprioception for n in names),
        )

    @property
    def state_dim(self) -> int:
        return sum(e.size for e in self.state_entries)

    @property
    def state_names(self) -> tuple[str, ...]:
        return tuple(e.name for e in self.state_entries)

    @property
    def state_index(self) -> np.ndarray:
        """Indices into the env state vector, in the policy's input order."""
        return np.concatenate([np.arange(e.start, e.stop) for e in self.state_entries])

    @property
    def obs_mode(self) -> str:
        """The env observation mode that renders what this policy reads."""
        return "pixels" if self.cameras else "state"

    def describe(self) -> str:
        names = "the whole state vector" if self.state_names == ("state",) else "+".join(self.state_names)
        state = names + (" (privileged)" if self.privileged else "")
        if not self.cameras:
            return f"state {state}"
        size = f" at {self.image_size[0]}x{self.image_size[1]}" if self.image_size else ""
        return f"state {state}, cameras {', '.join(self.cameras)}{size}"

    def select_state(self, states: np.ndarray, where: str = "observation") -> np.ndarray:
        """The policy's state inputs (..., state_dim) from env state vectors (..., env_state_dim)."""
        arr = np.asarray(states, dtype=np.float32)
        if arr.shape[-1] != self.env_state_dim:
            raise InputSpecError(
                f"{where}: state vector of size {arr.shape[-1]}, but this policy reads {self.task}'s env state of "
                f"size {self.env_state_dim} ({self.describe()})"
            )
        return arr[..., self.state_index]

    def reads_like(self, other: InputSpec) -> bool:
        """Whether both specs read the same state indices and cameras (entry names may differ: checkpoints written
        before input specs existed name their whole state `state`)."""
        sizes_known = self.image_size is not None and other.image_size is not None
        return (
            self.env_state_dim == other.env_state_dim
            and np.array_equal(self.state_index, other.state_index)
            and self.cameras == other.cameras
            and (not sizes_known or self.image_size == other.image_size)
        )

    def check_images(self, images: Mapping[str, np.ndarray], where: str) -> None:
        """Raise unless `images` has every camera of the spec at its size (frames (..., H, W, 3) uint8)."""
        missing = [c for c in self.cameras if c not in images]
        if missing:
            raise InputSpecError(f"{where} lacks camera images {missing} that this policy reads ({self.describe()})")
        for cam in self.cameras:
            shape = tuple(np.shape(images[cam])[-3:])
            if self.image_size is None:
                continue
            if shape != (*self.image_size, 3):
                raise InputSpecError(
                    f"{where}: camera {cam!r} images are {shape[0]}x{shape[1]}, but this policy reads "
                    f"{self.image_size[0]}x{self.image_size[1]}"  # type: ignore[index]
                )

    def check_env(self, layout: Mapping[str, slice], cameras: Sequence[str], image_size: tuple[int, int]) -> None:
        """Raise unless an env with this state `layout`, rendering `cameras` at `image_size`, feeds this policy."""
        for entry in self.state_entries:
            got = layout.get(entry.name)
            if got is None or (got.start, got.stop) != (entry.start, entry.stop):
                raise InputSpecError(
                    f"the env's state layout {list(layout)} does not have this policy's entry {entry.name!r} at "
                    f"[{entry.start}, {entry.stop}): it was trained on another task or env version"
                )
        missing = [c for c in self.cameras if c not in cameras]
        if missing:
            raise InputSpecError(
                f"this policy reads cameras {list(self.cameras)}, but the env renders {list(cameras) or 'none'}: "
                f"render {missing} (pixels mode) at {self.image_size}"
            )
        if self.cameras and self.image_size is not None and tuple(image_size) != self.image_size:
            raise InputSpecError(
                f"this policy reads {self.image_size[0]}x{self.image_size[1]} images, the env renders "  # type: ignore[index]
                f"{image_size[0]}x{image_size[1]}"
            )

    def to_document(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "env_state_dim": self.env_state_dim,
            "state_entries": [[e.name, e.start, e.stop] for e in self.state_entries],
            "action_dim": self.action_dim,
            "cameras": list(self.cameras),
            "image_size": list(self.image_size) if self.image_size else None,
            "privileged": self.privileged,
        }

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> InputSpec:
        try:
            size = doc.get("image_size")
            return cls(
                task=str(doc["task"]),
                env_state_dim=int(doc["env_state_dim"]),
                state_entries=tuple(StateEntry(str(n), int(a), int(b)) for n, a, b in doc["state_entries"]),
                action_dim=int(doc["action_dim"]),
                cameras=tuple(str(c) for c in doc.get("cameras", ())),
                image_size=(int(size[0]), int(size[1])) if size else None,
                privileged=bool(doc.get("privileged", True)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InputSpecError(f"input spec document is malformed: {exc}") from None

    @classmethod
    def whole_state(cls, task: str, state_dim: int, action_dim: int, cameras: Sequence[str] = ()) -> InputSpec:
        """The spec of a checkpoint written before input specs existed: the whole state vector (privileged)."""
        return cls(task, state_dim, (StateEntry("state", 0, state_dim),), action_dim, tuple(cameras), None, True)


def read_checkpoint_inputs(directory: str | Path) -> InputSpec:
    """The input spec of a checkpoint directory without loading its networks (the loaders verify the files)."""
    directory = Path(directory)
    io_doc = directory / f"{IO_DOCUMENT}.json"
    try:
        if io_doc.is_file():
            return InputSpec.from_document(json.loads(io_doc.read_text()))
        spec = json.loads((directory / "model.json").read_text())["spec"]
    except (OSError, ValueError, KeyError) as exc:
        raise InputSpecError(f"checkpoint {directory}: cannot read what the policy consumes ({exc})") from None
    return InputSpec.whole_state(spec["task"], int(spec["state_dim"]), int(spec["action_dim"]), spec["cameras"])
