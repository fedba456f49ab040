"""ONNX export of the whole inference path, checked against PyTorch with ONNX Runtime.

The graph maps (state, noise[, image per camera]) → actions: state normalisation, observation encoder, K Euler
steps of the flow-matching expert with the runner's indicator (positive for RECAP policies) and guidance, action
unnormalisation. The noise is a graph input, so a caller (and the parity check) controls the sampling exactly.
Inputs: `state` float32 (B, S), `noise` float32 (B, H, A), `image_<camera>` uint8 (B, height, width, 3); output
`actions` float32 (B, H, A) in environment units. The batch is dynamic; the image size is fixed at export.

Exported with the TorchScript exporter (`dynamo=False`): the dynamo exporter needs `onnxscript`, which is not a
dependency. PyTorch's fused transformer fast path has no ONNX form, so it is off while tracing; adaptive average
pooling becomes an exact fixed-size matrix product (the exporter only handles evenly dividing sizes).
"""

from __future__ import annotations

import copy
import os
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from flywheel.errors import FlywheelError
from flywheel.policy.loading import LoadedPolicy
from flywheel.policy.model import FlywheelPolicy
from flywheel.policy.runner import PolicyRunner
from flywheel.vocab import DEFAULT_IMAGE_SIZE

if TYPE_CHECKING:
    import onnxruntime

OPSET = 17


class OnnxExportError(FlywheelError):
    """A policy cannot be exported to ONNX, or the exported graph disagrees with PyTorch."""


@dataclass(frozen=True)
class SamplingSettings:
    """How the runner samples: Euler steps, indicator, classifier-free guidance β (None = unguided)."""

    num_steps: int
    indicator: int
    cfg_beta: float | None

    @classmethod
    def of(cls, loaded: LoadedPolicy) -> SamplingSettings:
        runner = PolicyRunner(loaded)
        return cls(runner.num_steps, runner.indicator, runner.cfg_beta)


@dataclass(frozen=True)
class ParityReport:
    max_abs_diff: float
    observations: int
    tolerance: float

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= self.tolerance


def _pool_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """(n_out, n_in) averaging weights of PyTorch's adaptive pooling: bin i spans [⌊i·n/m⌋, ⌈(i+1)·n/m⌉)."""
    weights = torch.zeros(n_out, n_in)
    for i in range(n_out):
        start, end = (i * n_in) // n_out, -(-((i + 1) * n_in) // n_out)
        weights[i, start:end] = 1.0 / (end - start)
    return weights


class MatrixAdaptivePool(nn.Module):
    """`AdaptiveAvgPool2d` for one fixed input size as two matrix products (exact, exportable)."""

    def __init__(self, in_hw: tuple[int, int], out_hw: tuple[int, int]) -> None:
        super().__init__()
        self.register_buffer("rows", _pool_matrix(in_hw[0], out_hw[0]))
        self.register_buffer("cols", _pool_matrix(in_hw[1], out_hw[1]).t().contiguous())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.matmul(torch.matmul(self.rows, x), self.cols)


def _fix_adaptive_pools(policy: FlywheelPolicy, state_dim: int, image_size: tuple[int, int]) -> None:
    """Replace every `AdaptiveAvgPool2d` by its fixed-size matrix form for `image_size` inputs (in place)."""
    pools = {name: m for name, m in policy.named_modules() if isinstance(m, nn.AdaptiveAvgPool2d)}
    if not pools:
        return
    seen: dict[str, tuple[int, int]] = {}

    def record(name: str) -> Callable[..., None]:
        def hook(_module: nn.Module, args: tuple[torch.Tensor, ...], _out: torch.Tensor) -> None:
            seen[name] = (int(args[0].shape[-2]), int(args[0].shape[-1]))

        return hook

    hooks = [m.register_forward_hook(record(name)) for name, m in pools.items()]
    try:
        with torch.no_grad():
            images = {c: torch.zeros(1, 3, *image_size) for c in policy.encoder.cameras}
            policy.encoder(torch.zeros(1, state_dim), images)
    finally:
        for hook in hooks:
            hook.remove()
    for name, module in pools.items():
        out = module.output_size
        out_hw = (out, out) if isinstance(out, int) else tuple(out)
        parent_name, _, attr = name.rpartition(".")
        parent = policy.get_submodule(parent_name) if parent_name else policy
        setattr(parent, attr, MatrixAdaptivePool(seen[name], out_hw))  # type: ignore[arg-type]


class InferenceGraph(nn.Module):
    """select the spec's state entries → normalise → encode → K denoising steps → unnormalise, with the noise as
    an input (what gets exported). The graph takes the env's whole state vector, like `PolicyRunner`."""

    def __init__(self, loaded: LoadedPolicy, settings: SamplingSettings, image_size: tuple[int, int]) -> None:
        super().__init__()
        if loaded.policy.backbone is not None:
            raise OnnxExportError(
                "ONNX export covers state and CNN-pixel policies; this one uses a pretrained backbone"
            )
        self.policy = copy.deepcopy(loaded.policy).cpu().eval()
        self.cameras = list(self.policy.encoder.cameras)
        self.settings = settings
        if self.cameras:
            _fix_adaptive_pools(self.policy, loaded.spec.state_dim, image_size)
        self.norm = loaded.io.norm  # the same normalisers as PyTorch inference; traced into graph constants
        self.register_buffer("state_index", torch.from_numpy(loaded.input_spec.state_index).long())

    def forward(self, state: torch.Tensor, noise: torch.Tensor, *images: torch.Tensor) -> torch.Tensor:
        s = self.norm.state.normalize(state.index_select(1, self.state_index))
        pixels = {c: img.permute(0, 3, 1, 2).float() for c, img in zip(self.cameras, images, strict=True)} or None
        st = self.settings
        chunk = self.policy.sample_chunk(s, pixels, noise, st.num_steps, indicator=st.indicator, cfg_beta=st.cfg_beta)
        return self.norm.action.denormalize(chunk)


def input_names(cameras: list[str]) -> list[str]:
    return ["state", "noise", *(f"image_{c}" for c in cameras)]


def export_onnx(loaded: LoadedPolicy, out: Path, image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE) -> Path:
    """Write the inference graph of `loaded` to `out` (atomically) and validate it with `onnx.checker`."""
    import onnx

    settings = SamplingSettings.of(loaded)
    graph = InferenceGraph(loaded, settings, image_size)
    spec, chunk = loaded.spec, loaded.model_config.expert.chunk
    args = (
        torch.zeros(1, loaded.input_spec.env_state_dim),
        torch.zeros(1, chunk, spec.action_dim),
        *(torch.zeros(1, *image_size, 3, dtype=torch.uint8) for _ in graph.cameras),
    )
    names = input_names(graph.cameras)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message=r".*legacy TorchScript-based ONNX export", category=DeprecationWarning
            )
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            torch.onnx.export(
                graph,
                args,
                str(tmp),
                dynamo=False,
                input_names=names,
                output_names=["actions"],
                opset_version=OPSET,
                dynamic_axes={name: {0: "batch"} for name in [*names, "actions"]},
            )
        onnx.checker.check_model(str(tmp), full_check=True)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def reference_actions(
    loaded: LoadedPolicy, state: np.ndarray, noise: np.ndarray, images: dict[str, np.ndarray] | None = None
) -> np.ndarray:
    """PyTorch actions (B, H, A) for a batch, computed the way `PolicyRunner.act_chunk` does, with given noise."""
    settings = SamplingSettings.of(loaded)
    device = next(loaded.policy.parameters()).device
    s = loaded.io.state_inputs(state).to(device)
    pixels = loaded.io.image_inputs(images or {})
    if pixels is not None:
        pixels = {c: v.to(device) for c, v in pixels.items()}
    chunk = loaded.policy.sample_chunk(
        s,
        pixels,
        torch.from_numpy(np.asarray(noise, np.float32)).to(device),
        settings.num_steps,
        indicator=settings.indicator,
        cfg_beta=settings.cfg_beta,
    )
    return loaded.io.actions(chunk)


def random_observations(
    loaded: LoadedPolicy, n: int, image_size: tuple[int, int], seed: int = 0
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """`n` random (env state, noise, images): the policy's state entries around the training distribution, the
    entries it does not read random too, uniform uint8 pixels."""
    rng = np.random.default_rng(seed)
    spec, chunk = loaded.spec, loaded.model_config.expert.chunk
    norm = loaded.norm.state
    io_spec = loaded.input_spec
    state = rng.standard_normal((n, io_spec.env_state_dim)).astype(np.float32)
    state[:, io_spec.state_index] = norm.shift + norm.scale * rng.standard_normal((n, spec.state_dim))
    noise = rng.standard_normal((n, chunk, spec.action_dim)).astype(np.float32)
    cams = loaded.policy.encoder.cameras
    images = {c: rng.integers(0, 256, (n, *image_size, 3), dtype=np.uint8) for c in cams}
    return state, noise, images


def onnx_session(path: Path, threads: int = 1) -> onnxruntime.InferenceSession:
    """A CPU ONNX Runtime session with `threads` intra-op threads."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def check_parity(
    loaded: LoadedPolicy,
    path: Path,
    observations: int = 8,
    image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE,
    tolerance: float = 1e-4,
    seed: int = 0,
) -> ParityReport:
    """Max |ONNX Runtime − PyTorch| over random observations, one at a time and as one batch."""
    session = onnx_session(path)
    state, noise, images = random_observations(loaded, observations, image_size, seed)
    cams = list(loaded.policy.encoder.cameras)
    names = input_names(cams)

    def feeds(rows: slice) -> dict[str, np.ndarray]:
        return dict(zip(names, [state[rows], noise[rows], *(images[c][rows] for c in cams)], strict=True))

    expected = reference_actions(loaded, state, noise, images)
    worst = float(np.abs(session.run(None, feeds(slice(None)))[0] - expected).max())
    for i in range(observations):
        got = session.run(None, feeds(slice(i, i + 1)))[0]
        worst = max(worst, float(np.abs(got - expected[i : i + 1]).max()))
    return ParityReport(worst, observations, tolerance)
