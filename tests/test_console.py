"""``blindfill``, the console command (pipeline/console.py), driven as users run it: the installed
script in a subprocess, on files with the names people's photos have."""

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from tests.conftest import ROOT

SCRIPT = Path(sys.executable).parent / "blindfill"
pytestmark = pytest.mark.skipif(not SCRIPT.exists(), reason="the console script is installed by pip install -e .")


def blindfill(*args, cwd):
    return subprocess.run([str(SCRIPT), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=300)


def _damaged(size=(96, 128)) -> np.ndarray:
    photo = cv2.resize(cv2.imread(str(ROOT / "data" / "photos" / "skimage_rocket.jpg")), size[::-1])
    cv2.putText(photo, "2026", (10, 60), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (255, 255, 255), 3)
    return photo[..., ::-1].copy()  # RGB


@pytest.fixture(scope="module")
def odd_inputs(tmp_path_factory):
    """Photos named as people's photos are (spaces, brackets, a comma, an accent), in PNG, JPEG,
    WebP, HEIC and AVIF, and a folder holding one more and an unreadable file."""
    import pillow_heif

    pillow_heif.register_heif_opener()
    root = tmp_path_factory.mktemp("inputs")
    photo = Image.fromarray(_damaged())
    files = {"IMG 1 (copy).png": "PNG", "a,b.jpg": "JPEG", "été.webp": "WEBP", "iphone.heic": "HEIF", "x.avif": "AVIF"}
    for name, fmt in files.items():
        photo.save(root / name, fmt)
    (root / "album").mkdir()
    photo.save(root / "album" / "inner [1].png")
    (root / "album" / "broken.jpg").write_bytes(b"not a jpeg")
    return root


def test_repair_takes_plain_paths_and_keeps_each_photos_format(odd_inputs, tmp_path):
    names = ["IMG 1 (copy).png", "a,b.jpg", "été.webp", "iphone.heic", "x.avif", "album"]
    proc = blindfill("repair", *names, "-o", tmp_path / "out", cwd=odd_inputs)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 8  # a line per photo (the unreadable one too) and the summary last
    assert lines[-1] == "6 repaired, 0 without damage found, 0 kept (already there), 1 skipped"
    assert any(line.startswith("album/broken.jpg: skipped:") for line in lines)
    expected = {
        "IMG 1 (copy).png": "PNG", "a,b.jpg": "JPEG", "été.webp": "WEBP", "iphone.heic": "HEIF",
        "x.avif": "AVIF", "album/inner [1].png": "PNG",
    }  # fmt: skip
    for name, fmt in expected.items():
        assert Image.open(tmp_path / "out" / name).format == fmt, name
    assert sorted(p.name for p in odd_inputs.iterdir()) == sorted(["album", *names[:-1]])  # inputs untouched


def test_one_photo_to_a_file_name_and_a_json_report(odd_inputs, tmp_path):
    target = tmp_path / "fixed photo.jpg"
    proc = blindfill("repair", "IMG 1 (copy).png", "-o", target, "--json", cwd=odd_inputs)
    assert proc.returncode == 0, proc.stderr
    assert target.is_file() and Image.open(target).format == "JPEG"
    report = json.loads(proc.stdout)
    (photo,) = report["photos"]
    assert photo["status"] == "repaired" and 0 < photo["repaired_share"] < 0.5 and photo["output"] == str(target)
    assert report["summary"] == {"repaired": 1, "clean": 0, "kept": 0, "skipped": 0}
    again = blindfill("repair", "IMG 1 (copy).png", "-o", target, cwd=odd_inputs)  # exists: kept, not replaced
    assert again.returncode == 0 and "kept" in again.stdout.splitlines()[0]


@pytest.mark.parametrize(
    "args, status, message",
    [
        (["repair", "no such.png"], 1, "error: input no such.png does not exist"),
        (["repair", "album/broken.jpg"], 1, None),  # nothing could be read
        (["repair", "a,b.jpg", "x.avif", "-o", "one.jpg"], 1, "error: -o one.jpg is a file name: give exactly one"),
        (["repair", "a,b.jpg", "--quality", "0"], 1, "error: --quality must be in 1..100, got 0"),
        (["repair", "--mode", "paint", "a,b.jpg"], 2, "invalid choice: 'paint'"),
        (["frobnicate"], 2, "invalid choice: 'frobnicate'"),
    ],
)
def test_exit_codes_are_the_documented_ones(odd_inputs, tmp_path, args, status, message):
    output = [] if "-o" in args else ["-o", tmp_path / "o"]
    proc = blindfill(*args, *output, cwd=odd_inputs)
    assert proc.returncode == status, proc.stderr
    assert "Traceback" not in proc.stderr
    if message:
        assert message in proc.stderr


def test_help_lists_the_commands_and_the_exit_codes(tmp_path):
    proc = blindfill("--help", cwd=tmp_path)
    assert proc.returncode == 0
    for word in ("repair", "serve", "evaluate", "export", "benchmark", "train", "exit status"):
        assert word in proc.stdout
    assert "Hydra" not in proc.stdout


def test_a_users_own_modules_named_like_ours_do_not_shadow_them(tmp_path):
    """The script's folder leads sys.path, not the current one: a ``data.py`` and ``common.py`` of
    the user's own beside the photo change nothing."""
    for name in ("data.py", "common.py", "pipeline.py"):
        (tmp_path / name).write_text("raise RuntimeError('the user module was imported')\n")
    Image.fromarray(_damaged()).save(tmp_path / "photo.png")
    proc = blindfill("repair", "photo.png", "-o", "out", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "photo.png").is_file()


def test_masked_mode_finds_lamas_mask_beside_the_photo_and_does_not_repair_the_mask(tmp_path):
    """LaMa's layout: ``<name>_mask001.png`` beside ``<name>.png``; the mask is the hole, not one
    more photo to repair (``pipeline.inpaint`` plans the same way: one code path)."""
    folder = tmp_path / "lama"
    folder.mkdir()
    photo = _damaged()
    Image.fromarray(photo).save(folder / "photo.png")
    hole = np.zeros(photo.shape[:2], np.uint8)
    hole[30:70, 5:100] = 255
    Image.fromarray(hole).save(folder / "photo_mask001.png")
    proc = blindfill("repair", "lama", "--mode", "masked", "-o", "out", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("lama/photo.png: repaired")
    share = float(lines[0].split("repaired ")[1].split(" %")[0]) / 100
    assert abs(share - (hole > 0).mean()) < 0.02  # the given hole, not a found one
    assert sorted(p.name for p in (tmp_path / "out" / "lama").iterdir()) == ["photo.png"]


def test_a_mask_of_another_size_is_refused_or_resized_and_union_adds_what_the_model_finds(tmp_path):
    """A mask of another size: skipped with a line naming both sizes, or with ``--mask-resize``
    resized (nearest) and used; ``--union``: that hole plus the damage the model finds (the text)."""
    photo = _damaged()
    Image.fromarray(photo).save(tmp_path / "photo.png")
    half = np.zeros((photo.shape[0] // 2, photo.shape[1] // 2), np.uint8)
    half[5:15, 5:25] = 255
    Image.fromarray(half).save(tmp_path / "small.png")
    common = ("repair", "photo.png", "--mode", "masked", "--mask", "small.png")
    refused = blindfill(*common, "-o", "a", cwd=tmp_path)
    assert refused.returncode == 1
    assert "the mask is 64 × 48, the photo 128 × 96" in refused.stdout.splitlines()[0]
    shares = {}
    for name, extra in (("resized", ["--mask-resize"]), ("union", ["--mask-resize", "--union"])):
        proc = blindfill(*common, *extra, "-o", name, "--json", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        shares[name] = json.loads(proc.stdout)["photos"][0]["repaired_share"]
    assert abs(shares["resized"] - (half > 0).mean()) < 0.01
    assert shares["union"] > shares["resized"] + 0.01  # the text the model found was added
