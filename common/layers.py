"""Layer helpers shared by the stages: spectral-norm convolutions
(``torch.nn.utils.parametrizations.spectral_norm``), initialisation, and padding to a multiple."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


def sn(module: nn.Module, enabled: bool = True) -> nn.Module:
    """Wrap ``module``'s weight in spectral normalisation (Miyato et al. 2018) when ``enabled``."""
    return spectral_norm(module) if enabled else module


def sn_conv2d(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    stride: int = 1,
    padding: int = 0,
    dilation: int = 1,
    use_sn: bool = True,
) -> nn.Module:
    """A Conv2d with spectral norm; the bias is dropped when SN is on, as in EdgeConnect."""
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation, bias=not use_sn)
    return sn(conv, use_sn)


def sn_conv_transpose2d(
    in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0, use_sn: bool = True
) -> nn.Module:
    conv = nn.ConvTranspose2d(in_channels, out_channels, kernel_size, stride, padding, bias=not use_sn)
    return sn(conv, use_sn)


def init_normal(module: nn.Module, std: float = 0.02) -> None:
    """EdgeConnect / DCGAN initialisation: conv weights N(0, std), biases 0, norm weights N(1, std)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            weight = m.parametrizations.weight.original if hasattr(m, "parametrizations") else m.weight
            nn.init.normal_(weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)) and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, std)
            nn.init.zeros_(m.bias)


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def pad_to_multiple(
    x: torch.Tensor, multiple: int, min_size: int = 1
) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """Pad ``x`` ``(B, C, H, W)`` on all sides to a multiple of ``multiple`` that is >= ``min_size``.

    Reflect padding where every pad is smaller than its side (reflection needs that), else
    replicate (tiny inputs). Returns the padded tensor and the ``(left, right, top, bottom)`` pads.
    """
    h, w = x.shape[-2:]
    target_h = _round_up(max(h, min_size), multiple)
    target_w = _round_up(max(w, min_size), multiple)
    top, left = (target_h - h) // 2, (target_w - w) // 2
    pads = (left, target_w - w - left, top, target_h - h - top)
    if not any(pads):
        return x, pads
    reflectable = max(pads[:2]) < w and max(pads[2:]) < h
    return F.pad(x, pads, mode="reflect" if reflectable else "replicate"), pads


def hard_mask(mask: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """A continuous mask ``(B, 1, H, W)`` -> {0, 1} (1 = destroyed) at ``threshold``, same dtype.
    Every place that needs a yes/no hole (attention, edge cutting) thresholds with this."""
    return (mask > threshold).to(mask.dtype)


def scale_widths(widths: dict | None, mult: float, **defaults: int) -> dict:
    """Copy of ``widths`` (constructor arguments) with each channel count named in ``defaults``
    (taken from ``widths`` or the default) multiplied by ``mult``, at least 1. The stages use it
    for ``model_width``: tests and smoke runs build the same networks tiny."""
    scaled = dict(widths or {})
    for key, default in defaults.items():
        scaled[key] = max(1, round(scaled.get(key, default) * mult))
    return scaled
