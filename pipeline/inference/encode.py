"""Encoding a repaired photo: PNG, JPEG, WebP or AVIF, its EXIF and ICC profile kept, written atomically.

One function makes the file's bytes (:func:`encode_image`), so ``pipeline.inpaint`` and the web
page (:mod:`pipeline.web.server`) give the same file for the same photo and the same choices.

- PNG keeps the pixels' depth (8 or 16 bits); OpenCV encodes it, and the profile (``iCCP``) and
  EXIF (``eXIf``) chunks are inserted after the header.
- JPEG is 8-bit (a 16-bit result is rounded to 8 bits), written by Pillow at ``quality`` with
  4:4:4 chroma at quality ≥ 90 (the fill's fine colour is what a user looks at) and 4:2:0 below.
- WebP, AVIF and HEIC are 8-bit too, written by Pillow at ``quality`` (WebP at 100: lossless;
  HEIC through pillow-heif, which :mod:`data.io` registers).

:func:`same_format` is the format a result keeps by default: the input's own where it is one of
these, else PNG (lossless).
"""

from __future__ import annotations

import io
import os
import struct
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from common.errors import ConfigError
from data.io import ImageMetadata, to_pixels

FORMATS = ("png", "jpeg", "webp", "avif", "heif")
SUFFIXES = {"png": ".png", "jpeg": ".jpg", "webp": ".webp", "avif": ".avif", "heif": ".heic"}
MEDIA_TYPES = {
    "png": "image/png",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "avif": "image/avif",
    "heif": "image/heic",
}
# An input's suffix -> the format its result keeps (same_format); others give PNG.
KEPT = {
    ".png": "png",
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".jpe": "jpeg",
    ".jfif": "jpeg",
    ".webp": "webp",
    ".avif": "avif",
    ".heic": "heif",
    ".heif": "heif",
}


def same_format(source: Path) -> str:
    """The format of a result that keeps its input's: ``source``'s own (:data:`KEPT`), else png.

    >>> same_format(Path("IMG 1 (copy).JPG")), same_format(Path("scan.tif"))
    ('jpeg', 'png')
    """
    return KEPT.get(source.suffix.lower(), "png")


@dataclass(frozen=True)
class OutputFormat:
    """How a result is written: ``format`` png | jpeg | webp | avif, the lossy formats' ``quality``
    1–100, and whether the input's EXIF and ICC profile are kept (``keep_metadata``)."""

    format: str = "png"
    quality: int = 95
    keep_metadata: bool = True

    def __post_init__(self):
        fmt = {"jpg": "jpeg"}.get(str(self.format).lower(), str(self.format).lower())
        if fmt not in FORMATS:
            raise ConfigError(f"format must be one of {FORMATS}, got {self.format!r}")
        object.__setattr__(self, "format", fmt)
        if isinstance(self.quality, bool) or not isinstance(self.quality, int) or not 1 <= self.quality <= 100:
            raise ConfigError(f"quality must be a whole number in 1..100, got {self.quality!r}")

    @property
    def suffix(self) -> str:
        return SUFFIXES[self.format]

    @property
    def media_type(self) -> str:
        return MEDIA_TYPES[self.format]


PNG = OutputFormat()


def as_pixels(pixels, sixteen_bit: bool = False) -> np.ndarray:
    """An ``(H, W[, 3])`` uint8/uint16 array as it is, or floats in [0, 1] (a ``(C, H, W)`` tensor or
    an ``(H, W[, C])`` array) rounded to 8 bits (16 with ``sixteen_bit``); a single channel is dropped."""
    if torch.is_tensor(pixels):
        pixels = pixels.detach().float().cpu().permute(1, 2, 0).numpy()
    arr = np.asarray(pixels)
    if arr.dtype not in (np.uint8, np.uint16):
        arr = to_pixels(arr, np.uint16 if sixteen_bit else np.uint8)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    return arr


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png_with_metadata(png: bytes, metadata: ImageMetadata) -> bytes:
    """``png`` with ``iCCP`` and ``eXIf`` chunks after its ``IHDR`` (8-byte signature + 25-byte IHDR)."""
    chunks = b""
    if metadata.icc:
        chunks += _png_chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(metadata.icc))
    if metadata.exif:
        exif = metadata.exif[6:] if metadata.exif.startswith(b"Exif\x00\x00") else metadata.exif
        chunks += _png_chunk(b"eXIf", exif)
    return png[:33] + chunks + png[33:]


def encode_image(pixels, output_format: OutputFormat = PNG, metadata: ImageMetadata | None = None) -> bytes:
    """The file bytes of ``pixels`` (see :func:`as_pixels`; a float input is written at 8 bits) in
    ``output_format``, with ``metadata`` where ``output_format.keep_metadata``."""
    arr = as_pixels(pixels)
    metadata = metadata if metadata is not None and output_format.keep_metadata else ImageMetadata()
    if output_format.format == "png":
        ok, encoded = cv2.imencode(".png", np.ascontiguousarray(arr[..., ::-1] if arr.ndim == 3 else arr))
        if not ok:
            raise OSError("PNG encoding failed")
        return _png_with_metadata(encoded.tobytes(), metadata)
    if arr.dtype == np.uint16:
        arr = (arr.astype(np.float32) / 257.0).round().astype(np.uint8)
    options = {"quality": output_format.quality}
    if output_format.format == "jpeg":
        options["subsampling"] = 0 if output_format.quality >= 90 else 2
    if output_format.format == "webp" and output_format.quality == 100:
        options["lossless"] = True
    if metadata.exif:
        options["exif"] = metadata.exif
    if metadata.icc:
        options["icc_profile"] = metadata.icc
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr)).save(buffer, output_format.format.upper(), **options)
    return buffer.getvalue()


def write_file(data: bytes, path: Path) -> None:
    """Write ``data`` to ``path`` through a temporary file renamed when complete, so an interrupted
    run never leaves a half-written result. The temporary file is created new and exclusively in
    the output folder (``mkstemp``: ``O_CREAT | O_EXCL``), so a link planted there is never
    followed; the rename replaces a link at ``path`` itself, not its target. Nothing ever hands
    the file name to an image library, so it may be any bytes the file system allows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(prefix=f".{path.stem[:64]}.", suffix=f".partial{path.suffix}", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide the result from the user's other accounts
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        os.replace(partial, path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise


def write_image(
    pixels, path: Path, output_format: OutputFormat = PNG, metadata: ImageMetadata | None = None, sixteen_bit=False
) -> None:
    """Encode ``pixels`` (:func:`encode_image`; floats at 16 bits with ``sixteen_bit``) and write them
    to ``path`` (:func:`write_file`)."""
    write_file(encode_image(as_pixels(pixels, sixteen_bit), output_format, metadata), path)
