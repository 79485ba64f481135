import numpy as np
import pytest
import torch
from PIL import Image

from data.io import ImageReadError, list_images, load_image
from tests.conftest import write_photo


def _check(t, h, w):
    assert t.shape == (3, h, w) and t.dtype == torch.float32
    assert t.min() >= 0.0 and t.max() <= 1.0


@pytest.mark.parametrize("mode", ["RGB", "L", "P", "CMYK", "1", "LA", "RGBA"])
def test_modes_become_rgb(tmp_path, mode):
    ext = "jpg" if mode == "CMYK" else "png"
    path = write_photo(tmp_path / f"x.{ext}", 40, 30, mode=mode)
    _check(load_image(path), 30, 40)


def test_grayscale_is_replicated(tmp_path):
    path = write_photo(tmp_path / "g.png", mode="L")
    t = load_image(path)
    assert torch.equal(t[0], t[1]) and torch.equal(t[1], t[2])


def test_sixteen_bit_png_keeps_its_range(tmp_path):
    arr = (np.linspace(0, 65535, 32 * 24).reshape(24, 32)).astype(np.uint16)
    Image.fromarray(arr).save(tmp_path / "deep.png")
    t = load_image(tmp_path / "deep.png")
    _check(t, 24, 32)
    assert t.max().item() == pytest.approx(1.0, abs=1e-4) and t.min().item() == 0.0
    # 16 bits survive: more distinct levels than an 8-bit image could hold
    assert torch.unique(t[0]).numel() > 256


def test_alpha_is_composited_on_white(tmp_path):
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0] = 255  # red, fully transparent on the left half
    rgba[:, 4:, 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    t = load_image(tmp_path / "a.png")
    assert torch.allclose(t[:, :, :4], torch.ones(3, 8, 4))
    assert torch.allclose(t[:, :, 4:], torch.tensor([1.0, 0, 0]).view(3, 1, 1).expand(3, 8, 4))


def test_exif_rotation_is_applied(tmp_path):
    img = Image.new("RGB", (40, 20), "red")
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    img.save(tmp_path / "r.jpg", exif=exif)
    assert load_image(tmp_path / "r.jpg").shape == (3, 40, 20)


def test_truncated_and_garbage_files_name_the_file(tmp_path):
    good = write_photo(tmp_path / "good.jpg", 64, 64)
    data = good.read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.png").write_bytes(b"this is not a png")
    for name in ("cut.jpg", "junk.png", "missing.png"):
        with pytest.raises(ImageReadError, match=name):
            load_image(tmp_path / name)


def test_decompression_bomb_is_refused(tmp_path, monkeypatch):
    path = write_photo(tmp_path / "big.png", 200, 200)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ImageReadError, match="big.png"):
        load_image(path)


def test_list_images_recursive_sorted_filtered(photo_folder):
    (photo_folder / "notes.txt").write_text("x")
    (photo_folder / ".hidden.png").write_bytes(b"")
    files = list_images(photo_folder)
    assert len(files) == 12 and files == sorted(files)
    assert list_images(photo_folder, recursive=False) == []
