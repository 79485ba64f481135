"""Reading images of any common kind into ``(3, H, W)`` float tensors in [0, 1].

Pillow decodes (it knows more modes than any other reader: palette, CMYK, 16-bit, 1-bit,
EXIF orientation); every failure becomes an :class:`ImageReadError` that names the file.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from common.errors import BlindfillError


def _readable_extensions() -> tuple[str, ...]:
    """Every file extension Pillow reads (its registered formats with a real reader, not its stubs),
    HEIC/HEIF included through pillow-heif: no list of our own to fall behind."""
    try:
        import pillow_heif

        pillow_heif.register_heif_opener()
    except ImportError:  # an install without it reads everything else
        pass
    Image.init()

    def reads(fmt: str) -> bool:
        factory = Image.OPEN[fmt][0]
        return not (isinstance(factory, type) and issubclass(factory, ImageFile.StubImageFile))

    return tuple(sorted(ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN and reads(fmt)))


IMAGE_EXTENSIONS = _readable_extensions()

# Pillow's own decompression-bomb guard stays on; this is its limit, stated here so the
# message can say it.
MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 178_956_970


class ImageReadError(BlindfillError):
    """An image file could not be read; the message names the file and the reason."""


def is_image_file(path: str | os.PathLike) -> bool:
    return str(path).lower().endswith(IMAGE_EXTENSIONS)


SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def _to_rgb_array(img: Image.Image) -> np.ndarray:
    """Any Pillow mode -> ``(H, W, 3)`` uint8, or uint16 for 16-bit and float images.
    Transparency is composited on white."""
    if img.mode in SIXTEEN_BIT_MODES:
        arr = np.asarray(img)
        if img.mode == "I" and arr.max(initial=0) <= 255:  # 32-bit integer holding 8-bit values
            gray = np.clip(arr, 0, 255).astype(np.uint8)
        else:
            gray = np.clip(arr, 0, 65535).astype(np.uint16)
        return np.repeat(gray[..., None], 3, axis=2)
    if img.mode == "F":
        arr = np.nan_to_num(np.asarray(img, dtype=np.float32), nan=0.0)
        if arr.max(initial=0) > 1.0:
            arr = arr / 255.0
        gray = (np.clip(arr, 0.0, 1.0) * 65535).round().astype(np.uint16)
        return np.repeat(gray[..., None], 3, axis=2)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img)


PIXEL_SCALES = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}


def pixel_scale(dtype) -> float:
    """What 1.0 is in pixels of ``dtype``: 255 (uint8), 65535 (uint16), 1 (floats in [0, 1])."""
    return PIXEL_SCALES.get(np.dtype(dtype), 1.0)


def to_float(arr: np.ndarray) -> np.ndarray:
    """Pixels (uint8, uint16, or floats in [0, 1]) -> float32 in [0, 1], a new array of the same shape."""
    return arr.astype(np.float32) / pixel_scale(arr.dtype)


def to_pixels(values: np.ndarray, dtype) -> np.ndarray:
    """Floats in [0, 1] -> pixels of ``dtype`` (uint8 and uint16 rounded; floats clipped)."""
    clipped = np.clip(values, 0.0, 1.0)
    scale = pixel_scale(dtype)
    return clipped.astype(dtype, copy=False) if scale == 1.0 else (clipped * scale).round().astype(dtype)


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


ImageSource = str | os.PathLike | bytes  # a file, or a file's bytes (an upload)


def png_bit_depth(source: ImageSource) -> int | None:
    """The bit depth per channel a PNG's header states (1, 2, 4, 8 or 16), None for another file."""
    if isinstance(source, bytes):
        head = source[:26]
    else:
        try:
            with open(source, "rb") as file:
                head = file.read(26)
        except OSError:
            return None
    if len(head) < 26 or not head.startswith(PNG_SIGNATURE) or head[12:16] != b"IHDR":
        return None
    return head[24]


def _read_colour_png16(source: Path | bytes) -> np.ndarray:
    """A 16-bit colour PNG at full depth (Pillow reads it as 8-bit RGB) -> ``(H, W, 3)`` uint16,
    alpha composited on white. Decoded in memory: OpenCV never sees the file name."""
    import cv2

    data = np.frombuffer(source, np.uint8) if isinstance(source, bytes) else np.fromfile(source, dtype=np.uint8)
    arr = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if arr is None or arr.ndim != 3 or arr.dtype != np.uint16:
        raise ValueError("not a 16-bit colour PNG")
    rgb = arr[..., 2::-1]  # BGR(A) -> RGB
    if arr.shape[2] == 4:
        alpha = arr[..., 3:].astype(np.float32) / 65535.0
        rgb = (rgb * alpha + 65535.0 * (1.0 - alpha)).round().astype(np.uint16)
    return np.ascontiguousarray(rgb)


def _open(source: ImageSource) -> Image.Image:
    return Image.open(io.BytesIO(source) if isinstance(source, bytes) else Path(source))


def load_array(source: ImageSource, name: str | None = None) -> np.ndarray:
    """Read ``source`` (a file, or its bytes) as RGB pixels ``(H, W, 3)``: uint8, or uint16 for
    16-bit and float images (a quarter of the memory of floats: large photos are repaired from this).

    Grayscale, palette, CMYK, 1-bit, 16-bit and float images are converted; alpha is composited
    on white; the EXIF orientation is applied. Raises :class:`ImageReadError` naming the file (or
    ``name``, e.g. an upload's own file name) for a missing, truncated, corrupt or oversized file.
    """
    path = source if isinstance(source, bytes) else Path(source)
    label = name or ("the image" if isinstance(source, bytes) else str(path))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with _open(path) as img:
                colour16 = img.mode in ("RGB", "RGBA") and png_bit_depth(path) == 16
                if colour16:
                    arr = _read_colour_png16(path)
                else:
                    img = ImageOps.exif_transpose(img)
                    img.load()
                    arr = _to_rgb_array(img)
    except FileNotFoundError:
        raise ImageReadError(f"{label}: file not found") from None
    except UnidentifiedImageError:
        raise ImageReadError(f"{label}: not an image Pillow can read (corrupt or unknown format)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageReadError(f"{label}: larger than the {MAX_PIXELS:,}-pixel safety limit") from None
    except (OSError, SyntaxError, ValueError) as err:  # truncated data, bad headers, odd modes
        raise ImageReadError(f"{label}: cannot decode ({err})") from None
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageReadError(f"{label}: image has no pixels")
    return arr


def image_size(source: ImageSource) -> tuple[int, int] | None:
    """``(width, height)`` from the header alone (nothing decoded; EXIF orientation not applied),
    None where the header cannot be read."""
    try:
        with _open(source) as img:
            return img.size
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True)
class ImageMetadata:
    """What a repaired copy keeps of its photo: the ``exif`` block (its orientation reset to 1, as
    :func:`load_array` already turned the pixels upright) and the ``icc`` colour profile, raw bytes
    or None."""

    exif: bytes | None = None
    icc: bytes | None = None


def read_metadata(source: ImageSource) -> ImageMetadata:
    """The EXIF block and ICC profile of an image file (or its bytes); empty where it has none or
    they cannot be read (metadata never stops a repair)."""
    try:
        with _open(source) as img:
            icc = img.info.get("icc_profile") or None
            exif = img.getexif()
            if EXIF_ORIENTATION in exif:
                exif[EXIF_ORIENTATION] = 1
            return ImageMetadata(exif.tobytes() if len(exif) else None, icc)
    except Exception:  # a broken EXIF block is common in the wild: repair without it
        return ImageMetadata()


def load_image(path: str | os.PathLike) -> torch.Tensor:
    """Read ``path`` as an RGB tensor ``(3, H, W)``, float32 in [0, 1] (:func:`load_array`)."""
    return torch.from_numpy(np.ascontiguousarray(to_float(load_array(path)).transpose(2, 0, 1)))


def load_alpha(path: ImageSource) -> torch.Tensor | None:
    """The alpha channel of an image with transparency, ``(1, H, W)`` float32 in [0, 1] (EXIF
    orientation applied), or None when the image has none or is opaque everywhere. Call it after
    :func:`load_image` has read the file (which reports unreadable ones)."""
    with _open(path) as img:
        img = ImageOps.exif_transpose(img)
        if not (img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)):
            return None
        alpha = np.asarray(img.convert("RGBA"), dtype=np.float32)[..., 3] / 255.0
    return None if alpha.min() >= 1.0 else torch.from_numpy(np.ascontiguousarray(alpha))[None]


def list_images(root: str | os.PathLike, recursive: bool = True) -> list[Path]:
    """Sorted image files under ``root`` (by extension, case-insensitive); hidden files skipped."""
    root = Path(root)
    pattern = root.rglob("*") if recursive else root.glob("*")
    return sorted(p for p in pattern if p.is_file() and is_image_file(p) and not p.name.startswith("."))


# -- mask files ---------------------------------------------------------------------------------

GREEN_TOLERANCE = 40 / 255  # real photos almost never hold (≤40, ≥215, ≤40)
GREEN_GROW = 2  # JPEG's chroma subsampling smears the paint's border over ~2 px: cover it too


def green_mask(image: np.ndarray) -> np.ndarray:
    """Pixels painted pure green (0, 255, 0) in ``image`` ``(H, W, 3)`` (uint8, uint16 or float in
    [0, 1]), grown by ``GREEN_GROW`` pixels -> ``(H, W)`` float32 in {0, 1}."""
    scale = pixel_scale(image.dtype)
    low, high = GREEN_TOLERANCE * scale, (1 - GREEN_TOLERANCE) * scale
    r, g, b = image[..., 0], image[..., 1], image[..., 2]
    painted = ((r <= low) & (g >= high) & (b <= low)).astype(np.uint8)
    size = 2 * GREEN_GROW + 1
    return cv2.dilate(painted, np.ones((size, size), np.uint8)).astype(np.float32)


def read_mask(path: Path | bytes, soft: bool = False, name: str | None = None) -> np.ndarray:
    """A mask file (or its bytes; ``name`` in messages) -> ``(H, W)`` float32 in [0, 1]: a mask with
    transparency (opaque = hole: a hole drawn on a transparent layer), a grayscale mask (white =
    hole), or a colour photo whose hole is painted pure green. Alpha and gray are thresholded at
    half, or with ``soft`` kept as the hole's weight (a soft mask, as denoising uses).

    >>> import io
    >>> from PIL import Image
    >>> drawn = np.zeros((4, 6), np.uint8)
    >>> drawn[1:3, 2:5] = 255                       # white = hole
    >>> buffer = io.BytesIO()
    >>> Image.fromarray(drawn).save(buffer, "PNG")
    >>> read_mask(buffer.getvalue(), name="mask.png")
    array([[0., 0., 0., 0., 0., 0.],
           [0., 0., 1., 1., 1., 0.],
           [0., 0., 1., 1., 1., 0.],
           [0., 0., 0., 0., 0., 0.]], dtype=float32)
    """
    image = load_array(path, name)  # first: it reports an unreadable file in one line
    alpha = load_alpha(path)

    def weights(values: np.ndarray) -> np.ndarray:
        return values.astype(np.float32) if soft else (values > 0.5).astype(np.float32)

    if alpha is not None:  # composited on white, its transparent part would all read as hole
        return weights(alpha[0].numpy())
    spread = image.max(axis=2).astype(np.float32) - image.min(axis=2)
    if spread.max() >= 0.05 * pixel_scale(image.dtype):
        painted = green_mask(image)
        if painted.sum() == 0:
            raise ImageReadError(
                f"{name or path}: a colour mask must mark the hole in pure green (0, 255, 0); none found"
            )
        return painted
    return weights(image[..., 0] / np.float32(pixel_scale(image.dtype)))
