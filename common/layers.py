"""Spectral-norm convolution helpers (``torch.nn.utils.parametrizations.spectral_norm``)."""

from __future__ import annotations

from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


def sn(module: nn.Module, enabled: bool = True) -> nn.Module:
    """Wrap ``module``'s weight in spectral normalisation (Miyato et al. 2018) when ``enabled``."""
    return spectral_norm(module) if enabled else module


def sn_conv2d(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
              dilation: int = 1, use_sn: bool = True) -> nn.Module:
    """A Conv2d with spectral norm; the bias is dropped when SN is on, as in EdgeConnect."""
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation, bias=not use_sn)
    return sn(conv, use_sn)


def sn_conv_transpose2d(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                        padding: int = 0, use_sn: bool = True) -> nn.Module:
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
