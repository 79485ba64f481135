"""The named kinds of damage users meet, as one family built from :mod:`data.masks` and
:class:`data.corruption.Corruptor` (no corruption maths of its own).

Each kind is a mask generator (the hole's shape) plus a :class:`~data.corruption.Corruptor` with
one fill kind and its own border / opacity settings; ``corrupted = (1 - m)·image + m·fill`` with
the continuous mask ``m`` (1 = destroyed) that the corruptor returns. The kinds
(:data:`DAMAGE_KINDS`, in this order):

============  ==========================================  ====================================
kind          shape (at 256 px, scaled by min(H, W)/256)  fill, border, opacity
============  ==========================================  ====================================
scratch       1-4 thin free-form strokes, 1-8 px wide,    one constant: light (grey 0.85-1),
              1-5 segments each                           dark (grey 0-0.15) or a colour (1/3
                                                          each); soft edges p 0.6 (kernel 7,
                                                          2 rounds); opacity 0.6-1 p 0.3
text          rendered captions / watermarks (the         text; soft edges p 0.3 (kernel 5, 2
              Corruptor's ``text`` fill: 1-3 lines,       rounds); semi-transparent p 0.6,
              6-18 % of the height)                       opacity 0.55-0.95
pasted_photo  a box (p 0.6, sides 20-55 % of the          another photo (the donor) at the
              image) or a thick free-form blob (1-2       same place; soft border p 0.5
              strokes 24-56 px wide)                      (kernel 15, 4 rounds), opaque
noise_blotch  LaMa blobs (``medium`` or ``thick``, 1/2    gaussian or uniform noise (1/2
              each, at most 40 % of the image)            each); soft border p 0.7 (kernel
                                                          15, 4 rounds); opacity 0.6-1 p 0.6
graffiti      1-3 thick free-form strokes, 10-28 px wide  the Corruptor's graffiti paint; soft
                                                          edges p 0.3 (kernel 9, 2 rounds);
                                                          opacity 0.6-1 p 0.3
============  ==========================================  ====================================

Widths, box sizes, blob sizes and soft-border kernels scale with ``min(H, W) / 256`` (stroke
lengths with the image diagonal, text with the height), so 128-px and 256-px damage look alike.
Every opacity is above 0.5, so the core of the damage is always in the *true hole* ``m > 0.5``
that evaluation scores; soft borders add a ramp outside it.

Usage (each call takes all its randomness from ``rng``, so the same ``rng`` state gives the same
result)::

    corrupted, mask = Damage("scratch")(image, rng)             # one kind
    corrupted, mask = DamageMix()(image, rng, donor)            # a kind drawn per call
    corrupted, mask = DamageMix({"text": 1, "scratch": 2})(image, rng, donor)

Both are plain picklable callables (DataLoader workers), with the signature of a corruption that
draws its own hole: ``(image (3, H, W) in [0, 1], rng, donor (3, H, W) | None) -> (corrupted
(3, H, W), mask (1, H, W))``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from data.corruption import Corruptor
from data.masks import FreeFormMasks, LamaMasks, RectMasks, normalised_weights
from data.noise import Noise

__all__ = ["DAMAGE_KINDS", "KINDS", "REF_SIZE", "Damage", "DamageMix"]

DAMAGE_KINDS: tuple[str, ...] = ("scratch", "text", "pasted_photo", "noise_blotch", "graffiti")
# The local kinds above, and photo noise over the whole photo or a soft region (data.noise.Noise:
# its mask is soft, how much of each pixel the noise destroyed): what the model trains on.
KINDS: tuple[str, ...] = (*DAMAGE_KINDS, "noise")
REF_SIZE = 256  # the size the pixel sizes of the table above are for

# The shapes (their widths are in px at REF_SIZE and scale with the image: scale_width / LaMa's own scaling).
_SCRATCH = FreeFormMasks(
    min_num_vertex=1, max_num_vertex=6, min_width=1, max_width=8, min_strokes=1, max_strokes=4, scale_width=True
)
_BLOB = FreeFormMasks(min_width=24, max_width=56, min_strokes=1, max_strokes=2, scale_width=True)
_GRAFFITI = FreeFormMasks(min_width=10, max_width=28, min_strokes=1, max_strokes=3, scale_width=True)
_BLOTCHES = (LamaMasks("medium", max_area=0.4), LamaMasks("thick", max_area=0.4))
_TEXT_FALLBACK = RectMasks(height_frac=0.1, width_frac=0.4, max_delta_frac=0.0)  # if no glyph lands in the image
_BOX_PROB, _BOX_SIDES = 0.6, (0.2, 0.55)
_SCRATCH_TONES = ((0.85, 1.0), (0.0, 0.15), None)  # light grey, dark grey, a random colour


def _soft_kernel(pixels_at_ref: float, scale: float) -> int:
    """The odd Gaussian kernel (>= 3) of a soft border ``pixels_at_ref`` wide at :data:`REF_SIZE`."""
    k = max(3, round(pixels_at_ref * scale))
    return k if k % 2 else k + 1


class Damage:
    """One named kind of damage (see the module docstring for each kind's parameters).

    Args:
        kind: one of :data:`KINDS` (``noise``: :class:`data.noise.Noise`, all its kinds).
        donor_transform: ``pasted_photo`` flips and re-tones the donor first
            (:func:`data.corruption.transform_donor`: training, so donors cannot be learned by
            heart); False pastes it as it is (evaluation: the damage a user meets).

    Call:
        image: ``(3, H, W)`` float tensor in [0, 1].
        rng: ``numpy.random.Generator``, the only source of randomness.
        donor: ``(3, H, W)`` another photo, for ``pasted_photo``; without one that kind pastes the
            image itself rolled by half its size (photo content from elsewhere in the frame).
            Other kinds ignore it.

    Returns:
        corrupted: ``(3, H, W)`` float32 in [0, 1], bitwise equal to ``image`` where ``mask == 0``.
        mask: ``(1, H, W)`` float32 in [0, 1], continuous (1 = destroyed); ``mask > 0.5`` is never
            empty for the local kinds (:data:`DAMAGE_KINDS`); noise may be soft everywhere.
    """

    def __init__(self, kind: str, donor_transform: bool = True) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown damage kind {kind!r}; valid kinds are {', '.join(KINDS)}")
        self.kind, self.donor_transform = str(kind), bool(donor_transform)

    # -- the kinds: each returns the hole (H, W), the Corruptor's arguments and the donor

    def _scratch(self, size, scale, rng, image, donor):
        hole = _SCRATCH(*size, rng)
        tone = _SCRATCH_TONES[int(rng.integers(len(_SCRATCH_TONES)))]
        value = None if tone is None else float(rng.uniform(*tone))
        corruption = dict(
            fills={"constant": 1.0},
            fill_value=value,
            soft_prob=0.6,
            soft_kernel=_soft_kernel(7, scale),
            soft_iters=2,
            alpha_prob=0.3,
            alpha_range=(0.6, 1.0),
        )
        return hole, corruption, None

    def _text(self, size, scale, rng, image, donor):
        hole = _TEXT_FALLBACK(*size, rng)
        corruption = dict(
            fills={"text": 1.0},
            soft_prob=0.3,
            soft_kernel=_soft_kernel(5, scale),
            soft_iters=2,
            alpha_prob=0.6,
            alpha_range=(0.55, 0.95),
        )
        return hole, corruption, None

    def _pasted_photo(self, size, scale, rng, image, donor):
        if rng.random() < _BOX_PROB:
            height_frac, width_frac = rng.uniform(*_BOX_SIDES, size=2)
            hole = RectMasks(height_frac=height_frac, width_frac=width_frac, max_delta_frac=0.0)(*size, rng)
        else:
            hole = _BLOB(*size, rng)
        if donor is None:
            donor = torch.roll(image, shifts=(size[0] // 2, size[1] // 2), dims=(1, 2))
        corruption = dict(
            fills={"image": 1.0},
            soft_prob=0.5,
            soft_kernel=_soft_kernel(15, scale),
            alpha_prob=0.0,
            donor_transform=self.donor_transform,
        )
        return hole, corruption, donor

    def _noise_blotch(self, size, scale, rng, image, donor):
        hole = _BLOTCHES[int(rng.integers(len(_BLOTCHES)))](*size, rng)
        corruption = dict(
            fills={"gaussian": 0.5, "uniform": 0.5},
            soft_prob=0.7,
            soft_kernel=_soft_kernel(15, scale),
            alpha_prob=0.6,
            alpha_range=(0.6, 1.0),
        )
        return hole, corruption, None

    def _graffiti(self, size, scale, rng, image, donor):
        hole = _GRAFFITI(*size, rng)
        corruption = dict(
            fills={"graffiti": 1.0},
            soft_prob=0.3,
            soft_kernel=_soft_kernel(9, scale),
            soft_iters=2,
            alpha_prob=0.3,
            alpha_range=(0.6, 1.0),
        )
        return hole, corruption, None

    # -- the call

    def __call__(
        self, image: torch.Tensor, rng: np.random.Generator, donor: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not torch.is_tensor(image) or image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"image must be a (3, H, W) tensor, got {getattr(image, 'shape', type(image))}")
        if donor is not None and tuple(donor.shape) != tuple(image.shape):
            raise ValueError(f"donor must have the image's shape {tuple(image.shape)}, got {tuple(donor.shape)}")
        if self.kind == "noise":
            return Noise()(image, rng)
        size = (int(image.shape[1]), int(image.shape[2]))
        image = image.detach().to("cpu", torch.float32)
        hole, corruption, donor = getattr(self, f"_{self.kind}")(size, min(size) / REF_SIZE, rng, image, donor)
        hole = torch.from_numpy(np.ascontiguousarray(hole, dtype=np.float32))[None]
        return Corruptor(**corruption)(image, hole, rng, donor)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.kind!r})"


class DamageMix:
    """One damage kind per call, drawn from ``rng`` with probabilities ``probs``, then applied as
    :class:`Damage` does (same call and returns).

    Args:
        probs: kind -> weight (>= 0, finite, not all 0; normalised to probabilities); kinds not
            named are never drawn. None: every kind of :data:`KINDS` equally.
        donor_transform: see :class:`Damage`.
    """

    def __init__(self, probs: Mapping[str, float] | None = None, donor_transform: bool = True) -> None:
        if probs is None:
            probs = dict.fromkeys(KINDS, 1.0)
        self.probs = normalised_weights(probs, KINDS, "damage kind")
        self.damages = {k: Damage(k, donor_transform) for k in self.probs}
        self._kinds = tuple(self.probs)
        self._p = np.array([self.probs[k] for k in self._kinds])

    def choose(self, rng: np.random.Generator) -> str:
        """The kind of the next call's damage (one draw from ``rng``)."""
        return self._kinds[int(rng.choice(len(self._kinds), p=self._p))]

    def __call__(
        self, image: torch.Tensor, rng: np.random.Generator, donor: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.damages[self.choose(rng)](image, rng, donor)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v:.3g}' for k, v in self.probs.items())})"
