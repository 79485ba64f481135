"""Layer helpers shared by the stages: spectral-norm convolutions
(``torch.nn.utils.parametrizations.spectral_norm``, kept in fp32 under autocast), a block that
leaves autocast, initialisation, padding to a multiple, and the width multiplier with its bounds."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import _SpectralNorm


@contextlib.contextmanager
def full_precision(device: torch.device) -> Iterator[None]:
    """Run the block with autocast off on ``device``'s type (a no-op where it has no autocast).
    Callers cast their inputs with :func:`at_least_float32`."""
    if torch.amp.is_autocast_available(device.type):
        with torch.autocast(device.type, enabled=False):
            yield
    else:
        yield


def at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """``x`` in float32 if it is in a narrower float type (float64 stays float64)."""
    return x.float() if x.is_floating_point() and x.element_size() < 4 else x


class Float32SpectralNorm(_SpectralNorm):
    """``torch.nn.utils.parametrizations.spectral_norm``'s parametrization with the power
    iteration and ``σ = uᵀWv`` computed in float32 even under autocast.

    CUDA's autocast runs ``torch.mv`` in bf16/fp16, so the stock parametrization would update
    ``u``/``v`` from 8-bit-mantissa products and divide every weight by a rounded ``σ``; CPU's
    autocast leaves ``mv`` alone. Outside autocast it is the stock computation, bit for bit, and
    the state-dict keys (``parametrizations.weight.original``, ``…weight.0._u``/``_v``) are the same.
    """

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        with full_precision(weight.device):
            return super().forward(at_least_float32(weight)).to(weight.dtype)


def sn(module: nn.Module, enabled: bool = True) -> nn.Module:
    """Wrap ``module``'s weight in spectral normalisation (Miyato et al. 2018) when ``enabled``:
    one power iteration per training forward, ``dim`` 1 for transposed convolutions, as
    ``torch.nn.utils.parametrizations.spectral_norm``; float32 under autocast."""
    if not enabled:
        return module
    dim = 1 if isinstance(module, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)) else 0
    parametrize.register_parametrization(module, "weight", Float32SpectralNorm(module.weight, dim=dim))
    return module


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


MAX_CHANNELS = 4096  # wider than any published inpainting network: refuse rather than allocate


def scaled_width(channels: int, width_mult: float, name: str = "width", widest: int = 1) -> int:
    """``channels × width_mult``, at least 1: how every network applies ``width_mult`` (tests and
    quick runs build the published networks narrower). A network whose widest layer is ``widest``
    times this width above :data:`MAX_CHANNELS` is refused before anything is allocated, so a
    config or a model file cannot ask for absurd sizes."""
    if not 0 < width_mult < float("inf"):
        raise ValueError(f"width_mult must be a positive number, got {width_mult}")
    width = max(1, round(channels * width_mult))
    if not (channels >= 1 and width * widest <= MAX_CHANNELS):
        raise ValueError(f"{name}={channels} × width_mult={width_mult} is out of range (1..{MAX_CHANNELS} channels)")
    return width


def check_range(name: str, value: int, low: int, high: int) -> int:
    """``value`` if ``low <= value <= high``, else a ValueError naming ``name``: structural
    arguments (depth, block counts) are bounded like widths."""
    if not low <= value <= high:
        raise ValueError(f"{name} must be in {low}..{high}, got {value}")
    return value
