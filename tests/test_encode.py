"""pipeline.inference.encode: the result's file (PNG or JPEG, EXIF and ICC kept), and the inpaint CLI's
format, quality and keep_metadata options."""

import io

import numpy as np
import pytest
from conftest import write_photo
from hydra import compose, initialize_config_module
from PIL import Image, ImageCms

from common.config import check_config
from common.errors import ConfigError
from data.io import ImageMetadata, load_array, read_metadata
from pipeline.inference.encode import OutputFormat, encode_image
from pipeline.inpaint import inpaint_cli

SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def exif_with(**tags) -> bytes:
    exif = Image.Exif()
    for tag, value in tags.items():
        exif[int(tag.lstrip("t"))] = value
    return exif.tobytes()


@pytest.mark.parametrize("depth", [np.uint8, np.uint16])
def test_png_keeps_depth_pixels_profile_and_exif(depth):
    pixels = np.random.default_rng(0).integers(0, np.iinfo(depth).max, (20, 30, 3), dtype=depth)
    metadata = ImageMetadata(exif=exif_with(t271="camera maker"), icc=SRGB)
    data = encode_image(pixels, OutputFormat("png"), metadata)
    assert np.array_equal(load_array(data), pixels)  # 16-bit colour read at full depth
    image = Image.open(io.BytesIO(data))
    assert image.info["icc_profile"] == SRGB and image.getexif()[271] == "camera maker"
    assert read_metadata(data) == metadata


def test_jpeg_quality_and_16_bit_results():
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 65535, (32, 32, 3), dtype=np.uint16)
    low, high = (encode_image(pixels, OutputFormat("jpeg", q)) for q in (20, 95))
    assert len(low) < len(high)
    decoded = np.asarray(Image.open(io.BytesIO(high))).astype(float)
    assert np.abs(decoded - pixels / 257.0).mean() < 8  # rounded to 8 bits, then JPEG's loss


def test_metadata_is_left_out_on_request_and_orientation_is_reset(tmp_path):
    path = tmp_path / "sideways.jpg"
    write_photo(tmp_path / "s.png", 30, 20)
    exif = Image.Exif()
    exif[0x0112] = 8
    Image.open(tmp_path / "s.png").save(path, exif=exif, icc_profile=SRGB)
    metadata = read_metadata(path)
    assert metadata.icc == SRGB
    data = encode_image(load_array(path), OutputFormat("jpeg", 90), metadata)
    assert Image.open(io.BytesIO(data)).getexif()[0x0112] == 1  # the pixels are upright already
    bare = encode_image(load_array(path), OutputFormat("jpeg", 90, keep_metadata=False), metadata)
    assert "icc_profile" not in Image.open(io.BytesIO(bare)).info


def test_broken_metadata_never_stops_a_repair(tmp_path):
    assert read_metadata(b"not an image") == ImageMetadata()


@pytest.mark.parametrize(
    ("fmt", "quality", "message"),
    [
        ("gif", 90, "format must be one of"),
        ("jpeg", 0, "quality must be"),
        ("jpeg", 101, "quality"),
        ("png", 9.5, "whole number"),
    ],
)
def test_bad_output_choices_are_refused(fmt, quality, message):
    with pytest.raises(ConfigError, match=message):
        OutputFormat(fmt, quality)


def _inpaint(*overrides):
    with initialize_config_module(config_module="conf", version_base="1.3"):
        cfg = compose("inpaint", list(overrides))
    check_config(cfg)
    return inpaint_cli(cfg)


def test_the_cli_writes_jpeg_at_the_quality_asked(smoke_run, tmp_path):
    source = write_photo(tmp_path / "in" / "photo.png", 48, 40)
    outputs = {}
    for quality in (30, 95):
        report = _inpaint(f"input={source}", f"output={tmp_path / str(quality)}", f"checkpoint={smoke_run['model']}",
                          "format=jpeg", f"quality={quality}")  # fmt: skip
        (outputs[quality],) = report["written"]
        assert outputs[quality].name == "photo.jpg"
        assert Image.open(outputs[quality]).format == "JPEG" and Image.open(outputs[quality]).size == (48, 40)
    assert outputs[30].stat().st_size < outputs[95].stat().st_size
    with pytest.raises(ConfigError, match="format must be one of"):
        _inpaint(f"input={source}", f"output={tmp_path / 'x'}", "format=gif")
