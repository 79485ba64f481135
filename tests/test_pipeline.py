"""The one blind pipeline (pipeline/model.py): what training, inference and export run is the same
module, its mask rule and its training switch, and the package structure that keeps it so."""

import ast
import inspect
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from common.errors import ConfigError
from pipeline.export import export_torchscript
from pipeline.inference.inpainter import BlindInpainter, InpaintSettings
from pipeline.model import BlindPipeline, load_pipeline, save_pipeline
from pipeline.training.joint import JointModule
from tests.conftest import ROOT

STAGE_CHECKPOINTS = ("mpn", "epn", "ipn")


@pytest.fixture(scope="module")
def joint(smoke_run):
    module = JointModule.from_stage_checkpoints({n: smoke_run[n] for n in STAGE_CHECKPOINTS})
    with torch.no_grad():  # non-trivial weights everywhere, so a mix-up of stages cannot pass unnoticed
        for p in module.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    return module.eval()


def _corrupted(batch=2, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, 3, size, size, generator=g)
    x[..., 16:40, 20:44] = torch.tensor([0.0, 1.0, 0.0])[:, None, None]  # a blotch to find
    return x


def test_joint_forward_inpainter_and_torchscript_are_identical(joint, tmp_path):
    """The same weights and input through the joint module's forward (its inference setting), the
    BlindInpainter and the exported TorchScript graph: identical outputs (contiguous fp32)."""
    x = _corrupted()
    pipeline = joint.pipeline
    known = pipeline.corrupted_edge(x)
    with torch.no_grad():
        trained = joint(x, known)
    inpainter = BlindInpainter(pipeline, InpaintSettings(channels_last=()))
    served = inpainter.inpaint(x)
    export_torchscript(pipeline, tmp_path / "graph.pt", size=64)
    with torch.no_grad():
        traced = dict(zip(("output", "mask", "edges"), torch.jit.load(str(tmp_path / "graph.pt"))(x, known)))
    trained["output"] = trained["output"].clamp(0, 1)  # as the inpainter hands it out
    traced["output"] = traced["output"].clamp(0, 1)
    for key in ("output", "mask", "edges"):
        assert (served[key] - trained[key]).abs().max() <= 1e-5, key
        assert (traced[key] - trained[key]).abs().max() <= 1e-5, key
    assert trained["mask"].amax() == 1 and trained["mask"].amin() < 1  # a real mix of hole and known pixels


def test_channels_last_stays_within_its_stated_tolerance(joint):
    """README, "Benchmark": channels-last outputs within 1e-5 of contiguous fp32."""
    x = _corrupted(seed=1)
    plain = BlindInpainter(joint.pipeline, InpaintSettings(channels_last=())).inpaint(x)
    fast = BlindInpainter(joint.pipeline, InpaintSettings(channels_last=("mpn", "epn", "ipn"))).inpaint(x)
    BlindInpainter(joint.pipeline, InpaintSettings(channels_last=()))  # back to contiguous for the other tests
    assert all((plain[k] - fast[k]).abs().max() <= 1e-5 for k in plain)


def test_the_exported_model_file_runs_the_same_pipeline(joint, smoke_run, tmp_path):
    path = save_pipeline(joint.pipeline, tmp_path / "model.safetensors")
    x = _corrupted(seed=2)
    with torch.no_grad():
        expected = joint.pipeline(x, joint.pipeline.corrupted_edge(x))
        got = load_pipeline(path)(x, joint.pipeline.corrupted_edge(x))
    assert all(torch.equal(expected[k], got[k]) for k in expected)


def test_the_mask_rule_per_mode():
    pipeline = BlindPipeline(hole_threshold=0.5, dilate=1)
    predicted = torch.zeros(1, 1, 7, 7)
    predicted[..., 3, 3], predicted[..., 0, 6], predicted[..., 5, 5] = 0.9, 0.3, 0.2
    blind = pipeline.mask_rule(predicted, "blind")
    assert torch.equal(blind[..., 2:5, 2:5], torch.ones(1, 1, 3, 3))  # confident pixel: full hole, grown 1 px
    assert blind[..., 0, 6] == 0.3 and blind[..., 5, 5] == 0.2  # elsewhere the soft m̂ stays
    assert torch.equal(pipeline.mask_rule(predicted, "denoise"), predicted)
    given = torch.rand(1, 1, 7, 7)
    assert torch.equal(pipeline.masks(torch.rand(1, 3, 7, 7), given, "masked")["mask"], given)
    with pytest.raises(ConfigError, match="needs a mask"):
        pipeline.masks(torch.rand(1, 3, 7, 7), None, "masked")
    with pytest.raises(ConfigError, match="unknown mode"):
        pipeline.masks(torch.rand(1, 3, 7, 7), given, "magic")
    with pytest.raises(ConfigError, match="hole_threshold"):
        BlindPipeline(hole_threshold=1.5)


@pytest.mark.parametrize("straight_through", [True, False])
def test_straight_through_keeps_the_rules_values_and_passes_the_gradient(straight_through):
    pipeline = BlindPipeline(hole_threshold=0.5, dilate=1, straight_through=straight_through)
    predicted = torch.full((1, 1, 6, 6), 0.2)
    predicted[..., 2, 2] = 0.8
    predicted.requires_grad_(True)
    mask = pipeline.mask_rule(predicted)
    with torch.no_grad():
        assert torch.allclose(mask, pipeline.mask_rule(predicted), atol=1e-7)  # the forward is the rule's
    mask.sum().backward()
    hardened = mask.detach() == 1
    if straight_through:
        assert torch.equal(predicted.grad, torch.ones_like(predicted))  # every pixel of m̂ gets the gradient
    else:
        assert (predicted.grad[hardened] == 0).all() and (predicted.grad[~hardened] == 1).all()


def test_the_upstream_gives_the_truth_for_missing_stages():
    pipeline = BlindPipeline(dilate=0)
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 2:5, 2:5] = 0.7
    batch = {"corrupted": torch.rand(1, 3, 8, 8), "mask": mask, "edge": torch.ones(1, 1, 8, 8)}
    fed = pipeline.upstream(batch)
    assert torch.equal(fed["mask"], (mask > 0.5).float()) and torch.equal(fed["predicted_edges"], batch["edge"])


# -- the structure that keeps the pipeline in one place -------------------------------------------


def _imports(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module


@pytest.mark.parametrize("package", ["common", "data", "mpn", "epn", "ipn", "pipeline/methods"])
def test_imports_point_one_way(package):
    """``common <- data <- mpn, epn, ipn <- pipeline/methods <- pipeline``: no stage imports another
    stage or pipeline, common and data import no stage, and the other systems (pipeline/methods)
    use common, data and the stages' layers but nothing else of pipeline."""
    forbidden = {"pipeline", *({"mpn", "epn", "ipn"} - {package})}
    if package in ("common", "data"):
        forbidden |= {"mpn", "epn", "ipn"}
    if package == "common":
        forbidden.add("data")
    for path in (ROOT / package).rglob("*.py"):
        if package == "pipeline/methods":
            bad = [m for m in _imports(path) if m.startswith("pipeline") and not m.startswith("pipeline.methods")]
        else:
            bad = [m for m in _imports(path) if m.split(".")[0] in forbidden]
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def _runtime_imports(path: Path, modules: set[str]) -> set[str]:
    """The project modules ``path`` imports anywhere in it (functions included), except under
    ``if TYPE_CHECKING:`` (annotations only)."""
    found = set()

    def visit(node):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            return
        if isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                found.add(full if full in modules else node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return found & modules


def test_no_import_circles():
    """No module imports (directly or through others) a module that imports it back, lazy imports
    inside functions included."""
    files = {
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
        for package in ("common", "conf", "data", "mpn", "epn", "ipn", "pipeline")
        for p in (ROOT / package).rglob("*.py")
    }
    graph = {name: _runtime_imports(path, set(files)) - {name} for name, path in files.items()}

    def reaches(start, goal, seen):
        for nxt in graph[start]:
            if nxt == goal or (nxt not in seen and not seen.add(nxt) and reaches(nxt, goal, seen)):
                return True
        return False

    circles = sorted(name for name in graph if reaches(name, name, set()))
    assert not circles, f"modules on an import circle: {circles}"


def test_inpaint_imports_only_what_it_runs():
    """``pipeline.inpaint`` with its schemas (``conf.schemas.register("inference")``) loads no
    training, evaluation, benchmarking or other system's code, and no training data."""
    code = (
        "import sys; from conf.schemas import register; register('inference'); import pipeline.inpaint; "
        "print(sorted(m for m in sys.modules if m.startswith(('pipeline.training', 'pipeline.methods.', "
        "'pipeline.evaluation', 'pipeline.benchmarking', 'data.datamodule', 'data.damage', 'data.datasets'))))"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


COMMANDS = ("train", "inpaint", "evaluate", "export", "serve", "benchmark", "benchmark_peers")


@pytest.mark.parametrize("path", [f"pipeline/{name}.py" for name in COMMANDS] + ["data/preview.py"])
def test_commands_are_thin(path):
    """A command is its arguments and calls (at most ~150 lines); the work is in the library."""
    assert len((ROOT / path).read_text().splitlines()) <= 150


def _stage_calls(path):
    """Calls of a stage outside its owner: ``x.mpn(...)``, or a name bound to ``x.mpn`` (or
    ``getattr(x, "mpn")``) and then called."""
    tree = ast.parse(path.read_text())
    stages = {"mpn", "epn", "ipn"}

    def is_stage(node):
        if isinstance(node, ast.Attribute):
            return node.attr in stages
        return (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "getattr"
            and len(node.args) > 1
            and isinstance(node.args[1], ast.Constant)
            and node.args[1].value in stages
        )

    aliases = {
        target.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign) and is_stage(node.value)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and (
            is_stage(node.func) or (isinstance(node.func, ast.Name) and node.func.id in aliases)
        ):
            yield node.lineno


def test_the_stage_chain_is_connected_in_one_file():
    """Only pipeline/model.py calls a stage (the MPN, EPN or IPN), directly or through a name bound
    to one; the shared base class knows no stage by name."""
    users = sorted(
        str(p.relative_to(ROOT))
        for package in ("common", "data", "mpn", "epn", "ipn", "pipeline")
        for p in (ROOT / package).rglob("*.py")
        if any(_stage_calls(p))
    )
    assert users == ["pipeline/model.py"]
    assert not re.search(r"\b(mpn|epn|ipn|MPN|EPN|IPN)\b", (ROOT / "common" / "module.py").read_text())


def test_the_alias_hole_is_closed(tmp_path):
    """The check above sees a stage called through a local name, as ``found_masks`` once did."""
    sneaky = tmp_path / "sneaky.py"
    sneaky.write_text("def f(inpainter, x):\n    mpn = inpainter.pipeline.mpn\n    return mpn(x)\n")
    assert list(_stage_calls(sneaky)) == [3]


@pytest.mark.parametrize(
    "mode, size, large",
    [("blind", 48, "crop"), ("masked", 48, "crop"), ("denoise", 48, "crop"), ("blind", 80, "crop"),
     ("masked", 80, "crop"), ("blind", 80, "resize"), ("denoise", 80, "crop")],
)  # fmt: skip
def test_the_stages_run_only_inside_the_blind_pipeline(mode, size, large):
    """At run time too: every call of the MPN, EPN and IPN comes from a method of BlindPipeline,
    whichever strategy the inpainter picks (whole photo, crops, resized, full-resolution denoise)."""
    inpainter = BlindInpainter.from_pretrained(settings=InpaintSettings(working_size=32, large=large, channels_last=()))
    pipeline = inpainter.pipeline
    callers = []

    def record(*_):
        frame = sys._getframe(1)
        while frame is not None and not isinstance(frame.f_locals.get("self"), BlindPipeline):
            frame = frame.f_back
        callers.append(frame is not None)

    handles = [stage.register_forward_hook(record) for stage in (pipeline.mpn, pipeline.epn, pipeline.ipn)]
    try:
        image = (_corrupted(batch=1, size=size, seed=3)[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        noisy = np.clip(image + np.random.default_rng(0).normal(0, 25, image.shape), 0, 255).astype(np.uint8)
        hole = np.zeros(image.shape[:2], np.float32)
        hole[10:20, 8:30] = 1
        inpainter.inpaint_array(noisy if mode != "masked" else image, hole if mode == "masked" else None, mode)
    finally:
        for handle in handles:
            handle.remove()
    assert callers and all(callers)


def test_every_stage_has_the_same_shape():
    from epn import module as epn
    from ipn import module as ipn
    from mpn import module as mpn

    for package, cls in ((mpn, mpn.MPNModule), (epn, epn.EPNModule), (ipn, ipn.IPNModule)):
        assert callable(package.generator_inputs)
        for method in ("forward", "generate", "generator_loss", "validation_metrics", "grid_columns"):
            assert method in vars(cls), f"{cls.__name__}.{method}"
        assert "generator" in inspect.signature(cls).parameters


class CallCounter:
    def __init__(self, *modules):
        self.calls = 0
        self.handles = [m.register_forward_hook(self.count) for m in modules]

    def count(self, *_):
        self.calls += 1

    def remove(self):
        for handle in self.handles:
            handle.remove()


def test_a_clean_photo_comes_back_unchanged_at_the_mpns_cost():
    """Issue 16: where the mask is empty the EPN and the IPN do not run, and the photo comes back
    itself; in a batch mixing clean and damaged photos, the damaged ones get the full pipeline's
    result and the clean ones their own pixels."""
    inpainter = BlindInpainter.from_pretrained(settings=InpaintSettings(channels_last=()))
    pipeline = inpainter.pipeline
    x = _corrupted(batch=3, size=64, seed=2)
    empty = torch.zeros(3, 1, 64, 64)
    hole = empty.clone()
    hole[1, :, 10:30, 12:40] = 1
    counter = CallCounter(pipeline.epn, pipeline.ipn)
    try:
        clean = inpainter.inpaint(x, empty, "masked")
        assert counter.calls == 0 and torch.equal(clean["output"], x)
        assert torch.equal(clean["edges"], pipeline.corrupted_edge(x))
        mixed = inpainter.inpaint(x, hole, "masked")
        assert counter.calls == 2  # once each, on the damaged photo alone
    finally:
        counter.remove()
    with torch.no_grad():
        full = pipeline(x, pipeline.corrupted_edge(x), hole, "masked")
    assert torch.equal(mixed["output"][[0, 2]], x[[0, 2]])
    assert (mixed["output"][1] - full["output"][1].clamp(0, 1)).abs().max() <= 1e-5
    assert (mixed["edges"] - full["edges"]).abs().max() <= 1e-5

    photo = (x[0].permute(1, 2, 0).numpy() * 255).round().astype("uint8")
    large = InpaintSettings(working_size=32, channels_last=())
    result = BlindInpainter(pipeline, large).inpaint_array(photo, empty[0, 0].numpy(), "masked", in_place=True,
                                                           intermediates=False)  # fmt: skip
    assert result["output"] is photo  # above the working size too: nothing pasted back, nothing copied
