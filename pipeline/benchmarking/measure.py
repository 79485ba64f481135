"""What ``python -m pipeline.benchmark`` measures, and how.

Measures how fast the three stages train and infer on this machine, and how close that is to what
the machine can do:

- **machine peak**: the best achieved FLOP/s over square matmuls of the sides ``peak.matmul_sizes``
  in fp32 (and bf16 when the bf16 variant runs): the roofline reference every "% of peak" below is
  relative to (one size alone can sit below the machine's best: too small to fill the cores, or
  too large for the caches).
- **training** (``train.batch_size`` × ``train.size``², synthetic batch): one optimizer step per
  call. MPN: ``generate`` + the module's loss + backward + Adam step. GAN stages (EPN, IPN) time
  their two networks separately, with the modules' own losses and Adam settings
  (``configure_optimizers``): ``generator`` = ``generate(batch)`` + ``generator_loss`` (through a
  discriminator whose weights get no gradients, as Lightning's ``toggle_optimizer``) + backward +
  step; ``discriminator`` = ``discriminator_loss`` on fixed, detached generator outputs + backward
  + step. One real training iteration (D step, then G step, sharing one ``generate``) costs their
  sum, reported as ``G+D``.
- **inference** latency at batch 1 of each generator at each of ``sizes``, and of the full blind
  pipeline at each of ``pipeline_batches`` (images/s = batch / latency;
  :class:`pipeline.inference.inpainter.BlindInpainter`: MPN → Canny → EPN → IPN; it processes
  sides above its ``working_size`` at that size and pastes the upsampled fill back).
- **data**: samples/s of the training DataLoader alone (``data`` group, at ``train.size``² and
  ``train.batch_size``, its workers, each stage's needs: edges, intact share), over ``data_batches``
  batches after ``max(warmup, 1)`` untimed ones (the workers' start); epochs restart as training
  restarts them. Printed next to the training step it has to feed. With
  ``data.edge_device=accelerator`` the Canny edges are not in it (they run on the device).
- **photos** (the shipped model, fp32, as users run it): ``photos.megapixels`` photos (a bundled
  photo upscaled to 3:2, a caption and scratches drawn over ~2 % of it) repaired blind in their own
  pixels (:meth:`~pipeline.inference.inpainter.BlindInpainter.inpaint_array`, no decoding or encoding) with
  each ``photos.strategies`` (``large=crop`` / ``resize``): time and peak memory; ``pipeline.inpaint``
  over ``photos.folder`` bundled photos (decode, repair, PNG encode and write): img/s; and each
  classical baseline's fill at ``photos.baseline_size``² with the caption's true mask, next to the
  pipeline's masked repair of the same photo. ``photos.warmup`` + ``photos.repeats`` calls each.
- **variants**: ``fp32`` (plain), ``bf16`` (``torch.autocast(device, bfloat16)``),
  ``channels_last`` (model and inputs in ``torch.channels_last``). Inference rows report the max
  absolute difference of the output from fp32's on the same input and weights.

Every measurement: ``max(warmup, 1)`` untimed calls, the first one under
:class:`torch.utils.flop_counter.FlopCounterMode`, which counts the FLOPs of convolutions and
matmuls (forward for inference, forward + backward for training; Canny and elementwise work are
not counted); then ``repeats`` timed calls (``time.perf_counter``, the accelerator synchronised
after each). ``torch.utils.benchmark.Timer`` does not fit here: every ``timeit`` adds two untimed
warm-up calls of its own, which triples the cost of a full-width CPU measurement whose calls take
seconds, and ``timeit(number=repeats)`` keeps only the mean. Reported: median, min, max and
quartiles of the wall time; images/s = batch / median; achieved FLOP/s = counted FLOPs / median,
and as % of the matmul peak of the variant's dtype.

Peak memory over a measurement (all its calls): CUDA: ``torch.cuda.max_memory_allocated`` (reset
at the start) and its increase over what was allocated before. CPU: the process's peak resident
set size ``VmHWM`` (reset at the start by writing 5 to ``/proc/self/clear_refs``, after handing
freed heap memory back with ``malloc_trim``) and its increase over the RSS at the start; memory the
allocator still holds from an earlier measurement is reused without showing as an increase. Where
the reset is refused, the process's lifetime maximum RSS is reported (``memory_method`` says which).
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import functools
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from common.errors import ConfigError
from common.ops import canny, to_gray
from data.io import to_float
from pipeline.benchmarking.report import (
    console,
    print_data,
    print_machine,
    print_peak,
    print_photo,
    print_progress,
    warn,
    write_json,
)
from pipeline.inference.inpainter import LARGE_STRATEGIES, BlindInpainter, InpaintSettings, resolve_device
from pipeline.model import BlindPipeline

STAGES = ("mpn", "epn", "ipn")
VARIANTS = ("fp32", "bf16", "channels_last")
PARTS = ("peak", "data", "train", "inference", "pipeline", "photos", "startup")
DEVICES = ("auto", "cpu", "cuda")

# The first output of each stage's ``generate``: what inference of that stage produces.
# stages=[...] may also name the other systems' stages (conf/benchmark.yaml's models)
MEASURED_STAGES = (*STAGES, "pconv", "glcic", "parallel_attention", "dcgan", "cifar_gan")
STAGE_OUTPUTS = {
    "mpn": "mask_logits",
    "epn": "predicted_edges",
    "ipn": "output",
    "pconv": "output",
    "glcic": "output",
    "parallel_attention": "output",
    "cifar_gan": "output",
    "dcgan": "output",  # the latent-search fill (conf/benchmark.yaml: of search_steps)
}


# -- settings -------------------------------------------------------------------------------------


def _names(cfg: DictConfig, key: str, allowed: tuple[str, ...], what: str) -> list[str]:
    """``cfg[key]`` (a name or a list of names) as a list, each checked against ``allowed``."""
    value = cfg.get(key) or []
    names = [value] if isinstance(value, str) else [str(v) for v in value]
    unknown = [n for n in names if n not in allowed]
    if unknown:
        raise ConfigError(f"unknown {what} {', '.join(map(repr, unknown))} in {key}=; expected any of {list(allowed)}")
    return names


def _positive_ints(values, key: str) -> list[int]:
    """``values`` (an integer or a list of them) as a non-empty list of integers >= 1."""
    try:
        ints = [int(v) for v in ([values] if isinstance(values, int) else values)]
    except (TypeError, ValueError):
        raise ConfigError(f"{key} must be a list of positive integers, got {values!r}") from None
    if not ints or min(ints) < 1:
        raise ConfigError(f"{key} must be a list of positive integers, got {values!r}")
    return ints


def _count(value, key: str, least: int) -> int:
    """``value`` as an integer of at least ``least``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ConfigError(f"{key} must be an integer >= {least}, got {value!r}")
    return value


def chosen_device(cfg: DictConfig) -> torch.device:
    """``cfg.device``: ``auto`` (CUDA when available, else the CPU), ``cpu`` or ``cuda``."""
    _names(cfg, "device", DEVICES, "device")
    return torch.device(resolve_device(str(cfg.device)))


def bf16_is_fast(device: torch.device) -> bool:
    """Whether bf16 has native kernels here: oneDNN bf16 on the CPU, bf16 support on CUDA."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def chosen_variants(cfg: DictConfig, device: torch.device) -> list[str]:
    """The variants to run, fp32 first (the reference of the output differences). bf16 is
    dropped with a warning where it has no fast kernels, unless ``force_bf16``."""
    names = list(dict.fromkeys(_names(cfg, "variants", VARIANTS, "variant")))
    if not names:
        raise ConfigError("variants is empty; choose any of " + str(list(VARIANTS)))
    if "bf16" in names and not bf16_is_fast(device) and not cfg.force_bf16:
        warn(
            f"skipping bf16: this {device.type} has no fast bf16 kernels (oneDNN bf16 unsupported), so it "
            "would run many times slower than fp32; force_bf16=true runs it anyway"
        )
        names.remove("bf16")
    return sorted(names, key=VARIANTS.index)


# -- machine --------------------------------------------------------------------------------------


def cpu_name() -> str:
    """The CPU model from ``/proc/cpuinfo`` (Linux), else what :mod:`platform` knows."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def describe_device(device: torch.device) -> dict:
    """Device name, threads, torch / CUDA versions and bf16 support."""
    cuda = device.type == "cuda"
    return {
        "device": device.type,
        "name": torch.cuda.get_device_name(device) if cuda else cpu_name(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "bf16_fast": bf16_is_fast(device),
        "bf16_check": "torch.cuda.is_bf16_supported()" if cuda else "torch.ops.mkldnn._is_mkldnn_bf16_supported()",
    }


# -- time, FLOPs, memory --------------------------------------------------------------------------


@dataclass
class Timing:
    """Summary of repeated wall times, in seconds."""

    median: float
    min: float
    max: float
    q1: float
    q3: float
    repeats: int

    @classmethod
    def of(cls, seconds: list[float]) -> Timing:
        q1, _, q3 = statistics.quantiles(seconds, n=4, method="inclusive") if len(seconds) > 1 else seconds * 3
        return cls(statistics.median(seconds), min(seconds), max(seconds), q1, q3, len(seconds))


def time_calls(fn: Callable[[], object], repeats: int, device: torch.device) -> list[float]:
    """The wall time of each of ``repeats`` calls of ``fn``, in seconds, the accelerator
    synchronised before the clock starts and after each call."""
    seconds = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        seconds.append(time.perf_counter() - start)
    return seconds


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def count_flops(fn: Callable[[], object]) -> tuple[int, object]:
    """FLOPs of one call of ``fn`` as :class:`FlopCounterMode` counts them (convolutions and
    matmuls, forward and any backward run inside), and the call's result."""
    counter = FlopCounterMode(display=False)
    with counter:
        result = fn()
    return counter.get_total_flops(), result


def _read_status_kib(field: str) -> int | None:
    """A ``kB`` field of ``/proc/self/status`` (Linux), e.g. ``VmRSS``; None where unreadable."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


def _release_freed_memory() -> None:
    """Hand freed heap memory back to the OS (glibc), so the RSS baseline is what is in use."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _reset_peak_rss() -> bool:
    """Reset this process's ``VmHWM`` to its current RSS (Linux >= 4.0); False where refused."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return _read_status_kib("VmHWM") is not None


def memory_method(device: torch.device) -> str:
    """How peak memory is measured on ``device`` (stored in the JSON beside the numbers)."""
    if device.type == "cuda":
        return "torch.cuda.max_memory_allocated, reset per measurement; increase over memory_allocated before it"
    if _reset_peak_rss():
        return (
            "process peak RSS (VmHWM, reset per measurement via /proc/self/clear_refs); increase over the RSS before it"
        )
    return "process max RSS since start (ru_maxrss; no per-measurement reset possible here); increase not known"


class PeakMemory:
    """Peak memory of the block it wraps: ``peak_bytes`` and ``increase_bytes`` (None where the
    CPU peak cannot be reset). See the module docstring for the method."""

    def __init__(self, device: torch.device):
        self.device = device
        self.peak_bytes: int | None = None
        self.increase_bytes: int | None = None

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._baseline = torch.cuda.memory_allocated(self.device)
        else:
            _release_freed_memory()
            self._resettable = _reset_peak_rss()
            self._baseline = (_read_status_kib("VmRSS") or 0) * 1024
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device)
        elif self._resettable:
            self.peak_bytes = (_read_status_kib("VmHWM") or 0) * 1024
        else:
            self.peak_bytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            return
        self.increase_bytes = max(self.peak_bytes - self._baseline, 0)


@dataclass
class Measurement:
    """One measured callable: wall times, FLOPs of one call, peak memory and the last result."""

    timing: Timing
    flops: int
    peak_bytes: int | None
    increase_bytes: int | None
    result: object = None


class LastResult:
    """``fn`` as a callable that keeps the result of its latest call."""

    def __init__(self, fn: Callable[[], object]):
        self.fn = fn
        self.result = None

    def __call__(self) -> None:
        self.result = self.fn()


def measure(fn: Callable[[], object], device: torch.device, warmup: int, repeats: int) -> Measurement:
    """``max(warmup, 1)`` untimed calls of ``fn`` (the first counts FLOPs), then ``repeats`` timed.

    The result kept is a timed call's: under :class:`FlopCounterMode` some kernels differ, and
    their outputs with them (in the last bits).
    """
    call = LastResult(fn)
    with PeakMemory(device) as memory:
        flops, _ = count_flops(call)
        for _ in range(warmup - 1):
            call()
        seconds = time_calls(call, repeats, device)
    return Measurement(Timing.of(seconds), flops, memory.peak_bytes, memory.increase_bytes, call.result)


def matmul_peak(dtype: torch.dtype, n: int, device: torch.device, warmup: int, repeats: int) -> dict:
    """Achieved FLOP/s of an ``n × n`` matmul in ``dtype`` (2·n³ FLOPs per product)."""
    a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
    run = measure(lambda: a @ b, device, warmup, repeats)
    return {
        "n": n,
        "dtype": str(dtype).removeprefix("torch."),
        "time_s": asdict(run.timing),
        "flops": 2 * n**3,
        "flops_per_s": 2 * n**3 / run.timing.median,
    }


def max_abs_diff(output: torch.Tensor, reference: torch.Tensor | None) -> float | None:
    """``max |output − reference|`` in fp32, or None without a reference."""
    if reference is None:
        return None
    return (output.float() - reference.float()).abs().max().item()


def mean_abs_diff(output: torch.Tensor, reference: torch.Tensor | None) -> float | None:
    """``mean |output − reference|`` in fp32, or None without a reference: a few flipped mask
    pixels make the max large while the image is the same."""
    if reference is None:
        return None
    return (output.float() - reference.float()).abs().mean().item()


# -- variants -------------------------------------------------------------------------------------


def autocast_for(variant: str, device: torch.device):
    """``torch.autocast`` to bf16 for the bf16 variant, else nothing."""
    if variant == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def memory_format_for(variant: str) -> torch.memory_format:
    return torch.channels_last if variant == "channels_last" else torch.contiguous_format


def prepared_module(module: nn.Module, variant: str) -> nn.Module:
    """``module`` itself, or for channels_last a converted copy (same weights)."""
    if variant != "channels_last":
        return module
    return copy.deepcopy(module).to(memory_format=torch.channels_last)


def prepared_batch(batch: dict, variant: str) -> dict:
    """The batch with its 4-D tensors in the variant's memory format."""
    fmt = memory_format_for(variant)
    return {k: v.contiguous(memory_format=fmt) if torch.is_tensor(v) and v.dim() == 4 else v for k, v in batch.items()}


# -- networks and data ----------------------------------------------------------------------------


def build_stage(cfg: DictConfig, name: str, device: torch.device):
    """Stage ``name``'s LightningModule as ``pipeline.train stage=<name>`` builds it (its
    ``conf/stage/<name>.yaml``, at ``width_mult``), seeded, on ``device``."""
    torch.manual_seed(cfg.seed)
    try:
        module = instantiate(cfg.models[name].module)
    except InstantiationException as err:
        cause = err.__cause__ or err
        raise ConfigError(f"cannot build {name} at width_mult={cfg.width_mult}: {cause}") from None
    return module.to(device)


def parameter_counts(module) -> dict[str, int]:
    """Parameters per trained network of a stage module."""
    networks = {"generator": module.generator, "discriminator": getattr(module, "discriminator", None)}
    return {label: sum(p.numel() for p in net.parameters()) for label, net in networks.items() if net is not None}


def synthetic_batch(batch_size: int, size: int, device: torch.device, seed: int = 0) -> dict[str, torch.Tensor]:
    """A batch of the data contract, ``B = batch_size``, ``S = size``: ``image`` and ``corrupted``
    ``(B, 3, S, S)`` in [0, 1] (smooth random images: bicubic-upsampled 8×8 noise; a rectangular
    hole filled with noise), ``mask`` ``(B, 1, S, S)`` (1 in the hole), and the Canny edges of the
    image and of the corrupted image, ``edge`` and ``corrupted_edge`` ``(B, 1, S, S)``."""
    g = torch.Generator().manual_seed(seed)
    image = F.interpolate(
        torch.rand(batch_size, 3, 8, 8, generator=g), size=(size, size), mode="bicubic", align_corners=False
    ).clamp(0, 1)
    mask = torch.zeros(batch_size, 1, size, size)
    mask[..., size // 4 : size // 2 + 1, size // 4 : 3 * size // 4 + 1] = 1
    corrupted = image * (1 - mask) + torch.rand(image.shape, generator=g) * mask
    batch = {
        "image": image,
        "corrupted": corrupted,
        "mask": mask,
        "edge": canny(to_gray(image)),
        "corrupted_edge": canny(to_gray(corrupted)),
    }
    return {k: v.to(device) for k, v in batch.items()}


def in_inference_mode(fn: Callable[[], torch.Tensor], variant: str, device: torch.device) -> Callable[[], torch.Tensor]:
    """``fn`` under ``torch.inference_mode`` and the variant's autocast."""

    def call() -> torch.Tensor:
        with torch.inference_mode(), autocast_for(variant, device):
            return fn()

    return call


def stage_call(name: str, module, batch: dict, variant: str, device: torch.device) -> Callable[[], torch.Tensor]:
    """Inference of stage ``name`` in ``variant`` on ``batch`` (see :func:`synthetic_batch`), fed as
    training feeds it. The call returns the stage's first output, ``(B, 1, S, S)`` mask logits or
    edges, or the ``(B, 3, S, S)`` composed image."""
    model, inputs = prepared_module(module, variant), prepared_batch(batch, variant)
    key = STAGE_OUTPUTS[name]
    return in_inference_mode(lambda: model.generate(inputs)[key], variant, device)


def pipeline_call(
    stages: dict[str, nn.Module], settings: DictConfig, image: torch.Tensor, variant: str, device: torch.device
) -> Callable[[], torch.Tensor]:
    """The blind pipeline of ``stages`` (:class:`BlindInpainter` over :class:`BlindPipeline` with
    ``settings``) in ``variant`` on a corrupted ``image`` ``(1, 3, H, W)``; the call returns the
    inpainted ``(1, 3, H, W)``."""
    pipeline = BlindPipeline(**{name: prepared_module(stages[name], variant) for name in STAGES}, **settings)
    layout = InpaintSettings(channels_last=STAGES if variant == "channels_last" else ())
    inpainter = BlindInpainter(pipeline, layout).to(device)
    image = image.contiguous(memory_format=memory_format_for(variant))
    return in_inference_mode(lambda: inpainter.inpaint(image)["output"], variant, device)


def _step(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def training_steps(name: str, module, batch: dict, variant: str, device: torch.device) -> dict[str, Callable[[], None]]:
    """One optimizer step per call, per network of the stage (see the module docstring)."""
    module.train()
    if getattr(module, "discriminator", None) is None:
        optimizer = module.configure_optimizers()

        def generator_only_step() -> None:
            with autocast_for(variant, device):
                loss, _ = module.generator_loss(batch, module.generate(batch))
            _step(optimizer, loss)

        return {"generator": generator_only_step}

    opt_g, opt_d = module.configure_optimizers()
    with torch.no_grad(), autocast_for(variant, device):
        fixed = module.generate(batch)

    def generator_step() -> None:
        module.discriminator.requires_grad_(False)
        with autocast_for(variant, device):
            loss, _ = module.generator_loss(batch, module.generate(batch))
        _step(opt_g, loss)
        module.discriminator.requires_grad_(True)

    def discriminator_step() -> None:
        with autocast_for(variant, device):
            loss, _ = module.discriminator_loss(batch, fixed)
        _step(opt_d, loss)

    return {"generator": generator_step, "discriminator": discriminator_step}


# -- the benchmark --------------------------------------------------------------------------------


def loader_throughput(loader, warmup: int, batches: int) -> dict:
    """Samples/s of ``loader`` over ``batches`` batches after ``warmup`` untimed ones, starting a
    new epoch whenever one ends (as training does)."""

    def endless():
        while True:
            yield from loader

    stream = endless()
    for _ in range(warmup):
        next(stream)
    samples, start = 0, time.perf_counter()
    for _ in range(batches):
        samples += len(next(stream)["corrupted"])
    seconds = time.perf_counter() - start
    del stream  # stops the workers of a non-persistent loader
    return {"samples_per_s": samples / seconds, "seconds_per_batch": seconds / batches, "batches": batches}


class Benchmark:
    """Runs the measurements ``cfg`` asks for, printing each and rewriting the JSON at ``out``
    after each, so an interrupted run keeps what it measured."""

    def __init__(self, cfg: DictConfig, out: Path):
        self.cfg, self.out = cfg, out
        if cfg.get("threads"):
            torch.set_num_threads(int(cfg.threads))
        self.device = chosen_device(cfg)
        if cfg.get("cudnn_benchmark") is not None:  # cuDNN picks each convolution's algorithm by timing it
            torch.backends.cudnn.benchmark = bool(cfg.cudnn_benchmark)
        self.stages = list(dict.fromkeys(_names(cfg, "stages", MEASURED_STAGES, "stage")))
        self.skip = set(_names(cfg, "skip", PARTS, "part"))
        self.sizes = _positive_ints(cfg.sizes, "sizes")
        self.train_batch, self.train_size = _positive_ints(
            [cfg.train.batch_size, cfg.train.size], "train.batch_size/size"
        )
        self.warmup, self.repeats = _count(cfg.warmup, "warmup", 0), _count(cfg.repeats, "repeats", 1)
        self.data_batches = _count(cfg.get("data_batches", 20), "data_batches", 1)
        self.pipeline_batches = _positive_ints(cfg.get("pipeline_batches", [1]), "pipeline_batches")
        self.variants = chosen_variants(cfg, self.device)
        self.results = {
            "machine": describe_device(self.device),
            "settings": OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False),
            "memory_method": memory_method(self.device),
            "peak": {},
            "data": [],
            "networks": {},
            "train": [],
            "inference": [],
            "pipeline": [],
            "photos": [],
            "startup": [],
        }
        self.results["settings"]["variants_run"] = self.variants

    # -- bookkeeping

    def save(self) -> None:
        write_json(self.results, self.out)

    def peak_flops(self, variant: str) -> float | None:
        """The measured matmul FLOP/s of the variant's dtype, if measured."""
        dtype = "bf16" if variant == "bf16" else "fp32"
        entry = self.results["peak"].get(dtype)
        return entry["flops_per_s"] if entry else None

    def record(self, part: str, run: Measurement, *, items: int, **fields) -> dict:
        """A result row: times, throughput, FLOPs per item, FLOP/s and % of peak, memory."""
        seconds = run.timing.median
        peak = self.peak_flops(fields["variant"])
        row = {
            **fields,
            "time_s": asdict(run.timing),
            "images_per_s": items / seconds,
            **({"latency_s": seconds} if part != "train" else {}),
            "flops_per_image": run.flops / items,
            "flops_per_s": run.flops / seconds,
            "pct_of_peak": 100 * run.flops / seconds / peak if peak else None,
            "peak_memory_bytes": run.peak_bytes,
            "peak_memory_increase_bytes": run.increase_bytes,
        }
        self.results[part].append(row)
        self.save()
        print_progress(part, row)
        return row

    def attempt(
        self, what: str, fn: Callable[[], object], warmup: int | None = None, repeats: int | None = None
    ) -> Measurement | None:
        """:func:`measure` ``fn`` (``warmup`` and ``repeats`` default to the run's); out-of-memory
        is reported and skipped, not fatal."""
        warmup = self.warmup if warmup is None else warmup
        repeats = self.repeats if repeats is None else repeats
        try:
            return measure(fn, self.device, warmup, repeats)
        except torch.OutOfMemoryError:
            warn(f"{what}: out of memory, skipped")
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            return None

    # -- parts

    def run(self) -> dict:
        print_machine(self.results["machine"])
        if "peak" not in self.skip:
            self.measure_peak()
        if "data" not in self.skip:
            for name in self.stages:
                self.measure_data(name)
        if not {"train", "inference"} <= self.skip:
            for name in self.stages:
                self.measure_stage(name)
        if "pipeline" not in self.skip:
            self.measure_pipeline()
        if "photos" not in self.skip:
            self.measure_photos()
        if "startup" not in self.skip:
            self.measure_startup()
        self.save()
        return self.results

    def measure_startup(self) -> None:
        """Wall time of a fresh process answering ``--help``: the console command (``blindfill``,
        imports nothing heavy first) and ``python -m pipeline.inpaint`` (Hydra's, which composes
        the inference config), the median of ``repeats`` runs after one warm-up."""
        script = Path(sys.executable).parent / "blindfill"
        commands = {
            "blindfill --help": [str(script)] if script.exists() else [sys.executable, "-m", "pipeline.console"],
            "python -m pipeline.inpaint --help": [sys.executable, "-m", "pipeline.inpaint"],
        }
        for name, command in commands.items():
            seconds = []
            for _ in range(1 + self.repeats):
                start = time.perf_counter()
                subprocess.run([*command, "--help"], capture_output=True, check=True, timeout=300)
                seconds.append(time.perf_counter() - start)
            row = {"command": name, "time_s": asdict(Timing.of(seconds[1:]))}
            self.results["startup"].append(row)
            self.save()
            print(f"startup  {name}: {row['time_s']['median']:.2f} s (median of {len(seconds) - 1})")

    def measure_peak(self) -> None:
        sizes = _positive_ints(self.cfg.peak.matmul_sizes, "peak.matmul_sizes")
        dtypes = {"fp32": torch.float32, **({"bf16": torch.bfloat16} if "bf16" in self.variants else {})}
        for label, dtype in dtypes.items():
            entries = [matmul_peak(dtype, n, self.device, self.warmup, self.repeats) for n in sizes]
            entry = max(entries, key=lambda e: e["flops_per_s"])
            entry = {**entry, "by_size": {str(e["n"]): e["flops_per_s"] for e in entries}}
            self.results["peak"][label] = entry
            self.save()
            print_peak(label, entry)

    def measure_data(self, name: str) -> None:
        from pipeline.training.stage import stage_datamodule

        cfg = self.cfg.copy()
        with open_dict(cfg):
            cfg.stage = cfg.models[name]
        datamodule = stage_datamodule(cfg)
        datamodule.setup("fit")
        row = {
            "stage": name,
            **loader_throughput(datamodule.train_dataloader(), max(self.warmup, 1), self.data_batches),
            "batch_size": datamodule.batch_size,
            "size": datamodule.size,
            "workers": datamodule.workers,
            "edges": f"yes ({datamodule.edge_device})" if datamodule.edges else "no",
        }
        self.results["data"].append(row)
        self.save()
        print_data(row)

    def measure_stage(self, name: str) -> None:
        module = build_stage(self.cfg, name, self.device)
        self.results["networks"][name] = parameter_counts(module)
        if "train" not in self.skip:
            self.measure_training(name, module)
        if "inference" not in self.skip:
            self.measure_inference(name, module)

    def measure_training(self, name: str, module) -> None:
        batch = synthetic_batch(self.train_batch, self.train_size, self.device, self.cfg.seed)
        for variant in self.variants:
            model = prepared_module(module, variant)
            steps = training_steps(name, model, prepared_batch(batch, variant), variant, self.device)
            for network, step in steps.items():
                run = self.attempt(f"train {name} {network} {variant}", step)
                if run is not None:
                    self.record(
                        "train",
                        run,
                        items=self.train_batch,
                        stage=name,
                        network=network,
                        variant=variant,
                        batch_size=self.train_batch,
                        size=self.train_size,
                    )
            del model, steps
        module.eval()

    def measure_inference(self, name: str, module) -> None:
        # Frozen, as inference runs it. (FlopCounterMode's module tracker also fails under
        # inference_mode on spectral-norm weights that require gradients.)
        module.eval().requires_grad_(False)
        for size in self.sizes:
            batch = synthetic_batch(1, size, self.device, self.cfg.seed)
            self.measure_variants(
                "inference",
                f"inference {name} {size}",
                functools.partial(stage_call, name, module, batch, device=self.device),
                stage=name,
                size=size,
            )

    def measure_pipeline(self) -> None:
        stages = {name: build_stage(self.cfg, name, self.device).eval() for name in STAGES}
        working_size = InpaintSettings().working_size
        for size in self.sizes:
            for batch in self.pipeline_batches:
                corrupted = synthetic_batch(batch, size, self.device, self.cfg.seed)["corrupted"]
                self.measure_variants(
                    "pipeline",
                    f"pipeline {batch}×{size}",
                    functools.partial(pipeline_call, stages, self.cfg.pipeline, corrupted, device=self.device),
                    items=batch,
                    stage="pipeline",
                    size=size,
                    batch_size=batch,
                    working_size=working_size,
                )

        self.measure_clean_photo()
        self.measure_shipped_batches()

    def measure_shipped_batches(self) -> None:
        """The shipped model, blind, on batches of damaged bundled photos (each with one damage kind,
        the kinds in turn) at each of ``pipeline_batches`` and each variant: the throughput users
        get (issue 16's GPU target: ≥ 1,000 img/s at 256², bf16, batch 64). Batch 1 is measured by
        :meth:`measure_clean_photo` already."""
        from data.damage import DAMAGE_KINDS, Damage
        from data.sample import ALL_PHOTOS, load_photo

        batches = [b for b in self.pipeline_batches if b > 1]
        if not batches:
            return
        inpainter = BlindInpainter.from_pretrained(device=self.device)
        rng = np.random.default_rng(self.cfg.seed)
        for size in (s for s in self.sizes if s <= inpainter.settings.working_size):
            images = []
            for i in range(max(batches)):
                photo = F.interpolate(load_photo(ALL_PHOTOS[i % len(ALL_PHOTOS)])[None], size=(size, size), mode="area")
                images.append(Damage(DAMAGE_KINDS[i % len(DAMAGE_KINDS)])(photo[0], rng)[0])
            damaged = torch.stack(images).to(self.device)
            for batch in batches:
                self.measure_variants(
                    "pipeline",
                    f"shipped {batch}×{size}",
                    lambda variant, images=damaged[:batch]: in_inference_mode(
                        lambda: inpainter.inpaint(images)["output"], variant, self.device
                    ),
                    items=batch,
                    variants=("fp32", "bf16"),  # the shipped layout is the inpainter's own (channels_last)
                    stage="shipped damaged",
                    size=size,
                    batch_size=batch,
                )

    def measure_clean_photo(self) -> None:
        """The shipped model on a bundled photo, intact and with a caption over it (fp32, batch 1):
        an intact photo's mask is empty, so it costs the MPN and Canny only (issue 16's target:
        ≤ 0.1× the damaged photo's time)."""
        from data.damage import Damage
        from data.sample import load_photo

        inpainter = BlindInpainter.from_pretrained(device=self.device)
        photo = load_photo("lomiri_bridge")
        for size in (s for s in self.sizes if s <= inpainter.settings.working_size):
            clean = F.interpolate(photo[None], size=(size, size), mode="area").to(self.device)
            damaged = Damage("text")(clean[0].cpu(), np.random.default_rng(self.cfg.seed))[0][None].to(self.device)
            times = {}
            for kind, image in (("damaged", damaged), ("clean", clean)):
                call = in_inference_mode(lambda image=image: inpainter.inpaint(image)["output"], "fp32", self.device)
                run = self.attempt(f"shipped {kind} {size}", call)
                if run is not None:
                    row = self.record(
                        "pipeline", run, items=1, stage=f"shipped {kind}", variant="fp32", size=size, batch_size=1
                    )
                    times[kind] = row["time_s"]["median"]
            if len(times) == 2:
                console.print(f"pipeline  shipped model {size}²: intact photo {times['clean'] / times['damaged']:.2f}× "
                              "the damaged photo's time")  # fmt: skip

    def measure_variants(
        self,
        part: str,
        what: str,
        call_for: Callable[[str], Callable],
        items: int = 1,
        variants: Iterable[str] | None = None,
        **fields,
    ) -> None:
        """Measure and record ``call_for(variant)`` for every variant (of ``variants``, default all
        the run's), with the max difference of its output from the fp32 variant's (measured first)."""
        reference = None
        for variant in self.variants if variants is None else [v for v in self.variants if v in variants]:
            run = self.attempt(f"{what} {variant}", call_for(variant))
            if run is None:
                continue
            reference = run.result if variant == "fp32" else reference
            self.record(
                part,
                run,
                items=items,
                variant=variant,
                max_abs_diff_vs_fp32=max_abs_diff(run.result, reference),
                mean_abs_diff_vs_fp32=mean_abs_diff(run.result, reference),
                **fields,
            )

    # -- photos as users run them

    def measure_photos(self) -> None:
        from data.sample import load_photo

        cfg = self.cfg.photos
        inpainter = BlindInpainter.from_pretrained(device=self.device)
        photo = (load_photo("lomiri_bridge").permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        for megapixels in cfg.megapixels:
            image, hole = damaged_photo(photo, float(megapixels))
            for strategy in _names(cfg, "strategies", LARGE_STRATEGIES, "large strategy"):
                inpainter.with_settings(large=strategy)
                run = self.attempt_photos(
                    f"{megapixels} Mpx {strategy}",
                    lambda image=image: inpainter.inpaint_array(image, None, "blind", intermediates=False)["output"],
                )
                if run is not None:
                    changed = float((run.result != image).any(axis=2).mean())
                    self.record_photo(run, kind="large", what=f"large={strategy}", size=list(image.shape[:2]),
                                      damage_pct=100 * float(hole.mean()), changed_pct=100 * changed)  # fmt: skip
            del image, hole
        inpainter.with_settings(large=InpaintSettings().large)
        if cfg.folder:
            self.measure_folder(inpainter, int(cfg.folder))
        self.measure_baselines(inpainter, photo, int(cfg.baseline_size), list(cfg.baselines))

    def attempt_photos(self, what: str, fn: Callable[[], object]) -> Measurement | None:
        """:meth:`attempt` with the photos part's own ``photos.warmup`` and ``photos.repeats``."""
        cfg = self.cfg.photos
        warmup, repeats = _count(cfg.warmup, "photos.warmup", 1), _count(cfg.repeats, "photos.repeats", 1)
        return self.attempt(what, fn, warmup, repeats)

    def record_photo(self, run: Measurement, *, items: int = 1, **fields) -> dict:
        row = {
            **fields,
            "time_s": asdict(run.timing),
            "images_per_s": items / run.timing.median,
            "flops_per_s": run.flops / run.timing.median,
            "pct_of_peak": 100 * run.flops / run.timing.median / p if (p := self.peak_flops("fp32")) else None,
            "peak_memory_bytes": run.peak_bytes,
            "peak_memory_increase_bytes": run.increase_bytes,
        }
        self.results["photos"].append(row)
        self.save()
        print_photo(row)
        return row

    def measure_folder(self, inpainter: BlindInpainter, count: int) -> None:
        """``pipeline.inpaint`` over ``count`` bundled photos into a temporary folder."""
        import tempfile

        from data.io import image_size
        from data.sample import PHOTO_DIR
        from pipeline.inference.batch import plan_jobs, run

        with tempfile.TemporaryDirectory() as folder:
            source = Path(folder) / "in"
            source.mkdir()
            for path in sorted(PHOTO_DIR.glob("*.jpg"))[:count]:
                (source / path.name).symlink_to(path.resolve())
            jobs = plan_jobs(source, Path(folder) / "out", None, "blind", ".png")

            def repair_folder() -> int:
                return len(run(inpainter, jobs, "blind", overwrite=True, progress=False)["written"])

            measured = self.attempt_photos("folder", repair_folder)
            if measured is not None:
                width, height = image_size(jobs[0].source)
                self.record_photo(measured, items=len(jobs), kind="folder", what=f"{len(jobs)} photos",
                                  size=[height, width])  # fmt: skip

    def measure_baselines(self, inpainter: BlindInpainter, photo: np.ndarray, side: int, names: list[str]) -> None:
        """Each classical baseline and the pipeline (masked: the same hole) on one photo at ``side``²."""
        from pipeline.methods.classical import get_baseline

        small = cv2.resize(photo, (side, side), interpolation=cv2.INTER_AREA)
        image, hole = damaged_photo(small, side * side / 1e6)
        mask = (hole > 0).astype(np.float32)
        x = torch.from_numpy(to_float(image)).permute(2, 0, 1)[None].to(self.device)
        m = torch.from_numpy(mask)[None, None].to(self.device)
        calls = {"blindfill (masked)": lambda: inpainter.inpaint(x, m, "masked")["output"]}
        calls.update({name: functools.partial(get_baseline(name), to_float(image), mask) for name in names})
        for name, call in calls.items():
            run = self.attempt_photos(f"baseline {name}", call)
            if run is not None:
                self.record_photo(run, kind="fill", what=name, size=[side, side], damage_pct=100 * float(mask.mean()))


def damaged_photo(photo: np.ndarray, megapixels: float) -> tuple[np.ndarray, np.ndarray]:
    """``photo`` ``(h, w, 3)`` uint8 resized to ``megapixels`` at 3:2, with a white caption (a black
    outline) and three thin scratches drawn over it (~2 % of the pixels) -> the photo and its
    hole ``(H, W)`` uint8 (1 = drawn over)."""
    width = round((megapixels * 1e6 * 1.5) ** 0.5)
    height = round(width / 1.5)
    image = cv2.resize(photo, (width, height), interpolation=cv2.INTER_CUBIC)
    hole = np.zeros((height, width), np.uint8)
    scale, caption = height / 400, "(c) blindfill 2026"
    text_at, font, stroke = (int(0.08 * width), int(0.88 * height)), cv2.FONT_HERSHEY_SIMPLEX, max(1, int(3 * scale))
    cv2.putText(hole, caption, text_at, font, scale, 1, stroke + 4)  # the outline's extent
    for i in range(3):
        start = (int((0.2 + 0.25 * i) * width), int(0.05 * height))
        end = (int((0.3 + 0.2 * i) * width), int(0.6 * height))
        cv2.line(hole, start, end, 1, max(2, int(1.5 * scale)))
    image[hole > 0] = 255
    cv2.putText(image, caption, text_at, font, scale, (20, 20, 20), stroke + 4)  # a dark outline
    cv2.putText(image, caption, text_at, font, scale, (250, 250, 250), stroke)
    return image, hole
