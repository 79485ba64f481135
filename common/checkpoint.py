"""Loading checkpoints safely: ``weights_only=True`` always, and clear errors for a missing,
corrupt, foreign or incompatible file."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch
from torch import nn

STAGE_KEY = "blindfill"


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, unsafe, or from another stage or model."""


def load_checkpoint(path, stage: str | None = None) -> dict:
    """Read a Lightning checkpoint with ``torch.load(weights_only=True)``.

    Files holding anything but tensors and plain data (pickled code) are refused. With
    ``stage``, a checkpoint written by another stage is refused too.
    """
    path = Path(str(path)).expanduser()
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else "unsafe content"
        raise CheckpointError(
            f"refusing to load {path}: it holds objects other than tensors and plain data, which could "
            f"run code when unpickled ({reason}). Only load checkpoints you trust and that blindfill wrote."
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as err:
        raise CheckpointError(f"{path} is not a readable checkpoint (truncated or not a torch file): {err}") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"{path} is not a Lightning checkpoint (no state_dict)")
    found = checkpoint.get(STAGE_KEY, {}).get("stage")
    if stage is not None and found != stage:
        raise CheckpointError(f"{path} is a checkpoint of stage {found!r}, not {stage!r}")
    return checkpoint


def load_weights(module: nn.Module, path, stage: str | None = None) -> None:
    """Load only the weights of a checkpoint into ``module`` (fine-tuning); shapes must match."""
    state = load_checkpoint(path, stage)["state_dict"]
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or mismatched:
        details = "; ".join(
            f"{what}: {', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''}"
            for what, keys in (("missing", missing), ("unexpected", unexpected), ("shape differs", mismatched))
            if keys
        )
        raise CheckpointError(f"{path} does not fit this model ({details}); were the model widths changed?")
    module.load_state_dict(state)
