"""Inference: BlindInpainter, the pipeline.inpaint CLI and pipeline.export."""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import ROOT, run_module, write_photo
from hydra import compose, initialize_config_module
from PIL import Image

from common.checkpoint import read_model_file
from common.config import check_config
from common.errors import CheckpointError, ConfigError
from data.io import green_mask, read_mask
from pipeline import BlindInpainter
from pipeline.export import export_torchscript
from pipeline.inference.inpainter import InpaintSettings
from pipeline.inference.large import working_shape
from pipeline.inpaint import inpaint_cli
from pipeline.model import TracingOutputs, load_pipeline, save_pipeline


def _digests(root):
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def _inpaint(*overrides):
    """The command's work as ``python -m pipeline.inpaint`` does it: the config checked, then run."""
    with initialize_config_module(config_module="conf", version_base="1.3"):
        cfg = compose("inpaint", list(overrides))
    check_config(cfg)
    return inpaint_cli(cfg)


@pytest.fixture(scope="module")
def inpainter(smoke_run):
    return BlindInpainter.from_pretrained(smoke_run["model"])


@pytest.fixture
def odd_folder(tmp_path):
    """Odd sizes and kinds: grayscale, RGBA, 16-bit, palette, a 1-pixel-wide strip, nested folders."""
    root = tmp_path / "in"
    write_photo(root / "odd.jpg", 37, 23)
    write_photo(root / "gray.png", 40, 40, seed=1, mode="L")
    write_photo(root / "alpha.png", 33, 45, seed=2, mode="RGBA")
    write_photo(root / "palette.png", 48, 20, seed=3, mode="P")
    write_photo(root / "nested" / "deep" / "tiny.png", 1, 9, seed=4)
    sixteen = (np.linspace(0, 65535, 50 * 30).reshape(30, 50)).astype(np.uint16)
    Image.fromarray(sixteen).save(root / "sixteen.png")
    return root


def test_cli_blind_on_a_folder_writes_every_result_and_never_touches_the_inputs(smoke_run, odd_folder, tmp_path):
    before = _digests(odd_folder)
    out = tmp_path / "out"
    result = run_module(
        "pipeline.inpaint",
        f"input={odd_folder}",
        f"output={out}",
        f"checkpoint={smoke_run['model']}",
        "save_intermediates=true",
        "batch_size=2",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert _digests(odd_folder) == before  # byte-identical, and nothing new in the input folder
    for source in (p for p in odd_folder.rglob("*") if p.is_file()):
        relative = source.relative_to(odd_folder)
        target = out / relative.parent / f"{relative.stem}.png"
        with Image.open(source) as a, Image.open(target) as b:
            assert a.size == b.size
        assert (target.with_name(f"{relative.stem}_mask.png")).is_file()
        assert (target.with_name(f"{relative.stem}_edges.png")).is_file()
    assert cv2.imread(str(out / "sixteen.png"), cv2.IMREAD_UNCHANGED).dtype == np.uint16  # 16 bit in, 16 bit out
    assert cv2.imread(str(out / "odd.png"), cv2.IMREAD_UNCHANGED).dtype == np.uint8
    assert not list(out.rglob(".*partial*"))


@pytest.mark.parametrize("mode", ["blind", "denoise"])
def test_single_file_blind_and_denoise(smoke_run, tmp_path, mode):
    photo = write_photo(tmp_path / "in" / "photo.jpg", 50, 34)
    report = _inpaint(
        f"input={photo}", f"output={tmp_path / 'out'}", f"checkpoint={smoke_run['model']}", f"mode={mode}"
    )
    assert report["written"] == [tmp_path / "out" / "photo.png"]


def test_denoise_weighs_the_floor_by_the_mpns_mask_and_blind_hardens_it(inpainter):
    from common.denoise import denoise_batch

    s = inpainter.pipeline
    noisy = torch.rand(1, 3, 48, 48)
    weight = inpainter.inpaint(noisy, mode="denoise")["mask"]  # denoise: the weight of the classical floor
    _, impulses = denoise_batch(noisy)
    assert torch.allclose(weight, s.denoise_weight(inpainter.masks(noisy)["predicted_mask"], impulses), atol=1e-6)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 48), torch.linspace(0, 1, 48), indexing="ij")
    x = torch.stack([0.5 + 0.4 * torch.sin(6 * xx), 0.5 + 0.4 * torch.cos(5 * yy), xx * yy])[None]
    x[..., 10:30, 12:16] = torch.tensor([1.0, 0.0, 1.0])[:, None, None]  # a stroke to find; the photo is not noisy
    soft = inpainter.masks(x)["predicted_mask"]
    hard = inpainter.inpaint(x, mode="blind")["mask"]
    kept = soft >= s.soft_floor  # blind: faint doubts below the floor are taken as intact
    assert (hard[kept] >= soft[kept]).all() and ((hard[~kept] == 0) | (hard[~kept] == 1)).all()
    confident = torch.nn.functional.max_pool2d((soft > s.hole_threshold).float(), 2 * s.dilate + 1, 1, s.dilate)
    assert torch.equal(hard == 1, (confident == 1) | (soft == 1))


def test_masked_with_a_mask_file_keeps_every_known_pixel(smoke_run, tmp_path):
    photo = write_photo(tmp_path / "in" / "photo.png", 64, 48)
    mask = np.zeros((48, 64), np.uint8)
    mask[10:30, 20:40] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    _inpaint(
        f"input={photo}",
        f"output={tmp_path / 'out'}",
        f"checkpoint={smoke_run['model']}",
        "mode=masked",
        f"mask={tmp_path / 'mask.png'}",
    )
    original = np.asarray(Image.open(photo).convert("RGB"))
    repaired = np.asarray(Image.open(tmp_path / "out" / "photo.png"))
    known = mask == 0
    assert np.array_equal(repaired[known], original[known])
    assert not np.array_equal(repaired[~known], original[~known])


@pytest.mark.parametrize("where", ["mask_file", "input_itself"])
def test_masked_with_a_green_painted_photo(smoke_run, tmp_path, where):
    photo = write_photo(tmp_path / "in" / "photo.png", 64, 48)
    painted = np.asarray(Image.open(photo)).copy()
    painted[5:25, 30:50] = (0, 255, 0)
    out = tmp_path / "out"
    if where == "mask_file":
        Image.fromarray(painted).save(tmp_path / "painted.jpg", quality=90)  # JPEG blurs the green a little
        _inpaint(
            f"input={photo}",
            f"output={out}",
            f"checkpoint={smoke_run['model']}",
            "mode=masked",
            f"mask={tmp_path / 'painted.jpg'}",
            "save_intermediates=true",
        )
    else:
        Image.fromarray(painted).save(photo)
        _inpaint(
            f"input={photo}",
            f"output={out}",
            f"checkpoint={smoke_run['model']}",
            "mode=masked",
            "save_intermediates=true",
        )
    used = np.asarray(Image.open(out / "photo_mask.png")) > 127
    painted, grown = np.zeros((48, 64), bool), np.zeros((48, 64), bool)
    painted[5:25, 30:50], grown[3:27, 28:52] = True, True
    assert used[painted].all() and not used[~grown].any()  # the paint, and its JPEG-smeared rim


def test_a_masks_folder_is_matched_by_name(smoke_run, tmp_path):
    (tmp_path / "masks").mkdir()
    mask = np.zeros((32, 32), np.uint8)
    mask[8:16, 8:16] = 255
    for name in ("a", "b"):
        write_photo(tmp_path / "in" / f"{name}.png", 32, 32)
        Image.fromarray(mask).save(tmp_path / "masks" / f"{name}_mask.png")
    report = _inpaint(
        f"input={tmp_path / 'in'}",
        f"output={tmp_path / 'out'}",
        f"checkpoint={smoke_run['model']}",
        "mode=masked",
        f"mask={tmp_path / 'masks'}",
    )
    assert len(report["written"]) == 2


def test_existing_outputs_are_kept_unless_overwrite(smoke_run, tmp_path):
    photo = write_photo(tmp_path / "in" / "photo.png", 32, 32)
    out = tmp_path / "out"
    (out).mkdir()
    (out / "photo.png").write_bytes(b"mine")
    args = (f"input={photo}", f"output={out}", f"checkpoint={smoke_run['model']}")
    report = _inpaint(*args)
    assert report["skipped"] == [out / "photo.png"] and (out / "photo.png").read_bytes() == b"mine"
    report = _inpaint(*args, "overwrite=true")
    assert report["written"] == [out / "photo.png"] and Image.open(out / "photo.png").size == (32, 32)


@pytest.mark.parametrize("inside", [True, False])
def test_output_in_the_input_folder_is_refused(smoke_run, tmp_path, inside):
    photo = write_photo(tmp_path / "in" / "photo.png", 32, 32)
    source = tmp_path / "in" if inside else photo
    output = tmp_path / "in" / "results" if inside else tmp_path / "in"
    with pytest.raises(ConfigError, match="input folder"):
        _inpaint(f"input={source}", f"output={output}", f"checkpoint={smoke_run['model']}")
    assert not (tmp_path / "in" / "results").exists()


def test_unreadable_images_are_reported_and_the_rest_repaired(smoke_run, tmp_path):
    write_photo(tmp_path / "in" / "good.png", 32, 32)
    (tmp_path / "in" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    report = _inpaint(f"input={tmp_path / 'in'}", f"output={tmp_path / 'out'}", f"checkpoint={smoke_run['model']}")
    assert report["written"] == [tmp_path / "out" / "good.png"]
    assert report["failed"] == [tmp_path / "in" / "broken.jpg"]


@pytest.mark.parametrize(
    "args, error",
    [
        (("input={tmp}/missing.png",), "does not exist"),
        (("checkpoint={tmp}/nope.safetensors",), "does not exist"),
        (("checkpoint={mpn}",), "not 'pipeline' or 'joint'"),  # a stage checkpoint is not a whole model
        (("mode=fancy",), "unknown mode"),
        (("pipeline.dilate=-1",), "dilate must be in"),
        (("batch_size=0",), "batch_size"),
    ],
)
def test_bad_arguments_are_explained(smoke_run, tmp_path, args, error):
    photo = write_photo(tmp_path / "in" / "photo.png", 32, 32)
    base = {"input": str(photo), "output": str(tmp_path / "out"), "checkpoint": str(smoke_run["model"])}
    base.update(a.format(tmp=tmp_path, mpn=smoke_run["mpn"]).split("=", 1) for a in args)
    with pytest.raises((ConfigError, CheckpointError), match=error):
        _inpaint(*(f"{k}={v}" for k, v in base.items()))


def test_masked_without_mask_or_paint_reports_the_image(smoke_run, tmp_path):
    photo = write_photo(tmp_path / "in" / "photo.png", 32, 32)
    report = _inpaint(f"input={photo}", f"output={tmp_path / 'out'}", f"checkpoint={smoke_run['model']}", "mode=masked")
    assert report["failed"] == [photo] and not report["written"]


def test_cli_errors_are_one_line(smoke_run, tmp_path):
    photo = write_photo(tmp_path / "in" / "photo.png", 32, 32)
    result = run_module("pipeline.inpaint", f"input={photo}", f"output={tmp_path}/o", f"checkpoint={smoke_run['mpn']}")
    assert result.returncode != 0 and result.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "Traceback" not in result.stderr


def test_a_large_image_is_repaired_at_working_size_with_known_pixels_exact(inpainter):
    big = torch.rand(1, 3, 2000, 3000)
    mask = torch.zeros(1, 1, 2000, 3000)
    mask[..., 900:1100, 1400:1700] = 1
    out = inpainter.inpaint(big, mask, mode="masked")
    assert out["output"].shape == big.shape and out["mask"].shape == mask.shape
    assert torch.equal(out["output"][..., :800, :], big[..., :800, :])  # pasted into the untouched original
    assert not torch.equal(out["output"][..., 900:1100, 1400:1700], big[..., 900:1100, 1400:1700])
    assert working_shape(2000, 3000, inpainter.settings.working_size) == (341, 512)


def test_a_3000x2000_photo_through_the_cli_stays_within_memory(smoke_run, tmp_path):
    # On the CPU also on a GPU machine: the bound is the host memory of the strip path.
    photo = write_photo(tmp_path / "in" / "large.jpg", 3000, 2000)
    code = (
        "import resource, sys; from pipeline.inpaint import main;"
        " sys.argv = ['x', 'input={}', 'output={}', 'checkpoint={}', 'device=cpu'];"
        "\ntry:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('MAXRSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    ).format(photo, tmp_path / "out", smoke_run["model"])
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    peak_mib = int(result.stdout.split("MAXRSS")[-1]) / 1024
    assert Image.open(tmp_path / "out" / "large.png").size == (3000, 2000)
    assert peak_mib < 3000, peak_mib


def test_python_api_takes_paths_pillow_numpy_and_tensors(inpainter, tmp_path):
    photo = write_photo(tmp_path / "photo.png", 40, 30)
    pil = Image.open(photo)
    for image in (photo, pil, np.asarray(pil), torch.rand(3, 30, 40)):
        result = inpainter(image)
        assert result.output.shape == (3, 30, 40) and result.mask.shape == (1, 30, 40)
        assert result.to_pil().size == (40, 30)
    masked = inpainter(photo, mask=np.pad(np.ones((10, 10), np.uint8) * 255, ((5, 15), (5, 25))))
    assert masked.mask.sum() == 100


def test_safetensors_round_trip_gives_identical_outputs(smoke_run, tmp_path):
    from_checkpoint = BlindInpainter.from_pretrained(smoke_run["joint"])
    path = save_pipeline(from_checkpoint.pipeline, tmp_path / "model.safetensors")
    from_file = BlindInpainter.from_pretrained(path)
    x = torch.rand(2, 3, 40, 56)
    a, b = from_checkpoint.inpaint(x), from_file.inpaint(x)
    assert all(torch.equal(a[k], b[k]) for k in a)
    model = read_model_file(path, "pipeline")
    assert set(model.config["stages"]) == {"mpn", "epn", "ipn"} and not any("discriminator" in k for k in model.state)
    assert model.config["pipeline"] == from_checkpoint.pipeline.settings()


def test_stored_pipeline_settings_are_used_unless_overridden(smoke_run, tmp_path):
    pipeline = load_pipeline(smoke_run["model"])
    pipeline.dilate = 5
    path = save_pipeline(pipeline, tmp_path / "dilate5.safetensors")
    assert load_pipeline(path).dilate == 5
    assert load_pipeline(path, dilate=1, hole_threshold=None).dilate == 1  # None keeps the stored value
    assert BlindInpainter.from_pretrained(path, hole_threshold=0.8).pipeline.hole_threshold == 0.8


def test_export_cli_writes_safetensors_and_a_checked_torchscript_graph(smoke_run, tmp_path):
    out, graph = tmp_path / "model.safetensors", tmp_path / "graph.pt"
    result = run_module(
        "pipeline.export", f"checkpoint={smoke_run['dir']}", f"out={out}", f"torchscript={graph}", "trace_size=48"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    model = load_pipeline(out)
    traced = torch.jit.load(str(graph))
    x = torch.rand(1, 3, 64, 32)
    with torch.no_grad():
        expected = TracingOutputs(model)(x, model.corrupted_edge(x))
        got = traced(x, model.corrupted_edge(x))
    assert all(torch.allclose(e, g, atol=1e-5) for e, g in zip(expected, got))
    again = run_module("pipeline.export", f"checkpoint={smoke_run['dir']}", f"out={out}")
    assert again.returncode != 0 and "overwrite=true" in again.stderr and "Traceback" not in again.stderr


def test_foreign_safetensors_are_refused(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(CheckpointError, match="not a blindfill model"):
        BlindInpainter.from_pretrained(tmp_path / "other.safetensors")
    (tmp_path / "garbage.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(CheckpointError):
        BlindInpainter.from_pretrained(tmp_path / "garbage.safetensors")


def test_export_torchscript_refuses_a_bad_trace_size(inpainter, tmp_path):
    with pytest.raises(ConfigError, match="multiple of 16"):
        export_torchscript(inpainter.pipeline, tmp_path / "g.pt", size=50)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_green_and_gray_masks(dtype):
    scale = {np.uint8: 255, np.uint16: 65535, np.float32: 1.0}[dtype]
    image = np.random.default_rng(0).uniform(0.25, 0.75, (8, 8, 3))
    image[3:5, 3:5] = (0.0, 1.0, 0.0)
    image = (image * scale).astype(dtype)
    assert green_mask(image)[1:7, 1:7].all() and green_mask(image).sum() == 36  # grown by 2 px


def test_read_mask_thresholds_gray_and_rejects_colour_without_green(tmp_path):
    gray = np.zeros((10, 10), np.uint8)
    gray[:3] = 200
    Image.fromarray(gray).save(tmp_path / "m.png")
    assert read_mask(tmp_path / "m.png").sum() == 30
    write_photo(tmp_path / "colour.png", 10, 10)
    from data.io import ImageReadError

    with pytest.raises(ImageReadError, match="pure green"):
        read_mask(tmp_path / "colour.png")


def test_settings_are_validated():
    with pytest.raises(ConfigError, match="mode"):
        InpaintSettings(mode="magic")
    with pytest.raises(ConfigError, match="channels_last"):
        InpaintSettings(channels_last=("gan",))


def test_channels_last_default_gives_the_contiguous_outputs(inpainter):
    x = torch.rand(1, 3, 48, 64)
    fast = inpainter.inpaint(x)
    plain = inpainter.with_settings(channels_last=()).inpaint(x)
    inpainter.with_settings(channels_last=InpaintSettings().channels_last)
    assert all(torch.allclose(fast[k], plain[k], atol=1e-5) for k in fast)


def test_the_shipped_model_repairs_without_a_checkpoint(tmp_path):
    """No checkpoint=: the model installed with the package (pipeline/weights/), a safetensors
    pipeline file of at most 40 MB whose mask rule was chosen on validation photos."""
    from common.checkpoint import read_model_file
    from pipeline.inference.inpainter import BlindInpainter
    from pipeline.model import SHIPPED_MODEL

    assert SHIPPED_MODEL.is_file() and SHIPPED_MODEL.stat().st_size <= 40 * 2**20
    model = read_model_file(SHIPPED_MODEL, "pipeline")
    assert 0.5 <= model.config["pipeline"]["hole_threshold"] < 1
    inpainter = BlindInpainter.from_pretrained()
    clean = torch.rand(1, 3, 64, 64)
    assert inpainter.inpaint(clean)["output"].shape == clean.shape
    photo = write_photo(tmp_path / "in" / "photo.png", 48, 40)
    report = _inpaint(f"input={photo}", f"output={tmp_path / 'out'}")
    assert report["written"] == [tmp_path / "out" / "photo.png"]


FLAT_COLOURS = {
    "saturated green": (0.20, 0.55, 0.15),
    "blue": (0.15, 0.30, 0.70),
    "red": (0.75, 0.15, 0.10),
    "skin": (0.87, 0.67, 0.55),
    "sky": (0.53, 0.72, 0.90),
    "grey": (0.50, 0.50, 0.50),
    "yellow": (0.90, 0.80, 0.20),
    "purple": (0.45, 0.20, 0.55),
}


@pytest.mark.parametrize("colour", list(FLAT_COLOURS))
def test_the_shipped_model_fills_a_flat_colour_with_its_surroundings_colour(colour):
    """A 40×40 hole (noise in it) in a flat 256² photo, given as the mask: the fill's mean colour
    is within 0.03 of the surrounding ring's, per channel. A generator that has not learned every
    colour direction fills green with tan."""
    from pipeline.inference.inpainter import BlindInpainter

    size, hole = 256, slice(108, 148)
    mask = torch.zeros(1, 1, size, size)
    mask[..., hole, hole] = 1
    ring = torch.zeros_like(mask)
    ring[..., 100:156, 100:156] = 1
    ring -= mask
    photo = torch.tensor(FLAT_COLOURS[colour]).view(1, 3, 1, 1).expand(1, 3, size, size)
    noise = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    output = BlindInpainter.from_pretrained().inpaint(photo * (1 - mask) + noise * mask, mask, "masked")["output"]
    fill = (output * mask).sum(dim=(2, 3)) / mask.sum()
    around = (output * ring).sum(dim=(2, 3)) / ring.sum()
    assert (fill - around).abs().max() <= 0.03, f"{colour}: fill {fill.tolist()} around {around.tolist()}"


def test_a_file_name_that_is_not_utf8_is_repaired_like_any_other(smoke_run, tmp_path):
    """OpenCV once segfaulted writing such a name, losing the whole run: PNGs are encoded in
    memory and written by Python."""
    folder = tmp_path / "in"
    write_photo(folder / "ok.png", 32, 32)
    odd = os.fsdecode(b"bad\xff.png")
    write_photo(folder / odd, 32, 32)
    report = _inpaint(f"input={folder}", f"output={tmp_path / 'out'}", f"checkpoint={smoke_run['model']}")
    assert sorted(report["written"]) == sorted([tmp_path / "out" / "ok.png", tmp_path / "out" / odd])
    assert Image.open(tmp_path / "out" / odd).size == (32, 32)


def test_a_link_planted_as_the_temporary_file_is_never_followed(smoke_run, tmp_path):
    photo = write_photo(tmp_path / "in" / "ok.png", 32, 32)
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("x")
    for name in (".ok.partial.png", "ok.png"):  # the old temporary name, and the result itself
        (out / name).unlink(missing_ok=True)
        (out / name).symlink_to(victim)
    _inpaint(f"input={photo}", f"output={out}", f"checkpoint={smoke_run['model']}", "overwrite=true")
    assert victim.read_text() == "x"
    result = out / "ok.png"
    assert result.is_file() and not result.is_symlink() and Image.open(result).size == (32, 32)
    assert [p for p in out.glob(".*.partial.png") if not p.is_symlink()] == []  # only the planted link, untouched


def test_a_fifo_as_input_is_refused_instead_of_waiting_forever(smoke_run, tmp_path):
    fifo = tmp_path / "photo.png"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="not a regular file or a folder"):
        _inpaint(f"input={fifo}", f"output={tmp_path / 'out'}", f"checkpoint={smoke_run['model']}")
    folder = tmp_path / "in"
    write_photo(folder / "ok.png", 32, 32)
    os.mkfifo(folder / "stuck.png")  # inside a folder: not an image file, passed over
    report = _inpaint(f"input={folder}", f"output={tmp_path / 'out2'}", f"checkpoint={smoke_run['model']}")
    assert report["written"] == [tmp_path / "out2" / "ok.png"]


def test_a_mask_with_transparency_uses_its_alpha(smoke_run, tmp_path):
    """A hole drawn on a transparent layer: opaque = hole (composited on white, the transparent
    background would otherwise make the whole photo a hole)."""
    from data.io import read_mask

    layer = np.zeros((40, 48, 4), np.uint8)
    layer[10:20, 5:25] = (255, 0, 0, 255)  # a red stroke, opaque
    Image.fromarray(layer, "RGBA").save(tmp_path / "mask.png")
    mask = read_mask(tmp_path / "mask.png")
    assert mask.shape == (40, 48) and mask.sum() == 200 and mask[10:20, 5:25].min() == 1
    photo = write_photo(tmp_path / "in" / "photo.png", 48, 40)
    out = tmp_path / "out"
    _inpaint(
        f"input={photo}",
        f"output={out}",
        f"checkpoint={smoke_run['model']}",
        "mode=masked",
        f"mask={tmp_path / 'mask.png'}",
    )
    original = np.asarray(Image.open(photo).convert("RGB"))
    repaired = np.asarray(Image.open(out / "photo.png"))
    assert np.array_equal(repaired[30:], original[30:])  # far from the hole: untouched


@pytest.mark.parametrize("problem", ["a file", "unwritable", "a folder in the way"])
def test_output_problems_are_found_before_any_work(smoke_run, tmp_path, problem):
    photo = write_photo(tmp_path / "in" / "photo.png", 32, 32)
    out = tmp_path / "out"
    if problem == "a file":
        out.write_text("not a folder")
        message = "is a file, not a folder"
    elif problem == "unwritable":
        if os.geteuid() == 0:  # root writes into any mode-0500 folder; nobody makes folders in /proc
            out = Path("/proc/blindfill-test-output")
        else:
            out.mkdir()
            out.chmod(0o500)
        message = "cannot be written to"
    else:
        (out / "photo.png").mkdir(parents=True)
        message = "is a folder, where a result would be written"
    with pytest.raises(ConfigError, match=message):
        _inpaint(f"input={photo}", f"output={out}", f"checkpoint={smoke_run['model']}", "overwrite=true")


def test_folders_decode_and_write_beside_the_networks_and_a_write_error_still_ends_the_run(
    inpainter, odd_folder, tmp_path, monkeypatch
):
    """Issue 16, item 5: decoding and writing run in their own threads, overlapping the networks;
    the report is the same, and a failed write (a full disk) still stops the command."""
    import threading

    import pipeline.inference.batch as module

    threads = {"load": set(), "write": set()}
    real_load, real_write = module.load_job, module._write_results

    def load(*args):
        threads["load"].add(threading.current_thread().name)
        return real_load(*args)

    def write(*args):
        threads["write"].add(threading.current_thread().name)
        return real_write(*args)

    monkeypatch.setattr(module, "load_job", load)
    monkeypatch.setattr(module, "_write_results", write)
    jobs = module.plan_jobs(odd_folder, tmp_path / "out", None, "blind")
    report = module.run(inpainter, jobs, "blind", batch_size=2, progress=False)
    assert sorted(report["written"]) == sorted(job.target for job in jobs) and all(
        p.is_file() for p in report["written"]
    )
    assert {name.split("_")[0] for name in threads["load"]} == {"inpaint-read"}
    assert {name.split("_")[0] for name in threads["write"]} == {"inpaint-write"}

    def full_disk(job, *args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(module, "_write_results", full_disk)
    with pytest.raises(OSError, match="No space left"):
        module.run(inpainter, jobs, "blind", overwrite=True, progress=False)


@pytest.fixture(scope="module")
def glcic_run(tmp_path_factory):
    from pipeline.training.stage import train
    from tests.conftest import compose_train

    folder = tmp_path_factory.mktemp("glcic")
    train(compose_train(folder, "glcic", f"hydra.run.dir={folder}"), folder)
    return folder


def test_another_systems_stage_fills_the_hole_the_model_finds(smoke_run, glcic_run, tmp_path):
    """method=glcic checkpoint=RUN: the stage fills in the IPN's place (no EPN), masked and blind,
    small and large photos (the crop path), every known pixel kept."""
    photo = write_photo(tmp_path / "in" / "photo.png", 64, 48)
    mask = np.zeros((48, 64), np.uint8)
    mask[10:30, 20:40] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    common = (f"input={photo}", f"mask_checkpoint={smoke_run['model']}", "method=glcic", f"checkpoint={glcic_run}")
    _inpaint(*common, f"output={tmp_path / 'masked'}", "mode=masked", f"mask={tmp_path / 'mask.png'}")
    original = np.asarray(Image.open(photo).convert("RGB"))
    repaired = np.asarray(Image.open(tmp_path / "masked" / "photo.png"))
    known = mask == 0
    assert np.array_equal(repaired[known], original[known]) and not np.array_equal(repaired[~known], original[~known])
    for size in (512, 32):  # 32: the photo is larger than the working size
        out = tmp_path / f"blind{size}"
        _inpaint(*common, f"output={out}", f"working_size={size}", "save_intermediates=true")
        blind, found = np.asarray(Image.open(out / "photo.png")), np.asarray(Image.open(out / "photo_mask.png"))
        assert np.array_equal(blind[found == 0], original[found == 0])

    base = BlindInpainter.from_pretrained(smoke_run["model"])
    from pipeline.model import load_fill_stage

    filling = base.with_fill_stage(load_fill_stage(glcic_run, "glcic"))
    assert filling.pipeline.epn is None and type(filling.pipeline.ipn).__name__ == "GLCICModule"
    assert filling.pipeline.mpn is base.pipeline.mpn  # the mask is found as the model finds it
    image = torch.rand(1, 3, 40, 40)
    torch.testing.assert_close(filling.masks(image)["mask"], base.masks(image)["mask"])


def test_the_web_page_repairs_with_another_systems_stage(smoke_run, glcic_run, tmp_path):
    """pipeline.serve method=glcic checkpoint=RUN: the page's repairs are the command line's."""
    from conftest import compose_config
    from fastapi.testclient import TestClient

    from pipeline.serve import serve_app

    common = (f"mask_checkpoint={smoke_run['model']}", "method=glcic", f"checkpoint={glcic_run}")
    app, _limits = serve_app(compose_config("serve", *common, "working_size=512"))
    client = TestClient(app, base_url="http://127.0.0.1:8000")
    health = client.get("/api/health").json()
    assert health["status"] == "ok" and health["model"]["name"] == f"glcic: {glcic_run}"
    photo = write_photo(tmp_path / "in" / "photo.png", 64, 48)
    response = client.post("/api/inpaint", files={"image": ("photo.png", photo.read_bytes())}, data={"format": "png"})
    assert response.status_code == 200, response.text
    _inpaint(f"input={photo}", f"output={tmp_path / 'out'}", *common)
    assert response.content == (tmp_path / "out" / "photo.png").read_bytes()
    for overrides, error in [
        (("method=glcic",), "method=glcic needs checkpoint="),
        (("method=deepfill",), "unknown method 'deepfill'"),
        ((f"mask_checkpoint={smoke_run['model']}",), "method=ours finds it with its own MPN"),
    ]:
        with pytest.raises(ConfigError, match=error):
            serve_app(compose_config("serve", *overrides))


@pytest.mark.parametrize(
    ("method", "error"),
    [
        ("glcic", "holds a 'pipeline' model, not 'glcic'"),
        ("deepfill", "unknown method 'deepfill'; expected one of ours"),
    ],
)
def test_a_method_checkpoint_of_another_kind_is_a_one_line_error(smoke_run, tmp_path, method, error):
    photo = write_photo(tmp_path / "in" / "photo.png", 32, 32)
    result = run_module(
        "pipeline.inpaint", f"input={photo}", f"output={tmp_path / 'out'}", f"method={method}",
        f"checkpoint={smoke_run['model']}",
    )  # fmt: skip
    assert result.returncode != 0 and error in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
