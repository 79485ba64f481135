"""The discriminators an inpainting stage can train against, chosen by name in its config
(``stage/discriminator=<name>``): DeepFill v2's SN-PatchGAN (``sn_patch``, the IPN's default) and
GLCIC's global + local context discriminator (``global_local``, GLCIC's)."""

from __future__ import annotations

import torch
from torch import nn

from ipn.glcic import GlobalLocalDiscriminator
from ipn.model import SNPatchDiscriminator

DISCRIMINATORS: dict[str, type[nn.Module]] = {
    "sn_patch": SNPatchDiscriminator,
    "global_local": GlobalLocalDiscriminator,
}


def build_discriminator(config: dict | None, in_channels: int, default: str) -> nn.Module | None:
    """The discriminator ``config`` describes: its constructor's arguments and ``name`` (one of
    :data:`DISCRIMINATORS`; ``default`` when absent), taking ``in_channels`` inputs. None stays None
    (a model built for inference)."""
    if config is None:
        return None
    config = dict(config)
    name = config.pop("name", None) or default
    if name not in DISCRIMINATORS:
        raise ValueError(f"unknown discriminator {name!r}; expected one of {sorted(DISCRIMINATORS)}")
    return DISCRIMINATORS[name](in_channels=in_channels, **config)


def discriminate(discriminator: nn.Module, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``discriminator``'s logits for ``x`` ``(B, C, H, W)``; those that look at the hole
    (``takes_mask``: the global + local one crops its local patch around it) also get ``mask``
    ``(B, 1, H, W)``."""
    if getattr(discriminator, "takes_mask", False):
        return discriminator(x, mask)
    return discriminator(x)
