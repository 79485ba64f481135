"""The ONNX Runtime backend (``backend=onnxruntime``): the MPN's U-Net and the EPN's generator run
as ONNX graphs on the CPU; everything around them (their inputs, the mask rule, Canny, the IPN,
the composite) stays the PyTorch code every other path runs.

Only the generators are exported, not the stage modules, so the exported graph is a plain
convolution stack: :class:`OnnxGenerator` pads its input to the network's multiple exactly as the
PyTorch generator does (:func:`~common.layers.pad_to_multiple`) and crops the result back, so one
graph serves every size. The IPN stays in PyTorch: its contextual attention computes which
patches to match from the data (``torch.unique`` over wrapped neighbours), which ``torch.export``
cannot trace (:data:`EXPORTED`).

Graphs are found next to the model file (``<model>.mpn.onnx``, written by ``pipeline.export
onnx=true``; the shipped model has them) or exported in memory when the process starts (about 10 s
per stage here; nothing is written). Each graph records the SHA-256 of the weights it was exported
from (:func:`fingerprint`); a graph whose record does not match the loaded weights is not used.
ONNX files are protobuf data: loading one runs no code.
"""

from __future__ import annotations

import hashlib
import io
import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from common.errors import CheckpointError, ConfigError
from common.layers import pad_to_multiple

log = logging.getLogger(__name__)

EXPORTED = ("mpn", "epn")  # the stages whose generator runs in ONNX Runtime
FINGERPRINT_KEY = "blindfill_weights_sha256"
EXAMPLE_SIZE = 256  # the export's example side: a multiple of every generator's multiple


def _require_onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise ConfigError(
            "backend=onnxruntime needs the onnx extra: pip install 'blindfill[onnx]' (onnxruntime, onnx, onnxscript)"
        ) from None
    return onnxruntime


def padding_rule(name: str, generator: nn.Module) -> tuple[int, int]:
    """``(multiple, min_size)`` the stage's generator pads its input to (as its ``forward`` does)."""
    if name == "mpn":
        return 2**generator.depth, 2 ** (generator.depth + 1)
    return generator.multiple, generator.min_size


def fingerprint(generator: nn.Module) -> str:
    """SHA-256 over the generator's class name and its state (names, dtypes, shapes, bytes)."""
    digest = hashlib.sha256(type(generator).__name__.encode())
    for key, value in sorted(generator.state_dict().items()):
        tensor = value.detach().cpu().contiguous()
        digest.update(f"{key}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def export_generator(name: str, generator: nn.Module) -> bytes:
    """The stage's generator as an ONNX model (bytes): dynamic batch, height and width (used at
    multiples of its padding rule), float32, its weight fingerprint in the metadata."""
    import onnx

    side = max(EXAMPLE_SIZE, padding_rule(name, generator)[1])
    channels = next(m for m in generator.modules() if isinstance(m, nn.Conv2d)).in_channels
    example = torch.rand(1, channels, side, side)
    auto = torch.export.Dim.AUTO
    for chatty in ("onnxscript", "onnx_ir", "torch.onnx"):  # per-initializer INFO lines
        logging.getLogger(chatty).setLevel(logging.WARNING)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            generator.eval(), (example,), input_names=["x"], output_names=["y"],
            dynamic_shapes=({0: auto, 2: auto, 3: auto},), dynamo=True, optimize=True, verbose=False,
        )  # fmt: skip
    model = program.model_proto
    onnx.helper.set_model_props(model, {FINGERPRINT_KEY: fingerprint(generator)})
    buffer = io.BytesIO()
    onnx.save_model(model, buffer)
    return buffer.getvalue()


def graph_path(model_path: Path, name: str) -> Path:
    """Where a model file's graph for stage ``name`` lives: ``<model>.<name>.onnx`` beside it."""
    return model_path.with_name(f"{model_path.stem}.{name}.onnx")


class OnnxGenerator(nn.Module):
    """A stage's generator run by ONNX Runtime: ``(B, C, H, W) -> (B, K, H, W)`` float32, any
    ``H, W`` (padded to the network's multiple and cropped back, as the PyTorch generator does).
    CPU tensors in and out; no parameters."""

    def __init__(self, name: str, model: bytes, multiple: int, min_size: int, threads: int):
        super().__init__()
        ort = _require_onnxruntime()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        # On a CPU shared with PyTorch, spinning workers steal the cores its kernels run on.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.name, self.multiple, self.min_size = name, multiple, min_size
        self.session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu":
            raise ConfigError("backend=onnxruntime runs on the CPU (device=cpu)")
        h, w = x.shape[-2:]
        padded, (left, _, top, _) = pad_to_multiple(x.float(), self.multiple, self.min_size)
        (y,) = self.session.run(None, {"x": np.ascontiguousarray(padded.numpy())})
        return torch.from_numpy(y)[..., top : top + h, left : left + w]

    def extra_repr(self) -> str:
        return f"{self.name}, multiple={self.multiple}, min_size={self.min_size}"


def _read_graph(path: Path, expected: str) -> bytes | None:
    """The graph at ``path`` if it is there, readable and made from the weights ``expected``."""
    import onnx

    if not path.is_file():
        return None
    try:
        data = path.read_bytes()
        props = {p.key: p.value for p in onnx.load_model_from_string(data).metadata_props}
    except Exception as err:  # a damaged file: not used, and said why
        log.warning("%s is not a readable ONNX graph (%s); exporting in memory instead", path.name, err)
        return None
    if props.get(FINGERPRINT_KEY) != expected:
        log.warning("%s was exported from other weights; exporting in memory instead", path.name)
        return None
    return data


def onnx_generators(stages: dict[str, nn.Module], model_path: Path | None, threads: int) -> dict[str, OnnxGenerator]:
    """An :class:`OnnxGenerator` for each stage of :data:`EXPORTED` in ``stages`` (name -> stage
    module): the graph beside ``model_path`` when it matches the weights, else exported now."""
    _require_onnxruntime()
    generators = {}
    for name in EXPORTED:
        generator = stages[name].generator
        data = _read_graph(graph_path(model_path, name), fingerprint(generator)) if model_path else None
        if data is None:
            log.info("exporting the %s to ONNX (about 10 s)", name.upper())
            try:
                data = export_generator(name, generator)
            except ImportError:
                raise ConfigError(
                    "exporting to ONNX needs onnx and onnxscript: pip install 'blindfill[onnx]'"
                ) from None
            except Exception as err:
                raise CheckpointError(f"could not export the {name.upper()} to ONNX: {err}") from None
        generators[name] = OnnxGenerator(name, data, *padding_rule(name, generator), threads)
    return generators


def write_graphs(stages: dict[str, nn.Module], model_path: Path) -> list[Path]:
    """Export each stage of :data:`EXPORTED` beside ``model_path`` (``pipeline.export onnx=true``)."""
    written = []
    for name in EXPORTED:
        path = graph_path(model_path, name)
        path.write_bytes(export_generator(name, stages[name].generator))
        written.append(path)
    return written
