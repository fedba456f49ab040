"""The live stream's wire protocol: what the browser sends, how it is checked and numbered, what it gets back.

Client → server, JSON text messages (at most `MAX_MESSAGE_BYTES`):

- `{"type": "hello", "token": "..."}` first, within `HELLO_TIMEOUT_S`: the live session's stream token.
- `{"type": "drive", "seq": n, "left": [x, y, z], "right": [x, y, z]}`: the velocity held now for each arm's end
  effector, each component in [-1, 1] (a fraction of `LiveConfig.drive_speed_mps`); all zeros = released.
- `{"type": "gripper", "seq": n, "arm": "left", "open": true}`
- `{"type": "command", "seq": n, "name": "take_over" | "hand_back" | "expert_assist" | "play" | "pause"}`
- `{"type": "mode", "seq": n, "mode": "realtime" | "step_wait"}`

Every input carries `seq`, 1, 2, 3... per connection. `SeqTracker` refuses a number already used (never applied
twice) and reports a jump (inputs that never arrived are named, never dropped silently).

Server → client: binary frames (`pack_frame`: magic, header length, JSON header, the cameras' JPEGs) and JSON text
messages: `ack` (seq, the step it took effect at), `refused` (seq or null, why), `gap` (the seqs that never came).
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from flywheel.errors import describe_validation_error
from flywheel.live.errors import LiveSessionError

MAX_MESSAGE_BYTES = 4096
HELLO_TIMEOUT_S = 10.0
FRAME_MAGIC = b"FWL1"
ARMS = ("left", "right")
COMMANDS = ("take_over", "hand_back", "expert_assist", "play", "pause")
DRIVE_MODES = ("realtime", "step_wait")
DriveMode = Literal["realtime", "step_wait"]
Vector = tuple[float, float, float]


class ProtocolError(LiveSessionError):
    """A stream message that is malformed, out of range or out of order (refused, never applied)."""


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Hello(_Message):
    type: Literal["hello"]
    token: str = Field(min_length=16, max_length=128)


class _Input(_Message):
    seq: int = Field(ge=1, le=2**53)


class Drive(_Input):
    type: Literal["drive"]
    left: Vector = (0.0, 0.0, 0.0)
    right: Vector = (0.0, 0.0, 0.0)

    @field_validator("left", "right")
    @classmethod
    def _in_range(cls, v: Vector) -> Vector:
        if not all(math.isfinite(c) and -1.0 <= c <= 1.0 for c in v):
            raise ValueError(f"each velocity component must be a number within [-1, 1], got {list(v)}")
        return v

    def velocity(self, arm: str) -> Vector:
        return self.left if arm == "left" else self.right

    @property
    def held(self) -> bool:
        return any(self.left) or any(self.right)


class Gripper(_Input):
    type: Literal["gripper"]
    arm: Literal["left", "right"]
    open: bool


class Command(_Input):
    type: Literal["command"]
    name: Literal["take_over", "hand_back", "expert_assist", "play", "pause"]


class Mode(_Input):
    type: Literal["mode"]
    mode: DriveMode


Input = Annotated[Drive | Gripper | Command | Mode, Field(discriminator="type")]
_INPUT = TypeAdapter(Input)


def _decode(raw: str | bytes) -> Any:
    if isinstance(raw, bytes | bytearray):
        raise ProtocolError("inputs are JSON text messages, not binary")
    if len(raw.encode()) > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"message longer than {MAX_MESSAGE_BYTES} bytes")
    try:
        return json.loads(raw, parse_constant=lambda c: float(c))  # NaN/Infinity parse, then fail the range check
    except json.JSONDecodeError as exc:
        raise ProtocolError(f"not JSON: {exc.msg} at character {exc.pos}") from None


def parse_hello(raw: str | bytes) -> Hello:
    data = _decode(raw)
    try:
        return Hello.model_validate(data)
    except ValidationError as exc:
        why = describe_validation_error(exc)
        raise ProtocolError(f"the first message must be hello with the stream token: {why}") from None


def parse_input(raw: str | bytes) -> Drive | Gripper | Command | Mode:
    """A checked input message, or ProtocolError naming what is wrong."""
    data = _decode(raw)
    try:
        return _INPUT.validate_python(data)
    except ValidationError as exc:
        raise ProtocolError(f"refused input: {describe_validation_error(exc)}") from None


def seq_of(raw: str | bytes) -> int | None:
    """The `seq` a refused message claimed, if it is readable (for the refusal's answer)."""
    try:
        value = json.loads(raw).get("seq")
    except (ValueError, AttributeError, TypeError):
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass
class SeqTracker:
    """Per connection: inputs numbered 1, 2, 3...; a number at or below the last accepted one is refused."""

    last: int = 0

    def accept(self, seq: int) -> tuple[int, int] | None:
        """Accept `seq`; returns the (first, last) missing seqs when it skips some, else None."""
        if seq <= self.last:
            raise ProtocolError(f"seq {seq} already used (last accepted {self.last}): not applied again")
        gap = (self.last + 1, seq - 1) if seq > self.last + 1 else None
        self.last = seq
        return gap


def pack_frame(header: dict[str, Any], images: list[tuple[str, bytes]]) -> bytes:
    """One binary frame: FRAME_MAGIC, uint32 header length, JSON header (with `cameras`: [[name, nbytes]...]),
    then the JPEGs in that order."""
    head = json.dumps({**header, "cameras": [[name, len(data)] for name, data in images]}).encode()
    return b"".join([FRAME_MAGIC, struct.pack("<I", len(head)), head, *(data for _, data in images)])


def unpack_frame(frame: bytes) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The inverse of `pack_frame` (tests and tools)."""
    if frame[:4] != FRAME_MAGIC:
        raise ProtocolError("not a live frame")
    (size,) = struct.unpack("<I", frame[4:8])
    header = json.loads(frame[8 : 8 + size])
    images, at = {}, 8 + size
    for name, length in header["cameras"]:
        images[name] = frame[at : at + length]
        at += length
    return header, images
