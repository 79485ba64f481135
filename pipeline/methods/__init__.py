"""The other systems, beside our three stages, one folder each; ``method=<name>`` picks one.

- Trained systems that fill a hole in the IPN's place (``uses_edges = False``: they take
  ``(corrupted, mask)``): ``pconv/`` (Liu et al.'s partial-convolution U-Net), ``glcic/`` (Iizuka
  et al.'s GLCIC and the parallel CNN + attention network, trained by the same stage), ``dcgan/``
  (Yeh et al.'s latent search on a DCGAN), ``cifar_gan/`` (the CIFAR-scale GAN). Each stage module
  registers itself where it is defined (:func:`register_fill_stage`), as the discriminators do
  (:mod:`common.discriminators`); :func:`fill_stages` finds them by importing each folder's
  ``module.py``, so a new system is a new folder (and its YAML in ``conf/stage/``).
- ``classical/``: the non-learned baselines (Telea, Navier–Stokes, biharmonic, exemplar,
  PatchMatch), ``fill(image, mask) -> image`` (:data:`~pipeline.methods.classical.BASELINES`).

These may use ``common``, ``data`` and the stages' layers; no stage imports them.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil

from torch import nn

_FILL_STAGES: dict[str, type[nn.Module]] = {}


def register_fill_stage(*names: str):
    """Class decorator: the stage module is ``method=<name>`` for each of ``names``."""

    def register(cls: type[nn.Module]) -> type[nn.Module]:
        for name in names:
            if _FILL_STAGES.setdefault(name, cls) is not cls:
                raise ValueError(f"fill stage {name!r} is registered twice")
        return cls

    return register


def fill_stages() -> dict[str, type[nn.Module]]:
    """Every registered fill stage by method name (importing each system's ``module.py`` once)."""
    for package in pkgutil.iter_modules(__path__):
        if package.ispkg and importlib.util.find_spec(f"{__name__}.{package.name}.module") is not None:
            importlib.import_module(f"{__name__}.{package.name}.module")
    return dict(sorted(_FILL_STAGES.items()))
