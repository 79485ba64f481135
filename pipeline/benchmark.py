"""``python -m pipeline.benchmark [stages=[ipn]] [sizes=[256]] [variants=[fp32]] [skip=[train]] [device=cuda]``

Measures how fast the three stages train and infer on this machine, and how close that is to what
the machine can do:

- **machine peak**: achieved FLOP/s of a square ``peak.matmul_size``² matmul in fp32 (and bf16 when
  the bf16 variant runs): the roofline reference every "% of peak" below is relative to.
- **training** (``train.batch_size`` × ``train.size``², synthetic batch): one optimizer step per
  call. MPN: ``net`` forward + the module's loss + backward + Adam step. GAN stages (EPN, IPN) time
  their two networks separately, with the modules' own losses and Adam settings
  (``configure_optimizers``): ``generator`` = ``generate(batch)`` + ``generator_loss`` (through a
  discriminator whose weights get no gradients, as Lightning's ``toggle_optimizer``) + backward +
  step; ``discriminator`` = ``discriminator_loss`` on fixed, detached generator outputs + backward
  + step. One real training iteration (D step, then G step, sharing one ``generate``) costs their
  sum, reported as ``G+D``.
- **inference** latency at batch 1 of each generator at each of ``sizes``, and of the full blind
  pipeline (:class:`pipeline.inference.BlindInpainter`: MPN → Canny → EPN → IPN; it processes
  sides above its ``working_size`` at that size and pastes the upsampled fill back).
- **variants**: ``fp32`` (plain), ``bf16`` (``torch.autocast(device, bfloat16)``),
  ``channels_last`` (model and inputs in ``torch.channels_last``). Inference rows report the max
  absolute difference of the output from fp32's on the same input and weights.

Every measurement: ``max(warmup, 1)`` untimed calls (the first one under
:class:`torch.utils.flop_counter.FlopCounterMode`, which counts the FLOPs of convolutions and
matmuls: forward for inference, forward + backward for training; Canny and elementwise work are
not counted), then ``repeats`` timed calls (``torch.cuda.synchronize`` after each on CUDA).
Reported: median, min, max and quartiles of the wall time; images/s = batch / median; achieved
FLOP/s = counted FLOPs / median, and as % of the matmul peak of the variant's dtype.

Peak memory over a measurement (all its calls): CUDA: ``torch.cuda.max_memory_allocated`` (reset
at the start) and its increase over what was allocated before. CPU: the process's peak resident
set size ``VmHWM`` (reset at the start by writing 5 to ``/proc/self/clear_refs``, after handing
freed heap memory back with ``malloc_trim``) and its increase over the RSS at the start; memory the
allocator still holds from an earlier measurement is reused without showing as an increase. Where
the reset is refused, the process's lifetime maximum RSS is reported (``memory_method`` says which).

Each measurement is printed as it finishes; the tables follow at the end, and everything goes to
``out`` (JSON, default ``benchmark.json`` in the run folder ``runs/benchmark/<time>/``), rewritten
after every measurement so an interrupted run keeps what it measured.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import json
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import hydra
import torch
import torch.nn.functional as F
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table
from torch.utils.flop_counter import FlopCounterMode

from common.ops import canny, to_gray

STAGES = ("mpn", "epn", "ipn")
VARIANTS = ("fp32", "bf16", "channels_last")
PARTS = ("peak", "train", "inference", "pipeline")
DEVICES = ("auto", "cpu", "cuda")

# Wide when piped (rich would wrap at 80 columns), the terminal's width otherwise.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
err_console = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 200)


class BenchmarkError(ValueError):
    """A wrong setting: reported in one line, without a traceback."""


# -- settings -------------------------------------------------------------------------------------


def _names(cfg: DictConfig, key: str, allowed: tuple[str, ...], what: str) -> list[str]:
    """``cfg[key]`` (a name or a list of names) as a list, each checked against ``allowed``."""
    value = cfg.get(key) or []
    names = [value] if isinstance(value, str) else [str(v) for v in value]
    unknown = [n for n in names if n not in allowed]
    if unknown:
        raise BenchmarkError(
            f"unknown {what} {', '.join(map(repr, unknown))} in {key}=; expected any of {list(allowed)}"
        )
    return names


def _positive_ints(values, key: str) -> list[int]:
    try:
        ints = [int(v) for v in ([values] if isinstance(values, int) else values)]
    except (TypeError, ValueError):
        raise BenchmarkError(f"{key} must be a list of positive integers, got {values!r}") from None
    if not ints or min(ints) < 1:
        raise BenchmarkError(f"{key} must be a list of positive integers, got {values!r}")
    return ints


def _count(value, key: str, least: int) -> int:
    """``value`` as an integer of at least ``least``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise BenchmarkError(f"{key} must be an integer >= {least}, got {value!r}")
    return value


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else the CPU."""
    if name not in DEVICES:
        raise BenchmarkError(f"unknown device {name!r}; expected one of {list(DEVICES)}")
    if name == "cuda" and not torch.cuda.is_available():
        raise BenchmarkError("device=cuda but torch sees no CUDA device; use device=cpu or device=auto")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


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
        raise BenchmarkError("variants is empty; choose any of " + str(list(VARIANTS)))
    if "bf16" in names and not bf16_is_fast(device) and not cfg.force_bf16:
        warn(
            f"skipping bf16: this {device.type} has no fast bf16 kernels (oneDNN bf16 unsupported), so it "
            "would run many times slower than fp32; force_bf16=true runs it anyway"
        )
        names.remove("bf16")
    return sorted(names, key=VARIANTS.index)


def warn(message: str) -> None:
    err_console.print(f"[yellow]warning:[/] {message}")


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


# -- measuring ------------------------------------------------------------------------------------


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
            synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._baseline = torch.cuda.memory_allocated(self.device)
        else:
            _release_freed_memory()
            self._resettable = _reset_peak_rss()
            self._baseline = (_read_status_kib("VmRSS") or 0) * 1024
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            synchronize(self.device)
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


def measure(fn: Callable[[], object], device: torch.device, warmup: int, repeats: int) -> Measurement:
    """Untimed calls (the first counts FLOPs; ``max(warmup, 1)`` in all), then ``repeats`` timed."""
    with PeakMemory(device) as memory:
        flops, result = count_flops(fn)
        for _ in range(warmup - 1):
            fn()
        synchronize(device)
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            result = fn()
            synchronize(device)
            seconds.append(time.perf_counter() - start)
    return Measurement(Timing.of(seconds), flops, memory.peak_bytes, memory.increase_bytes, result)


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


# -- variants -------------------------------------------------------------------------------------


def autocast_for(variant: str, device: torch.device):
    """``torch.autocast`` to bf16 for the bf16 variant, else nothing."""
    if variant == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def memory_format_for(variant: str) -> torch.memory_format:
    return torch.channels_last if variant == "channels_last" else torch.contiguous_format


def prepared_module(module: torch.nn.Module, variant: str) -> torch.nn.Module:
    """``module`` itself, or for channels_last a converted copy (same weights)."""
    if variant != "channels_last":
        return module
    return copy.deepcopy(module).to(memory_format=torch.channels_last)


def prepared_batch(batch: dict, variant: str) -> dict:
    """The batch with its 4-D tensors in the variant's memory format."""
    fmt = memory_format_for(variant)
    return {k: v.contiguous(memory_format=fmt) if torch.is_tensor(v) and v.dim() == 4 else v for k, v in batch.items()}


# -- networks and data ------------------------------------------------------------------------


def build_stage(cfg: DictConfig, name: str, device: torch.device):
    """Stage ``name``'s LightningModule as ``pipeline.train stage=<name>`` builds it (its
    ``conf/stage/<name>.yaml``, at ``width_mult``), seeded, on ``device``."""
    torch.manual_seed(cfg.seed)
    try:
        module = instantiate(cfg.models[name].module)
    except InstantiationException as err:
        cause = err.__cause__ or err
        raise BenchmarkError(f"cannot build {name} at width_mult={cfg.width_mult}: {cause}") from None
    return module.to(device)


def parameter_counts(module) -> dict[str, int]:
    """Parameters per trained network of a stage module."""
    networks = {"generator": module.generator, "discriminator": getattr(module, "discriminator", None)}
    return {label: sum(p.numel() for p in net.parameters()) for label, net in networks.items() if net is not None}


def synthetic_batch(batch_size: int, size: int, device: torch.device, seed: int = 0) -> dict[str, torch.Tensor]:
    """A batch of the data contract: smooth random images (bicubic-upsampled 8×8 noise), a
    rectangular hole filled with noise, and the Canny edges of the image and the corrupted image."""
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


def inference_call(name: str, module, batch: dict) -> Callable[[], torch.Tensor]:
    """Stage ``name`` on ``batch`` as training feeds it: its first output (mask logits, edges, or
    the composed image; every stage's ``generate`` has the same shape)."""
    key = {"mpn": "mask_logits", "epn": "predicted_edges", "ipn": "output"}[name]
    return lambda: module.generate(batch)[key]


def _step(optimizer, loss: torch.Tensor) -> None:
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


def in_inference_mode(fn: Callable[[], torch.Tensor], variant: str, device: torch.device) -> Callable[[], torch.Tensor]:
    def call() -> torch.Tensor:
        with torch.inference_mode(), autocast_for(variant, device):
            return fn()

    return call


# -- the benchmark --------------------------------------------------------------------------------


class Benchmark:
    """Runs the measurements ``cfg`` asks for, printing each and saving the JSON after each."""

    def __init__(self, cfg: DictConfig, out: Path):
        self.cfg, self.out = cfg, out
        if cfg.get("threads"):
            torch.set_num_threads(int(cfg.threads))
        self.device = resolve_device(str(cfg.device))
        self.stages = list(dict.fromkeys(_names(cfg, "stages", STAGES, "stage")))
        self.skip = set(_names(cfg, "skip", PARTS, "part"))
        self.sizes = _positive_ints(cfg.sizes, "sizes")
        self.train_batch, self.train_size = _positive_ints(
            [cfg.train.batch_size, cfg.train.size], "train.batch_size/size"
        )
        self.warmup, self.repeats = _count(cfg.warmup, "warmup", 0), _count(cfg.repeats, "repeats", 1)
        self.variants = chosen_variants(cfg, self.device)
        self.results = {
            "machine": describe_device(self.device),
            "settings": OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False),
            "memory_method": memory_method(self.device),
            "peak": {},
            "networks": {},
            "train": [],
            "inference": [],
            "pipeline": [],
        }
        self.results["settings"]["variants_run"] = self.variants

    # -- bookkeeping

    def save(self) -> None:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.out.write_text(json.dumps(self.results, indent=2))

    def peak_flops(self, variant: str) -> float | None:
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

    def attempt(self, what: str, fn: Callable[[], Measurement]) -> Measurement | None:
        """Run one measurement; out-of-memory is reported and skipped, not fatal."""
        try:
            return fn()
        except torch.OutOfMemoryError:
            warn(f"{what}: out of memory, skipped")
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            return None

    def timed(self, fn: Callable[[], object]) -> Measurement:
        return measure(fn, self.device, self.warmup, self.repeats)

    # -- parts

    def run(self) -> dict:
        console.print(machine_line(self.results["machine"]))
        if "peak" not in self.skip:
            self.measure_peak()
        for name in self.stages:
            if {"train", "inference"} <= self.skip:
                break
            module = build_stage(self.cfg, name, self.device)
            self.results["networks"][name] = parameter_counts(module)
            if "train" not in self.skip:
                self.measure_training(name, module)
            if "inference" not in self.skip:
                self.measure_inference(name, module)
            del module
        if "pipeline" not in self.skip:
            self.measure_pipeline()
        self.save()
        return self.results

    def measure_peak(self) -> None:
        n = int(self.cfg.peak.matmul_size)
        dtypes = {"fp32": torch.float32, **({"bf16": torch.bfloat16} if "bf16" in self.variants else {})}
        for label, dtype in dtypes.items():
            entry = matmul_peak(dtype, n, self.device, self.warmup, self.repeats)
            self.results["peak"][label] = entry
            self.save()
            console.print(
                f"peak      {label:<13} matmul {n}²: {entry['flops_per_s'] / 1e9:,.1f} GFLOP/s "
                f"(median {fmt_seconds(entry['time_s']['median'])})"
            )

    def measure_training(self, name: str, module) -> None:
        batch = synthetic_batch(self.train_batch, self.train_size, self.device, self.cfg.seed)
        for variant in self.variants:
            model = prepared_module(module, variant)
            steps = training_steps(name, model, prepared_batch(batch, variant), variant, self.device)
            for network, step in steps.items():
                run = self.attempt(f"train {name} {network} {variant}", lambda: self.timed(step))
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
            reference = None
            for variant in self.variants:
                model = prepared_module(module, variant)
                call = in_inference_mode(
                    inference_call(name, model, prepared_batch(batch, variant)), variant, self.device
                )
                run = self.attempt(f"inference {name} {size} {variant}", lambda: self.timed(call))
                del model
                if run is None:
                    continue
                reference = run.result if variant == "fp32" else reference
                self.record(
                    "inference",
                    run,
                    items=1,
                    stage=name,
                    variant=variant,
                    size=size,
                    max_abs_diff_vs_fp32=max_abs_diff(run.result, reference),
                )

    def measure_pipeline(self) -> None:
        try:
            from pipeline.inference import BlindInpainter, InpaintSettings
            from pipeline.model import BlindPipeline
        except ImportError as err:
            warn(f"skipping the pipeline: {err}")
            return
        stages = {name: build_stage(self.cfg, name, self.device).eval() for name in STAGES}
        working_size = InpaintSettings().working_size
        for size in self.sizes:
            corrupted = synthetic_batch(1, size, self.device, self.cfg.seed)["corrupted"]
            reference = None
            for variant in self.variants:
                pipeline = BlindPipeline(
                    **{n: prepared_module(stages[n], variant) for n in STAGES}, **self.cfg.pipeline
                )
                layout = InpaintSettings(channels_last=tuple(STAGES) if variant == "channels_last" else ())
                inpainter = BlindInpainter(pipeline, layout).to(self.device)
                image = corrupted.contiguous(memory_format=memory_format_for(variant))
                call = in_inference_mode(lambda: inpainter.inpaint(image)["output"], variant, self.device)
                run = self.attempt(f"pipeline {size} {variant}", lambda: self.timed(call))
                del inpainter
                if run is None:
                    continue
                reference = run.result if variant == "fp32" else reference
                self.record(
                    "pipeline",
                    run,
                    items=1,
                    stage="pipeline",
                    variant=variant,
                    size=size,
                    working_size=working_size,
                    max_abs_diff_vs_fp32=max_abs_diff(run.result, reference),
                )


def max_abs_diff(output: torch.Tensor, reference: torch.Tensor | None) -> float | None:
    """``max |output − reference|`` in fp32, or None without a reference."""
    if reference is None:
        return None
    return (output.float() - reference.float()).abs().max().item()


# -- printing -------------------------------------------------------------------------------------


def fmt_seconds(s: float) -> str:
    return f"{s * 1e3:,.1f} ms" if s < 1 else f"{s:,.2f} s"


def fmt_bytes(n: int | None) -> str:
    return "–" if n is None else f"{n / 2**20:,.0f} MiB"


def fmt_flops(n: float) -> str:
    return f"{n / 1e9:,.2f} G"


def fmt_optional(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def machine_line(machine: dict) -> str:
    cuda = f", CUDA {machine['cuda']}" if machine["cuda"] else ""
    return (
        f"[bold]{machine['name']}[/] ({machine['device']}, {machine['threads']} threads), torch {machine['torch']}"
        f"{cuda}, fast bf16: {'yes' if machine['bf16_fast'] else 'no'}"
    )


def print_progress(part: str, row: dict) -> None:
    """One line per finished measurement."""
    t = row["time_s"]
    what = f"{row['stage']} {row.get('network', '')}".strip()
    shape = f"{row['batch_size']}×{row['size']}²" if part == "train" else f"{row['size']}²"
    rate = f"{row['images_per_s']:,.2f} img/s" if part == "train" else f"latency {fmt_seconds(t['median'])}"
    diff = row.get("max_abs_diff_vs_fp32")
    console.print(
        f"{part:<9} {what:<19} {row['variant']:<13} {shape:<9} {rate} "
        f"[dim](min {fmt_seconds(t['min'])}, max {fmt_seconds(t['max'])}), "
        f"{row['flops_per_s'] / 1e9:,.1f} GFLOP/s, {fmt_optional(row['pct_of_peak'], '.1f')}% of peak, "
        f"mem +{fmt_bytes(row['peak_memory_increase_bytes'])}"
        + (f", max|Δ| vs fp32 {diff:.2e}" if diff is not None and row["variant"] != "fp32" else "")
        + "[/]"
    )


def machine_table(results: dict) -> Table:
    m = results["machine"]
    table = Table(title="Machine", show_header=False)
    table.add_row("device", f"{m['name']} ({m['device']})")
    table.add_row("threads", str(m["threads"]))
    table.add_row("torch / CUDA", f"{m['torch']} / {m['cuda'] or '–'}")
    table.add_row("fast bf16", f"{'yes' if m['bf16_fast'] else 'no'} ({m['bf16_check']})")
    for label, entry in results["peak"].items():
        t = entry["time_s"]
        table.add_row(
            f"matmul peak {label}",
            f"{entry['flops_per_s'] / 1e9:,.1f} GFLOP/s ({entry['n']}², median "
            f"{fmt_seconds(t['median'])}, min {fmt_seconds(t['min'])}, max {fmt_seconds(t['max'])})",
        )
    table.add_row("memory", results["memory_method"])
    return table


def training_table(rows: list[dict]) -> Table:
    table = Table(title="Training step (forward + loss + backward + Adam step)")
    for col in (
        "stage",
        "network",
        "variant",
        "batch",
        "img/s",
        "step median",
        "min–max",
        "GFLOP/img",
        "GFLOP/s",
        "% peak",
        "peak mem +",
    ):
        table.add_column(col, justify="left" if col in ("stage", "network", "variant") else "right")
    for row in rows:
        t = row["time_s"]
        table.add_row(
            row["stage"],
            row["network"],
            row["variant"],
            f"{row['batch_size']}×{row['size']}²",
            f"{row['images_per_s']:,.2f}",
            fmt_seconds(t["median"]),
            f"{fmt_seconds(t['min'])}–{fmt_seconds(t['max'])}",
            fmt_flops(row["flops_per_image"]),
            f"{row['flops_per_s'] / 1e9:,.1f}",
            fmt_optional(row["pct_of_peak"], ".1f"),
            fmt_bytes(row["peak_memory_increase_bytes"]),
        )
    for stage, variant, total, batch in gan_iterations(rows):
        table.add_row(
            stage, "G+D", variant, "", f"{batch / total:,.2f}", fmt_seconds(total), "", "", "", "", "", style="bold"
        )
    return table


def gan_iterations(rows: list[dict]) -> Iterator[tuple[str, str, float, int]]:
    """``(stage, variant, seconds, batch)`` of a full GAN iteration: the sum of the G and D medians."""
    by_key: dict[tuple[str, str], dict[str, dict]] = {}
    for row in rows:
        by_key.setdefault((row["stage"], row["variant"]), {})[row["network"]] = row
    for (stage, variant), nets in by_key.items():
        if {"generator", "discriminator"} <= nets.keys():
            total = nets["generator"]["time_s"]["median"] + nets["discriminator"]["time_s"]["median"]
            yield stage, variant, total, nets["generator"]["batch_size"]


def inference_table(rows: list[dict]) -> Table:
    table = Table(title="Inference, batch 1 (pipeline = MPN → Canny → EPN → IPN)")
    for col in (
        "stage",
        "variant",
        "size",
        "latency median",
        "min–max",
        "GFLOP/img",
        "GFLOP/s",
        "% peak",
        "peak mem +",
        "max|Δ| vs fp32",
    ):
        table.add_column(col, justify="left" if col in ("stage", "variant") else "right")
    for row in rows:
        t = row["time_s"]
        table.add_row(
            row["stage"],
            row["variant"],
            f"{row['size']}²",
            fmt_seconds(t["median"]),
            f"{fmt_seconds(t['min'])}–{fmt_seconds(t['max'])}",
            fmt_flops(row["flops_per_image"]),
            f"{row['flops_per_s'] / 1e9:,.1f}",
            fmt_optional(row["pct_of_peak"], ".1f"),
            fmt_bytes(row["peak_memory_increase_bytes"]),
            "reference" if row["variant"] == "fp32" else fmt_optional(row["max_abs_diff_vs_fp32"], ".2e"),
        )
    return table


def print_report(results: dict, out: Path) -> None:
    console.print(machine_table(results))
    if results["train"]:
        console.print(training_table(results["train"]))
    if results["inference"] or results["pipeline"]:
        console.print(inference_table(results["inference"] + results["pipeline"]))
    console.print(f"results: {out}")


# -- command line ---------------------------------------------------------------------------------


def output_path(cfg: DictConfig) -> Path:
    """``out``, else ``benchmark.json`` in the Hydra run folder."""
    if cfg.get("out"):
        return Path(str(cfg.out)).expanduser()
    return Path(HydraConfig.get().runtime.output_dir) / "benchmark.json"


@hydra.main(config_path="pkg://conf", config_name="benchmark", version_base="1.3")
def main(cfg: DictConfig) -> None:
    out = output_path(cfg)
    try:
        results = Benchmark(cfg, out).run()
    except BenchmarkError as err:
        sys.exit(f"error: {err}")
    print_report(results, out)


if __name__ == "__main__":
    main()
