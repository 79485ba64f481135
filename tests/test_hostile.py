"""The hostile-input suite: every class of bad input a user or an attacker can hand a command.

Each case runs a command's ``main`` as ``python -m ...`` does (in-process: Hydra parses
``sys.argv``), in a folder whose every file is fingerprinted before, and asserts:

- the command ends with one line, ``error: ...`` naming the problem (or, for an unreadable image
  among good ones, reports it and repairs the rest), never a traceback;
- no input is modified and nothing is written outside the output folder (or the run folder);
- no code in a hostile file runs (a pickle payload would create ``PWNED``).

Classes: corrupt and odd images, names, links, FIFOs, bombs, hostile model and weights files,
config values of the wrong type or range, output problems; and a training run killed with SIGKILL
and resumed. The slow cases (a 50-megapixel photo in bounded memory; a run stopped with Ctrl-C and
resumed) carry the ``slow`` marker: ``python -m pytest -m slow``.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from data.preview import main as preview_main
from pipeline.evaluate import main as evaluate_main
from pipeline.export import main as export_main
from pipeline.inpaint import main as inpaint_main
from pipeline.model import SHIPPED_MODEL
from pipeline.train import main as train_main
from tests.conftest import ROOT, write_photo

MAINS = {
    "inpaint": inpaint_main,
    "train": train_main,
    "evaluate": evaluate_main,
    "export": export_main,
    "preview": preview_main,
}


# -- the arena: a folder fingerprinted before and after ------------------------------------------


def fingerprint(root: Path) -> dict[str, tuple]:
    """Every entry under ``root`` (links not followed): kind and content hash."""
    prints = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            prints[str(path)] = ("link", os.readlink(path))
        elif path.is_file():
            prints[str(path)] = ("file", hashlib.sha256(path.read_bytes()).hexdigest())
        elif path.is_dir():
            prints[str(path)] = ("dir",)
        else:
            prints[str(path)] = ("other",)
    return prints


class Arena:
    """``tmp_path`` with ``in/`` (photos), ``files/`` (hostile files) and an output folder
    ``out/``; :meth:`run` runs a command and checks the rules of the module docstring."""

    def __init__(self, root: Path, monkeypatch, capsys):
        self.root, self.monkeypatch, self.capsys = root, monkeypatch, capsys
        self.inputs, self.files, self.out = root / "in", root / "files", root / "out"
        write_photo(self.inputs / "ok.png", 48, 40)
        self.files.mkdir()

    def run(self, command: str, *args: str, writes: tuple[Path, ...] = ()) -> str:
        """Run ``command`` with ``args``; returns its one-line error (``""`` when it succeeded)."""
        before = fingerprint(self.root)
        self.monkeypatch.chdir(self.root)
        self.monkeypatch.setattr(sys, "argv", [command, *args])
        self.monkeypatch.delenv("BLINDFILL_DEBUG", raising=False)
        try:
            MAINS[command]()
            message = ""
        except SystemExit as stop:
            message = "" if stop.code in (None, 0) else str(stop.code)
        captured = self.capsys.readouterr()
        assert "Traceback" not in captured.err + captured.out, captured.err[-2000:]
        assert not message or (message.startswith("error: ") and "\n" not in message), message
        assert not (self.root / "PWNED").exists(), "code in a hostile file ran"
        after = fingerprint(self.root)
        allowed = (self.out, *writes)
        for path in set(before) | set(after):
            if before.get(path) != after.get(path):
                assert any(Path(path).is_relative_to(a) for a in allowed), f"{path} changed outside the output"
        return message

    def hostile(self, name: str, data: bytes) -> Path:
        path = self.files / name
        path.write_bytes(data)
        return path


@pytest.fixture
def arena(tmp_path, monkeypatch, capsys):
    return Arena(tmp_path, monkeypatch, capsys)


def pickle_payload(path: Path) -> Path:
    """A torch file whose unpickling would create ``PWNED`` next to it."""

    class Payload:
        def __reduce__(self):
            return (open, (str(path.parent.parent / "PWNED"), "w"))

    torch.save({"state_dict": {"x": Payload()}, "blindfill": {"stage": "joint", "format": 2}}, path)
    return path


def model_file(path: Path, change) -> Path:
    """The shipped model with its metadata edited by ``change(metadata)``."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(SHIPPED_MODEL), "pt") as f:
        metadata, state = dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    config = json.loads(metadata["config"])
    change(metadata, config)
    if "config" in metadata:
        metadata["config"] = metadata["config"] if isinstance(metadata["config"], str) else json.dumps(config)
    save_file(state, str(path), metadata=metadata)
    return path


def _set(*keys, value):
    def change(metadata, config):
        node = config
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value
        metadata["config"] = json.dumps(config)

    return change


# -- hostile model and weights files --------------------------------------------------------------


MODEL_FILES = {
    "system file": (lambda a: Path("/etc/passwd"), "not a readable checkpoint"),
    "random bytes": (lambda a: a.hostile("r.ckpt", os.urandom(4096)), "checkpoint"),
    "pickle payload": (lambda a: pickle_payload(a.files / "evil.ckpt"), "refusing to load"),
    "zip of nothing": (lambda a: a.hostile("z.ckpt", b"PK\x05\x06" + b"\x00" * 18), "checkpoint"),
    "safetensors garbage": (lambda a: a.hostile("g.safetensors", b"\xff" * 64), "safetensors"),
    "no metadata": (
        lambda a: model_file(a.files / "n.safetensors", lambda m, c: m.clear()),
        "not a blindfill model",
    ),
    "bad json": (
        lambda a: model_file(a.files / "j.safetensors", lambda m, c: m.update(config="{oops")),
        "unreadable blindfill metadata",
    ),
    "no stages": (
        lambda a: model_file(a.files / "s.safetensors", lambda m, c: m.update(config=json.dumps({"pipeline": {}}))),
        "lacks the configuration of the stages",
    ),
    "unknown argument": (
        lambda a: model_file(a.files / "u.safetensors", _set("stages", "mpn", "bogus", value=3)),
        "unknown MPNModule argument",
    ),
    "6.9 TB width": (
        lambda a: model_file(a.files / "w.safetensors", _set("stages", "mpn", "generator", "width_mult", value=1e9)),
        "out of range",
    ),
    "absurd depth": (
        lambda a: model_file(a.files / "d.safetensors", _set("stages", "mpn", "generator", "depth", value=1000)),
        "depth must be in",
    ),
    "wrong type": (
        lambda a: model_file(a.files / "t.safetensors", _set("stages", "ipn", "lr", value="fast")),
        "lr",
    ),
    "negative sigma": (
        lambda a: model_file(a.files / "e.safetensors", _set("pipeline", "edge_sigma", value=-1)),
        "edge_sigma",
    ),
    "newer format": (
        lambda a: model_file(a.files / "v.safetensors", lambda m, c: m.update(version="99")),
        "newer blindfill",
    ),
    "7.4 G parameters": (
        lambda a: model_file(
            a.files / "p.safetensors",
            _set("stages", "mpn", "generator", value={"base_channels": 4096, "max_channels": 4096, "depth": 8}),
        ),
        "M parameters",
    ),
    "joint without hyper_parameters": (
        lambda a: (
            torch.save({"state_dict": {}, "blindfill": {"stage": "joint", "format": 2}}, a.files / "j.ckpt")
            or a.files / "j.ckpt"
        ),
        "lacks the configuration of the stages",
    ),
    "a folder without a model": (lambda a: a.files, "model"),
}


@pytest.mark.parametrize("case", list(MODEL_FILES))
def test_hostile_model_files_are_refused_in_one_line(arena, case):
    make, expected = MODEL_FILES[case]
    path = make(arena)
    message = arena.run("inpaint", f"input={arena.inputs}", f"output={arena.out}", f"checkpoint={path}")
    assert expected in message
    assert not arena.out.exists() or not any(arena.out.iterdir())


@pytest.mark.parametrize("command", ["evaluate", "export"])
def test_other_commands_refuse_a_pickle_payload(arena, command):
    evil = pickle_payload(arena.files / "evil.ckpt")
    args = [f"checkpoint={evil}"] + ([f"out={arena.out / 'm.safetensors'}"] if command == "export" else ["limit=1"])
    writes = (arena.root / "outputs",) if command == "evaluate" else ()
    assert "refusing to load" in arena.run(command, *args, f"hydra.run.dir={arena.out}", writes=writes)


def test_a_weights_file_that_runs_code_is_refused(arena):
    evil = pickle_payload(arena.files / "evil.pth")
    message = arena.run(
        "evaluate", "method=telea", "mode=masked", "limit=1", f"lpips_weights={evil}", f"hydra.run.dir={arena.out}"
    )
    assert "not a plain weights file" in message


# -- config values --------------------------------------------------------------------------------

STAGE_CHOICES = sorted(path.stem for path in (Path(__file__).parents[1] / "conf" / "stage").glob("*.yaml"))
TRAIN_CONFIGS = [
    (["data.batch_size=abc"], "could not be converted to Integer"),
    (["data.batch_size=0"], "data.batch_size=0: must be greater than or equal to 1"),
    (["data.batch_size=-1"], "data.batch_size=-1"),
    (["data.size=0"], "data.size=0"),
    (["data.size=-8"], "data.size=-8"),
    (["data.size=12"], "data.size=12: must be a multiple of 8"),
    (["data.num_workers=-2"], "data.num_workers=-2"),
    (["seed=abc"], "seed=abc"),
    (["seed=-3"], "seed=-3"),
    (["width_mult=0"], "width_mult=0"),
    (["stage.module.lr=fast"], "could not be converted to Float"),
    (["stage.module.lr=-1"], "stage.module.lr=-1.0: must be greater than 0"),
    (["stage.module.generator.depth=99"], "depth must be in 0..8"),
    (["stage.module.mask_loss=magic"], "mask_loss"),
    (["stage=nosuch"], "Available options in 'stage': " + ", ".join(STAGE_CHOICES)),
    (["masks=irregular", "~damage"], "masks.root"),
    (["damage=null"], "~damage"),
    (["data=folder", "data.dataset.root=in/ok.png"], "is an image, not a folder of images or a file list"),
    (["data=folder", "data.dataset.root=nowhere"], "nowhere"),
    (["stage.trainer.ipn.max_epochs=1"], "not in struct"),
    (["no_such_key=1"], "no_such_key"),
    (["trainer.accelerator=gpu"], "no CUDA GPU"),
    (["trainer.precision=bogus"], "trainer: Precision 'bogus' is invalid"),
    (["+trainer.bogus=1"], "trainer: Trainer.__init__() got an unexpected keyword argument 'bogus'"),
    (["data.clean_share=1.5"], "data.clean_share=1.5"),
]


@pytest.mark.parametrize("overrides,expected", TRAIN_CONFIGS, ids=[" ".join(o) for o, _ in TRAIN_CONFIGS])
def test_train_config_errors_are_one_line(arena, overrides, expected):
    if overrides == ["trainer.accelerator=gpu"] and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    stage = [] if any(o.startswith("stage=") for o in overrides) else ["stage=mpn"]
    runs = arena.root / "runs"
    message = arena.run(
        "train", *stage, "debug=smoke", *overrides, f"hydra.run.dir={runs}", "logger=csv", writes=(runs,)
    )
    assert expected in message, message


@pytest.mark.parametrize(
    "setting,stage", [("ckpt_path", "mpn"), ("init_from", "mpn"), ("stage.module.vgg_weights", "ipn")]
)
def test_training_never_unpickles_code(arena, setting, stage):
    evil = pickle_payload(arena.files / "evil.ckpt")
    runs = arena.root / "runs"
    message = arena.run(
        "train", f"stage={stage}", "debug=smoke", f"{setting}={evil}", f"hydra.run.dir={runs}", writes=(runs,)
    )
    refusal = "is not a plain weights file and was not loaded" if "vgg" in setting else "refusing to load"
    assert refusal in message, message


def test_the_readme_per_step_override_is_accepted(tmp_path):
    from tests.conftest import compose_chain

    cfg = compose_chain(
        tmp_path,
        "chain.trainer.ipn.max_epochs=1",
        "+chain.trainer.epn.limit_val_batches=2",
        "chain.trainer.ipn.precision=bf16-mixed",
    )
    from pipeline.training.chain import step_config

    assert step_config(cfg, "ipn", {}, tmp_path).trainer.max_epochs == 1
    assert step_config(cfg, "ipn", {}, tmp_path).trainer.precision == "bf16-mixed"  # precision per stage
    assert step_config(cfg, "epn", {}, tmp_path).trainer.precision == cfg.trainer.precision
    assert step_config(cfg, "epn", {}, tmp_path).trainer.limit_val_batches == 2
    assert step_config(cfg, "mpn", {}, tmp_path).trainer.max_epochs == cfg.trainer.max_epochs  # null: not set


INPAINT_CONFIGS = [
    (["batch_size=abc"], "could not be converted to Integer"),
    (["batch_size=0"], "batch_size=0: must be greater than or equal to 1"),
    (["working_size=abc"], "could not be converted to Integer"),
    (["working_size=8"], "working_size=8: must be greater than or equal to 16"),
    (["channels_last=[foo]"], "channels_last: unknown stage"),
    (["large=tile"], "large must be one of"),
    (["backend=tensorrt"], "backend must be one of"),
    (["mask_size=8"], "mask_size must be 0 (the photo's size) or at least 16"),
    (["crop_margin=-4"], "crop_margin=-4: must be greater than or equal to 0"),
    (["device=tpu"], "device must be auto, cpu or cuda"),
    (["mode=magic"], "unknown mode"),
    (["pipeline.hole_threshold=abc"], "could not be converted to Float"),
    (["pipeline.hole_threshold=1.5"], "hole_threshold must be in [0, 1)"),
    (["pipeline.edge_sigma=-1"], "edge_sigma must be >= 0"),
    (["pipeline.dilate=-1"], "dilate"),
    (["mask=in/ok.png"], "mask= is used with mode=masked"),
]


@pytest.mark.parametrize("overrides,expected", INPAINT_CONFIGS, ids=[" ".join(o) for o, _ in INPAINT_CONFIGS])
def test_inpaint_config_errors_are_one_line(arena, overrides, expected):
    message = arena.run("inpaint", f"input={arena.inputs}", f"output={arena.out}", *overrides)
    assert expected in message, message


@pytest.mark.parametrize(
    "args,expected",
    [
        (["input=null", "output=out"], "input"),
        (["input=in"], "Missing mandatory value: output"),
        (["input=", "output=out"], "input= is empty"),
        (["input=in", "output="], "output= is empty"),
        (["input=in", "output=in"], "is the input folder"),
        (["input=in", "output=in/sub"], "inside the input folder"),
        (["input=in/ok.png", "output=in"], "is the input folder"),
        (["input=nowhere", "output=out"], "does not exist"),
        (["input=in/ok.png", "output=masks", "mode=masked", "mask=masks"], "in the mask folder"),
        (["input=in/ok.png", "output=masks/out", "mode=masked", "mask=masks"], "in the mask folder"),
        (["input=in", "output=out", "mode=masked", "mask=nowhere"], "mask nowhere does not exist"),
    ],
)
def test_inpaint_paths_are_checked_before_any_work(arena, args, expected):
    write_photo(arena.root / "masks" / "ok.png", 48, 40)
    assert expected in arena.run("inpaint", *args)
    assert not (arena.root / "in" / "sub").exists() and not (arena.root / "masks" / "out").exists()


@pytest.mark.parametrize(
    "command,args,expected",
    [
        ("evaluate", ["per_kind=0"], "per_kind=0: must be greater than or equal to 1"),
        ("evaluate", ["limit=0"], "limit=0"),
        ("evaluate", ["protocol=magic"], "protocol must be one of"),
        ("evaluate", ["baselines=[magic]"], "magic"),
        ("evaluate", ["data.batch_size=abc"], "could not be converted to Integer"),
        ("export", ["checkpoint=/etc/passwd", "out=out/m.safetensors"], "not a readable checkpoint"),
        ("export", ["checkpoint=in", "out=in/m.safetensors"], "model"),
        ("preview", ["data.batch_size=abc"], "could not be converted to Integer"),
        ("preview", ["data.size=12"], "data.size=12"),
    ],
)
def test_other_commands_config_errors_are_one_line(arena, command, args, expected):
    assert expected in arena.run(command, *args, f"hydra.run.dir={arena.out}")


def test_the_debug_switch_shows_the_traceback(tmp_path):
    env = {**os.environ, "BLINDFILL_DEBUG": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.inpaint", "input=nowhere", f"output={tmp_path}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1 and "Traceback" in done.stderr and "does not exist" in done.stderr


# -- images: corrupt, odd, named, linked, bombs ---------------------------------------------------


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG header claiming ``width`` × ``height`` with almost no data (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


BAD_IMAGES = {
    "empty.png": lambda p: p.write_bytes(b""),
    "text.jpg": lambda p: p.write_text("not an image"),
    "truncated.png": lambda p: p.write_bytes((ROOT / "data" / "photos").glob("*.jpg").__next__().read_bytes()[:500]),
    "bomb.png": lambda p: p.write_bytes(_png_claiming(20000, 20000)),
    "zero.png": lambda p: p.write_bytes(_png_claiming(0, 10)),
    "link_to_passwd.png": lambda p: p.symlink_to("/etc/passwd"),
    "dangling.png": lambda p: p.symlink_to(p.parent / "missing.png"),
    "loop.png": lambda p: p.symlink_to(p),
}


@pytest.mark.parametrize("name", list(BAD_IMAGES))
def test_bad_images_are_reported_and_the_good_ones_repaired(arena, name):
    BAD_IMAGES[name](arena.inputs / name)
    message = arena.run("inpaint", f"input={arena.inputs}", f"output={arena.out}")
    assert message == ""
    assert (arena.out / "ok.png").is_file() and not (arena.out / name).exists()
    alone = arena.run("inpaint", f"input={arena.inputs / name}", f"output={arena.out / 'alone'}")
    assert alone.startswith("error: ")
    assert not (arena.out / "alone").exists() or not any((arena.out / "alone").iterdir())


ODD_IMAGES = {
    "cmyk.jpg": "CMYK",
    "palette.png": "P",
    "gray_alpha.png": "LA",
    "one_bit.png": "1",
    "gray16.png": "I;16",
    "rgba.png": "RGBA",
    "tiny.png": None,
}
ODD_NAMES = ["with space.png", "-leading-dash.png", "ünïcödé.png", "x" * 200 + ".png", "semi;colon.png"]


def test_odd_modes_and_names_are_repaired_with_sizes_kept(arena):
    expected = {}
    for name, mode in ODD_IMAGES.items():
        if mode is None:
            write_photo(arena.inputs / name, 1, 1)
        elif mode == "I;16":
            Image.fromarray((np.random.default_rng(0).random((40, 48)) * 65535).astype(np.uint16)).save(
                arena.inputs / name
            )
        else:
            write_photo(arena.inputs / name, 48, 40, mode=mode)
        expected[name] = (48, 40) if mode else (1, 1)
    for name in ODD_NAMES:
        write_photo(arena.inputs / name, 48, 40)
        expected[name] = (48, 40)
    assert arena.run("inpaint", f"input={arena.inputs}", f"output={arena.out}") == ""
    for name, size in expected.items():
        out = arena.out / f"{Path(name).stem}.png"
        assert Image.open(out).size == size, name
    import cv2

    assert cv2.imread(str(arena.out / "gray16.png"), cv2.IMREAD_UNCHANGED).dtype == np.uint16


def test_sixteen_bit_colour_stays_sixteen_bit_and_known_pixels_exact(arena):
    import cv2

    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:40, 0:48] / 48
    photo = np.stack([np.sin(5 * xx), np.cos(4 * yy), (xx + yy) / 2], -1) * 0.4 + 0.5
    photo = (photo * 65535).astype(np.uint16) + rng.integers(0, 8, (40, 48, 3), dtype=np.uint16)
    cv2.imwrite(str(arena.inputs / "deep.png"), photo[..., ::-1])
    hole = np.zeros((40, 48), np.uint8)
    hole[10:20, 10:30] = 255
    Image.fromarray(hole).save(arena.root / "hole.png")
    message = arena.run(
        "inpaint",
        f"input={arena.inputs / 'deep.png'}",
        f"output={arena.out}",
        "mode=masked",
        f"mask={arena.root / 'hole.png'}",
    )
    assert message == ""
    out = cv2.imread(str(arena.out / "deep.png"), cv2.IMREAD_UNCHANGED)[..., ::-1]
    assert out.dtype == np.uint16 and out.shape == photo.shape
    far = np.ones((40, 48), bool)
    far[5:25, 5:35] = False
    assert np.array_equal(out[far], photo[far])  # known pixels kept to the last of 16 bits


def test_a_fifo_among_inputs_never_blocks(arena):
    os.mkfifo(arena.inputs / "pipe.png")
    assert arena.run("inpaint", f"input={arena.inputs}", f"output={arena.out}") == ""
    assert "not a regular file" in arena.run("inpaint", f"input={arena.inputs / 'pipe.png'}", f"output={arena.out}")


def test_links_out_of_the_output_folder_are_never_followed(arena):
    victim = arena.root / "victim.txt"
    victim.write_text("x")
    arena.out.mkdir()
    (arena.out / "ok.png").symlink_to(victim)  # the result's own name
    (arena.out / ".ok.partial.png").symlink_to(victim)  # an old temporary name
    assert arena.run("inpaint", f"input={arena.inputs}", f"output={arena.out}", "overwrite=true") == ""
    assert victim.read_text() == "x" and not (arena.out / "ok.png").is_symlink()


@pytest.mark.parametrize("problem", ["a file", "a folder in the way", "unwritable"])
def test_output_problems_are_one_line_before_any_work(arena, problem):
    if problem == "a file":
        arena.out.write_text("x")
    elif problem == "a folder in the way":
        (arena.out / "ok.png").mkdir(parents=True)
    else:
        if os.geteuid() == 0:
            pytest.skip("root writes anywhere")
        arena.out.mkdir()
        arena.out.chmod(0o500)
    message = arena.run("inpaint", f"input={arena.inputs}", f"output={arena.out}", "overwrite=true")
    assert message.startswith("error: output") or "is a folder" in message


# -- slow: a 50-megapixel photo; a training run killed with SIGKILL ---------------------------------


@pytest.mark.slow
def test_a_50_megapixel_photo_is_repaired_within_2_gb(tmp_path):
    """Full-resolution work runs in row strips of the photo's own pixels (pipeline/inference/large.py)."""
    import cv2

    width, height = 8660, 5774  # 50.0 Mpx
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    photo = np.empty((height, width, 3), np.uint8)
    for c in range(3):
        photo[..., c] = (127 + 100 * np.sin(xx / (300 + 50 * c)) * np.cos(yy / 400)).astype(np.uint8)
    del xx, yy
    cv2.line(photo, (100, 200), (8000, 5000), (255, 255, 255), 40)
    (tmp_path / "in").mkdir()
    cv2.imwrite(str(tmp_path / "in" / "big.png"), photo)
    script = (
        "import resource, runpy, sys; sys.argv = ['pipeline.inpaint'] + sys.argv[1:];\n"
        "try:\n    runpy.run_module('pipeline.inpaint', run_name='__main__')\n"
        "finally:\n    print('PEAK_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)"
    )
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", script, f"input={tmp_path / 'in'}", f"output={tmp_path / 'out'}", "device=cpu"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    seconds = time.perf_counter() - start
    assert done.returncode == 0, done.stderr[-2000:]
    peak_gb = int(done.stderr.split("PEAK_KB")[-1].split()[0]) / 2**20
    assert peak_gb < 2.0, f"peak {peak_gb:.2f} GB"
    repaired = cv2.imread(str(tmp_path / "out" / "big.png"))
    assert repaired.shape == photo.shape
    print(f"50 Mpx: {seconds:.1f} s, peak {peak_gb:.2f} GB")


def _step_of(checkpoint: Path) -> int:
    for _ in range(20):  # the writer may be mid-rename
        try:
            return int(torch.load(checkpoint, map_location="cpu", weights_only=True)["global_step"])
        except (OSError, RuntimeError, EOFError, KeyError):
            time.sleep(0.2)
    raise AssertionError(f"{checkpoint} unreadable")


def _train(run_dir: Path, *overrides: str) -> subprocess.Popen:
    args = [
        sys.executable, "-m", "pipeline.train", "stage=mpn", "debug=smoke", f"hydra.run.dir={run_dir}",
        "trainer.enable_progress_bar=false", "trainer.max_epochs=1000", "data.num_workers=0", *overrides,
    ]  # fmt: skip
    return subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.parametrize("signal_name", ["SIGKILL", pytest.param("SIGINT", marks=pytest.mark.slow)])
def test_a_killed_run_resumes_from_its_last_save(tmp_path, signal_name):
    """``last.ckpt`` follows every validation (4 steps here) whatever the metric did, and an
    interrupt (Ctrl-C) saves on the way out; resuming continues from the saved step."""
    run_dir = tmp_path / "run"
    last = run_dir / "checkpoints" / "last.ckpt"
    run = _train(run_dir, "trainer.max_steps=2000")
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not (last.is_file() and _step_of(last) >= 12):
        time.sleep(0.3)
    assert last.is_file(), "no last.ckpt after 4 minutes"
    run.send_signal(getattr(signal, signal_name))
    run.communicate(timeout=120)
    saved = _step_of(last)
    assert saved >= 12 and (signal_name == "SIGINT" or saved % 4 == 0)

    resumed = _train(run_dir, f"ckpt_path={last}", f"trainer.max_steps={saved + 4}")
    log, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, log[-2000:]
    assert _step_of(last) == saved + 4
    logs = sorted((run_dir / "logs").glob("version_*/metrics.csv"), key=lambda p: p.stat().st_mtime)
    steps = [int(row.split(",")[header.index("step")]) for header, row in _rows(logs[-1])]
    assert steps and min(steps) >= saved - 1  # the resumed run logged no step before the saved one


def _rows(csv: Path):
    lines = csv.read_text().splitlines()
    header = lines[0].split(",")
    return [(header, line) for line in lines[1:] if line.strip()]
