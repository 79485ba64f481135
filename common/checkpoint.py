"""The one loader: model files in, checked modules out.

A *model file* is a Lightning checkpoint (``.ckpt``, written by training) or a safetensors file
(``.safetensors``, written by ``pipeline.export``). Either holds a *kind* (a stage name, ``joint``
or ``pipeline``), the constructor arguments of what it holds (its *config*), the weights, and
the blindfill format version. :func:`read_model_file` reads both the same way:

- ``.ckpt`` with ``torch.load(weights_only=True)``: a file holding pickled code is refused;
- ``.safetensors`` holds no code by construction; its config is JSON in the metadata.

:func:`build` makes a module from a config after checking it: known argument names, values of
the annotated types (a typed structured config derived from the constructor, hydra-zen's
``builds``), and the networks' own bounds (a width no network has is refused before anything is
allocated). :func:`fit_state` loads weights after checking names and shapes. Every failure is a
:class:`~common.errors.CheckpointError` with the file's name, in one style.
"""

from __future__ import annotations

import inspect
import io
import json
import os
import pickle
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from hydra_zen import builds
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException
from torch import nn

from common.errors import CheckpointError

FORMAT_VERSION = 2
MAX_PARAMETERS = 500_000_000  # the full-width joint model with its discriminators has ~60 M
MAX_MODEL_BYTES = 8 * 2**30  # a full-width joint checkpoint with optimizer state is ~0.7 GB
RECORD_KEY = "blindfill"
SAFETENSORS_FORMAT = "blindfill"


def stage_record(kind: str) -> dict:
    """What a Lightning checkpoint of ``kind`` carries besides Lightning's own keys."""
    return {RECORD_KEY: {"stage": kind, "format": FORMAT_VERSION}}


@dataclass
class ModelFile:
    """A model file's contents: ``kind`` (stage name, ``joint`` or ``pipeline``), ``config``
    (constructor arguments), ``state`` (weights) and, for a Lightning checkpoint, the whole
    ``checkpoint`` dict (optimizer and loop state for resuming)."""

    path: Path
    kind: str
    config: dict
    state: dict[str, torch.Tensor]
    checkpoint: dict | None = None


def _first_line(err: BaseException) -> str:
    """A reader's error, cut to its first line (torch's weights_only errors run to paragraphs)."""
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:200]


def _check_version(path: Path, version: Any) -> None:
    if version == FORMAT_VERSION:
        return
    if isinstance(version, int) and version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} was written by a newer blindfill (format {version}; this one reads {FORMAT_VERSION}): upgrade"
        )
    raise CheckpointError(
        f"{path} was written by an older blindfill (format {version or 1}; this one reads {FORMAT_VERSION}): "
        "train again, or load and export it with the blindfill release that wrote it"
    )


def _read_ckpt(path: Path) -> ModelFile:
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else "unsafe content"
        raise CheckpointError(
            f"refusing to load {path}: it holds objects other than tensors and plain data, which could "
            f"run code when unpickled ({reason}). Only load checkpoints you trust and that blindfill wrote."
        ) from None
    except Exception as err:
        raise CheckpointError(
            f"{path} is not a readable checkpoint (truncated or not a torch file): {_first_line(err)}"
        ) from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise CheckpointError(f"{path} is not a Lightning checkpoint (no state_dict)")
    record = checkpoint.get(RECORD_KEY)
    if not isinstance(record, dict) or not isinstance(record.get("stage"), str):
        raise CheckpointError(f"{path} is not a blindfill checkpoint (no '{RECORD_KEY}' record)")
    _check_version(path, record.get("format"))
    config = checkpoint.get("hyper_parameters", {})
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: its hyper_parameters are not a mapping")
    return ModelFile(path, record["stage"], dict(config), checkpoint["state_dict"], checkpoint)


def _read_safetensors(path: Path) -> ModelFile:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not iterable)
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{path} is not a readable safetensors file: {err}") from None
    if metadata.get("format") != SAFETENSORS_FORMAT:
        raise CheckpointError(f"{path} is not a blindfill model (format {metadata.get('format')!r})")
    try:
        version = int(metadata.get("version", "1"))
        config = json.loads(metadata["config"])
        kind = metadata["kind"]
    except (KeyError, ValueError) as err:
        raise CheckpointError(f"{path}: unreadable blindfill metadata ({err})") from None
    _check_version(path, version)
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: its config is not a mapping")
    return ModelFile(path, kind, config, state)


def read_model_file(path, kind: str | tuple[str, ...] | None = None) -> ModelFile:
    """Read a ``.ckpt`` or ``.safetensors`` model file; with ``kind``, refuse a file of another kind."""
    path = Path(str(path)).expanduser()
    if not path.is_file():
        raise CheckpointError(f"model file {path} does not exist")
    if path.stat().st_size > MAX_MODEL_BYTES:
        raise CheckpointError(f"{path} is larger than {MAX_MODEL_BYTES // 2**30} GiB: not a blindfill model")
    model = _read_safetensors(path) if path.suffix == ".safetensors" else _read_ckpt(path)
    kinds = (kind,) if isinstance(kind, str) else kind
    if kinds is not None and model.kind not in kinds:
        raise CheckpointError(f"{path} holds a {model.kind!r} model, not {' or '.join(map(repr, kinds))}")
    return model


def write_model_file(path, kind: str, config: Mapping, state: Mapping[str, torch.Tensor]) -> Path:
    """Write ``state`` and ``config`` (JSON) as a safetensors model file of ``kind``."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    metadata = {
        "format": SAFETENSORS_FORMAT,
        "version": str(FORMAT_VERSION),
        "kind": kind,
        "config": json.dumps(config),
    }
    save_file(tensors, str(path), metadata=metadata)
    os.chmod(path, 0o644)  # safetensors writes 0600, which hides a shared model from the user's other accounts
    return path


# -- building and filling modules -----------------------------------------------------------------


def arguments_schema(cls: Callable, **options) -> Any:
    """The typed structured config of ``cls``'s constructor: its arguments, their annotated types
    and their defaults, as written once in the code (hydra-zen ``builds``; ``options`` go to it,
    e.g. ``zen_exclude``). The configs in ``conf/`` are made with it too."""
    return builds(cls, populate_full_signature=True, **options)


def check_arguments(cls: Callable, arguments: Mapping, where: str) -> dict:
    """``arguments`` checked against ``cls``'s constructor: no unknown name, every value of its
    annotated type (converted where OmegaConf converts, e.g. 1 -> 1.0). Returns them as plain data."""
    names = set(inspect.signature(cls).parameters) - {"self", "args", "kwargs"}
    unknown = sorted(set(arguments) - names)
    if unknown:
        raise CheckpointError(f"{where}: unknown {cls.__name__} argument(s) {unknown}")
    try:
        typed = OmegaConf.merge(OmegaConf.structured(arguments_schema(cls)), dict(arguments))
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or "?"
        raise CheckpointError(f"{where}: {cls.__name__} argument {key}: {str(err).splitlines()[0]}") from None
    checked = OmegaConf.to_container(typed, resolve=True)
    checked.pop("_target_", None)
    return {k: v for k, v in checked.items() if k in arguments}


def build(cls: Callable[..., nn.Module], arguments: Mapping, where: str, inference: bool = True) -> nn.Module:
    """``cls(**arguments)`` after :func:`check_arguments`; with ``inference``, the training-only
    parts (``cls.training_only``) are not built."""
    arguments = dict(arguments)
    if inference:
        parameters = inspect.signature(cls).parameters
        arguments.update({name: None for name in getattr(cls, "training_only", ()) if name in parameters})
    arguments = check_arguments(cls, arguments, where)
    try:
        check_size(cls, arguments, where)
        return cls(**arguments)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{where}: cannot build {cls.__name__}: {err}") from None


def check_size(cls: Callable[..., nn.Module], arguments: Mapping, where: str) -> None:
    """Refuse arguments that would build more than :data:`MAX_PARAMETERS` parameters, found by
    building the module on PyTorch's ``meta`` device first (shapes only: nothing is allocated)."""
    try:
        with torch.device("meta"):
            probe = cls(**arguments)
    except (TypeError, ValueError):
        raise
    except Exception:  # a part that cannot be built on meta: the real build decides
        return
    count = sum(p.numel() for p in probe.parameters())
    if count > MAX_PARAMETERS:
        raise CheckpointError(
            f"{where}: {cls.__name__} with these arguments would have {count / 1e6:,.0f} M parameters "
            f"(more than the {MAX_PARAMETERS / 1e6:,.0f} M any blindfill model has): refused"
        )


def fit_state(
    module: nn.Module, state: Mapping[str, torch.Tensor], where: str, ignore: Callable[[str], bool] = lambda k: False
) -> None:
    """Load ``state`` into ``module`` after checking it: every weight present with its shape, and
    no other weight except those ``ignore(key)`` accepts (parts the module was built without)."""
    own = module.state_dict()
    state = {k: v for k, v in state.items() if k in own or not ignore(k)}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or mismatched:
        details = "; ".join(
            f"{what}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
            for what, keys in (("missing", missing), ("unexpected", unexpected), ("shape differs", mismatched))
            if keys
        )
        raise CheckpointError(f"{where}: the weights do not fit the model ({details})")
    module.load_state_dict(state)


def training_only_key(module_class) -> Callable[[str], bool]:
    """Whether a state key belongs to a training-only part of ``module_class`` (its first name)."""
    parts = set(getattr(module_class, "training_only", ()))
    return lambda key: key.split(".", 1)[0] in parts


def load_module(path, cls, inference: bool = True) -> nn.Module:
    """The module of class ``cls`` (``cls.stage_name`` is the kind the file must hold) rebuilt from
    a model file: checked config, checked weights; for ``inference`` without its training-only
    parts, in eval mode and frozen."""
    model = read_model_file(path, cls.stage_name)
    module = build(cls, model.config, str(model.path), inference)
    fit_state(module, model.state, str(model.path), training_only_key(cls) if inference else lambda k: False)
    return module.eval().requires_grad_(False) if inference else module


def load_weights(module: nn.Module, path) -> None:
    """Load only the weights of a model file of the module's kind into ``module`` (fine-tuning)."""
    model = read_model_file(path, module.stage_name)
    fit_state(module, model.state, f"{model.path} (were the widths changed?)")


MAX_WEIGHTS_BYTES = 4 * 2**30  # far above any backbone this project reads (VGG-19: 548 MB)


def _weights_path(path, what: str, max_bytes: int) -> Path:
    path = Path(str(path)).expanduser()
    if not path.is_file():
        raise CheckpointError(f"{what} {path} does not exist (blindfill never downloads weights)")
    size = path.stat().st_size
    if size > max_bytes:
        raise CheckpointError(f"{what} {path} is {size / 2**30:.1f} GiB, more than any weights file read here")
    return path


def _load_plain(source, path: Path, what: str) -> Any:
    try:
        return torch.load(source, map_location="cpu", weights_only=True)
    except Exception as err:  # any failure: not a plain weights file, so never unpickled in full
        raise CheckpointError(
            f"{what} {path} is not a plain weights file and was not loaded: {_first_line(err)}"
        ) from None


def load_weights_file(path, what: str, max_bytes: int = MAX_WEIGHTS_BYTES) -> Any:
    """A weights file named by a user (``what`` names it, e.g. ``VGG-19 weights``), loaded with
    ``torch.load(weights_only=True)``: tensors and plain containers only, so no code in the file
    can run. Raises :class:`CheckpointError` with one line."""
    path = _weights_path(path, what, max_bytes)
    return _load_plain(path, path, what)


def checked_weights_bytes(path, what: str, max_bytes: int = MAX_WEIGHTS_BYTES) -> bytes:
    """The bytes of a weights file named by a user, read once and checked as
    :func:`load_weights_file` checks it. A library that insists on loading weights itself, with
    full pickle, is then handed a private copy of exactly these bytes (never the path, which could
    change in between). Raises :class:`CheckpointError` with one line."""
    path = _weights_path(path, what, max_bytes)
    data = path.read_bytes()
    _load_plain(io.BytesIO(data), path, what)
    return data
