"""The discriminators a GAN stage can train against, chosen by name in its config
(``stage/discriminator=<name>``): EdgeConnect's 70×70 PatchGAN (``patch``, the EPN's default,
``epn/model.py``), DeepFill v2's SN-PatchGAN (``sn_patch``, the IPN's, ``ipn/model.py``) and
GLCIC's global + local context discriminator (``global_local``, GLCIC's, ``pipeline/methods/glcic/model.py``).

Each network registers itself where it is defined (:func:`register_discriminator`), so a stage
can train against another stage's discriminator without importing that stage."""

from __future__ import annotations

import torch
from torch import nn

DISCRIMINATORS: dict[str, type[nn.Module]] = {}


def register_discriminator(name: str):
    """Class decorator: the discriminator is the choice ``name`` of :data:`DISCRIMINATORS`."""

    def register(cls: type[nn.Module]) -> type[nn.Module]:
        if DISCRIMINATORS.setdefault(name, cls) is not cls:
            raise ValueError(f"discriminator {name!r} is registered twice")
        return cls

    return register


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


def discriminate(
    discriminator: nn.Module, x: torch.Tensor, mask: torch.Tensor, features: bool = False
) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
    """``discriminator``'s logits for ``x`` ``(B, C, H, W)``; those that look at the hole
    (``takes_mask``: the global + local one crops its local patch around it) also get ``mask``
    ``(B, 1, H, W)``.

    ``features``: ``(logits, features)``, the intermediate activations EdgeConnect's
    feature-matching loss compares: those the discriminator returns itself (its PatchGAN:
    ``conv1`` … ``conv5``), else the output of each of its (Leaky)ReLUs, in the order they run."""
    seen: list[torch.Tensor] = []
    hooks = []
    if features:
        for module in discriminator.modules():
            if isinstance(module, (nn.ReLU, nn.LeakyReLU)):
                hooks.append(module.register_forward_hook(lambda _m, _args, out: seen.append(out)))
    try:
        out = discriminator(x, mask) if getattr(discriminator, "takes_mask", False) else discriminator(x)
    finally:
        for hook in hooks:
            hook.remove()
    logits, own = out if isinstance(out, tuple) else (out, None)
    if not features:
        return logits
    return logits, own if own is not None else seen
