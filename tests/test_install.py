"""The environment the README's install produces: torch 2.13.0 and a working torchvision."""

import importlib.util
import re
import shutil
import subprocess
import sys

import pytest
import torch

from tests.conftest import ROOT

FIX = ROOT / "scripts" / "torchvision_fix.py"
_spec = importlib.util.spec_from_file_location("torchvision_fix", FIX)
torchvision_fix = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(torchvision_fix)


def test_torch_is_the_pinned_version():
    # "CPU build, no CUDA package" is this project's CI machines' rule, checked by .ci/run: a
    # user's GPU machine has CUDA torch and nvidia packages, and the tests must pass there too.
    assert torch.__version__.startswith("2.13.0")


def test_torchvision_works_and_the_fix_is_then_a_no_op():
    proc = subprocess.run([sys.executable, str(FIX)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "nothing to do" in proc.stdout
    import torchvision
    from torchvision.ops import nms

    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]])
    assert nms(boxes, torch.tensor([0.9, 0.8, 0.7]), 0.5).tolist() == [0, 2]
    png = torchvision.io.encode_png(torch.full((3, 5, 7), 200, dtype=torch.uint8))
    assert torch.equal(torchvision.io.decode_image(png), torch.full((3, 5, 7), 200, dtype=torch.uint8))


@pytest.mark.skipif(shutil.which("cc") is None or shutil.which("readelf") is None, reason="needs cc and readelf")
def test_stub_library_defines_the_symbols(tmp_path):
    symbols = {"_ZN3c104cuda12device_countEv": "FUNC", "_ZN3c104cuda20CUDACachingAllocator9allocatorE": "OBJECT"}
    lib = tmp_path / "libstub.so"
    torchvision_fix._compile(torchvision_fix._stub_source(symbols), lib)
    defined = {name: kind for section, kind, name in torchvision_fix._dynamic_symbols(lib) if section != "UND"}
    assert defined["_ZN3c104cuda12device_countEv"] == "FUNC"
    assert defined["_ZN3c104cuda20CUDACachingAllocator9allocatorE"] == "OBJECT"


def test_readme_commands_and_ci_agree():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    blocks = re.findall(r"```(?:bash|sh)\n(.*?)```", readme, re.S)
    test_cmd = next(line for b in blocks for line in b.splitlines() if "pytest" in line).strip()
    assert ci.rstrip().splitlines()[-1].strip() == test_cmd
    install = next(b for b in blocks if "pip install" in b)
    for step in ('pip install --quiet -e ".[dev]"', "python scripts/torchvision_fix.py"):
        assert step.split()[-1] in install and step.split()[-1] in ci
