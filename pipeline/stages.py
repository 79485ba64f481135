"""The stage modules by name, and loading a trained stage from its checkpoint."""

from __future__ import annotations

import importlib

from common.checkpoint import CheckpointError, load_checkpoint
from common.module import StageModule

STAGE_CLASSES = {
    "mpn": "mpn.module.MPNModule",
    "epn": "epn.module.EPNModule",
    "ipn": "ipn.module.IPNModule",
}


def stage_class(name: str) -> type[StageModule]:
    if name not in STAGE_CLASSES:
        raise CheckpointError(f"unknown stage {name!r}; expected one of {sorted(STAGE_CLASSES)}")
    module_name, class_name = STAGE_CLASSES[name].rsplit(".", 1)
    return getattr(importlib.import_module(module_name), class_name)


def load_stage(name: str, path, frozen: bool = True) -> StageModule:
    """Rebuild stage ``name`` from the hyper-parameters in its checkpoint and load its weights
    (``weights_only=True``). ``frozen``: eval mode, no gradients."""
    checkpoint = load_checkpoint(path, name)
    module = stage_class(name)(**checkpoint.get("hyper_parameters", {}))
    missing, unexpected = module.load_state_dict(checkpoint["state_dict"], strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{path} does not fit a {name} model (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    return module.eval().requires_grad_(False) if frozen else module
