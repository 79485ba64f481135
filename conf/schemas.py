"""The typed schemas the YAML files compose: :func:`register` puts a structured config for each
configurable class (hydra-zen ``builds``: argument names, annotated types, the constructor's
defaults and ranges) in Hydra's ConfigStore under ``schema/...``, only for the parts a command
names (:func:`common.cli.command`), so ``inpaint`` imports no training code. The YAML files
compose those schemas and show the values users tune most; the constructors' signatures hold the
defaults (tests/test_config.py checks that the YAML repeats them exactly). So
``python -m pipeline.train stage=epn --cfg job`` shows every value, ``stage.module.lr=abc`` is
refused by type, and an unknown key is refused by name.

- ``schema/network/<name>``: a network's arguments, without a target (the stage module builds
  its network from them) and without ``in_channels`` (the stage's inputs builder fixes it);
- ``schema/module/<stage>``, ``schema/feed``: the Lightning modules and what feeds a stage;
- ``schema/pipeline``: the :class:`~pipeline.model.BlindPipeline` settings (training);
  ``schema/pipeline_overrides``: the same names, ``null`` = "as stored in the model" (inference);
- ``schema/inference``: :class:`~pipeline.inference.inpainter.InpaintSettings`;
- ``schema/data``, ``schema/dataset/<name>``, ``schema/mask/<name>``, ``schema/corruption``: the
  data module, the data sets, mask generators and corruption model.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from common.checkpoint import arguments_schema
from common.config import Count, NonNegativeInt, Positive, constraints_of

# The groups of conf/train.yaml: each a config of its own, checked where it is built.
TRAIN_GROUPS = ("data", "damage", "masks", "corruption", "trainer", "logger", "callbacks", "stage", "pipeline")


def arguments_config(cls, exclude: tuple[str, ...] = (), name: str | None = None, optional: bool = False) -> type:
    """A dataclass of ``cls``'s constructor arguments (typed, with the constructor's defaults and
    its range constraints, :mod:`common.config`) and no ``_target_``; ``optional``: every field
    ``Optional`` with default None (overrides; the constructor checks their ranges)."""
    built = arguments_schema(cls, zen_exclude=exclude)
    constrained = constraints_of(cls)
    fields = []
    for f in dataclasses.fields(built):
        if f.name == "_target_":
            continue
        if optional:
            fields.append((f.name, Optional[f.type], dataclasses.field(default=None)))  # noqa: UP045
            continue
        hint = constrained.get(f.name, f.type)
        if f.default_factory is not dataclasses.MISSING:
            fields.append((f.name, hint, dataclasses.field(default_factory=f.default_factory)))
        else:
            fields.append((f.name, hint, dataclasses.field(default=f.default)))
    return dataclasses.make_dataclass(name or f"{cls.__name__}Arguments", fields)


def command_config(name: str, base: type, **fields: Any) -> type:
    """The root config of a command: ``base``'s fields (typed, with the code's defaults) plus the
    command's own ``fields`` (name -> type; their values come from the command's YAML)."""
    own = [(key, hint, dataclasses.field(default=MISSING)) for key, hint in fields.items()]
    return dataclasses.make_dataclass(name, own, bases=(base,))


@functools.cache
def _pipeline_overrides() -> type:
    """:class:`~pipeline.model.BlindPipeline`'s settings, each ``None`` = "as stored in the model"."""
    from pipeline.model import BlindPipeline

    return arguments_config(BlindPipeline, ("mpn", "epn", "ipn"), "PipelineOverrides", optional=True)


def _pipeline(store: ConfigStore) -> None:
    """``schema/pipeline`` (training) and ``schema/pipeline_overrides`` (inference)."""
    from pipeline.model import BlindPipeline

    settings = arguments_config(BlindPipeline, ("mpn", "epn", "ipn"), "PipelineSettings")
    store.store(group="schema", name="pipeline", node=settings)
    store.store(group="schema", name="pipeline_overrides", node=_pipeline_overrides())


def _inference(store: ConfigStore) -> None:
    """``schema/inference`` and the commands whose root holds its fields (``mode=``, ``working_size=``)."""
    from pipeline.inference.inpainter import InpaintSettings

    _pipeline(store)
    overrides = _pipeline_overrides()
    inference = arguments_config(InpaintSettings)
    store.store(group="schema", name="inference", node=inference)
    path = Optional[str]  # noqa: UP045 (OmegaConf reads typing.Optional)
    inpaint = command_config(
        "InpaintCommand", inference, input=str, output=str, method=str, checkpoint=path, mask_checkpoint=path,
        mask=path, save_intermediates=bool,
        overwrite=bool, batch_size=Count, device=str, pipeline=overrides, format=str, quality=int,
        keep_metadata=bool,
    )  # fmt: skip
    store.store(group="schema/command", name="inpaint", node=inpaint)
    serve = command_config(
        "ServeCommand", inference, method=str, checkpoint=path, mask_checkpoint=path, host=str, port=int, device=str,
        allowed_hosts=list[str],
        max_upload_mb=float, max_megapixels=float, max_queue=Count, pipeline=overrides,
    )  # fmt: skip
    store.store(group="schema/command", name="serve", node=serve)
    evaluate = command_config(
        "EvaluateCommand", inference, data=Any, corruption=Any, pipeline=overrides, method=str, checkpoint=path,
        mask_checkpoint=path, mask_set=path, mask_set_size=Count, masks_per_bucket=Count, limit=Optional[Count],  # noqa: UP045
        seed=NonNegativeInt, lpips_weights=path, lpips_net=str, fid_weights=path, batch_size=Count,
        device=str, grid_rows=NonNegativeInt, progress=bool, protocol=str, damage_kinds=Any,
        per_kind=Count, baselines=Any,  # lists: checked by the command
        export_pairs=path, predictions=path,
    )  # fmt: skip
    store.store(group="schema/command", name="evaluate", node=evaluate)


def _data(store: ConfigStore) -> None:
    """``schema/data``, ``schema/dataset/<name>``, ``schema/mask/<name>``, ``schema/corruption``, ``schema/damage``."""
    from data.corruption import Corruptor
    from data.damage import DamageMix
    from data.datamodule import InpaintingDataModule
    from data.datasets import celeba, cifar10, image_folder, paris_streetview, places2
    from data.masks import FreeFormMasks, IrregularMaskFolder, LamaMasks, MixedMasks, RectMasks
    from data.sample import sample

    data = arguments_schema(InpaintingDataModule, zen_exclude=("masks", "corruption", "damage", "seed"))
    store.store(group="schema", name="data", node=data)
    datasets = {"sample": sample, "folder": image_folder, "celeba": celeba, "psv": paris_streetview, "places2": places2}
    datasets.update(cifar10=cifar10)
    for name, fn in datasets.items():  # partials: the data module passes split and size
        node = arguments_schema(fn, zen_partial=True, zen_exclude=("split", "size"))
        store.store(group="schema/dataset", name=name, node=node)
    store.store(group="schema", name="corruption", node=arguments_schema(Corruptor))
    store.store(group="schema", name="damage", node=arguments_schema(DamageMix))
    masks = {"freeform": FreeFormMasks, "rect": RectMasks, "irregular": IrregularMaskFolder, "lama": LamaMasks}
    for name, cls in {**masks, "mixed": MixedMasks}.items():
        store.store(group="schema/mask", name=name, node=arguments_schema(cls))


def _stages(store: ConfigStore) -> None:
    """``schema/network/<name>``, ``schema/module/<stage>``, ``schema/feed`` and ``schema/command/train``:
    our three stages, the joint and every other system's stage (:func:`pipeline.methods.fill_stages`),
    each with the networks it names in its ``networks``."""
    from common.discriminators import DISCRIMINATORS
    from epn.module import EPNModule
    from ipn.layers import ContextualAttention
    from ipn.module import IPNModule
    from mpn.module import MPNModule
    from pipeline.methods import fill_stages
    from pipeline.model import StageFeed
    from pipeline.training.joint import JointModule

    modules = {cls.stage_name: cls for cls in (MPNModule, EPNModule, IPNModule, *fill_stages().values(), JointModule)}
    networks = {name: net for cls in modules.values() for name, net in getattr(cls, "networks", {}).items()}
    # stage/discriminator=<name>, stage/generator=<name>: the node carries the choice's name
    choices = dict(DISCRIMINATORS)
    for cls in modules.values():  # a stage that trains one of several generators names them
        choices.update(getattr(cls, "generator_choices", {}))
    chosen_by_name = {cls: name for name, cls in choices.items()}
    for name, cls in networks.items():
        node: Any = arguments_config(cls, exclude=("in_channels",))
        if "attention" in inspect.signature(cls).parameters:  # ContextualAttention's arguments, typed
            attention = arguments_config(ContextualAttention)
            node = dataclasses.make_dataclass(
                f"{cls.__name__}Arguments",
                [("attention", attention, dataclasses.field(default_factory=attention))],
                bases=(node,),
            )
        if cls in chosen_by_name:
            node = dataclasses.make_dataclass(
                node.__name__, [("name", str, dataclasses.field(default=chosen_by_name[cls]))], bases=(node,)
            )
        store.store(group="schema/network", name=name, node=node)
    for name, cls in modules.items():
        store.store(group="schema/module", name=name, node=arguments_schema(cls))
    store.store(group="schema", name="feed", node=arguments_schema(StageFeed))

    path = Optional[str]  # noqa: UP045 (OmegaConf reads typing.Optional)
    train = dataclasses.make_dataclass(
        "TrainCommand",
        [
            *((group, Any, dataclasses.field(default=None)) for group in TRAIN_GROUPS),
            ("seed", NonNegativeInt, dataclasses.field(default=0)),
            ("width_mult", Positive, dataclasses.field(default=1.0)),
            ("ckpt_path", path, dataclasses.field(default=None)),
            ("init_from", path, dataclasses.field(default=None)),
            ("chain", Any, dataclasses.field(default=None)),
        ],
    )
    store.store(group="schema/command", name="train", node=train)


# What each command needs registered (common.cli.command names the parts).
PARTS = {"pipeline": _pipeline, "inference": _inference, "data": _data, "stages": _stages}
_registered: set[str] = set()


def register(*parts: str) -> None:
    """Register the schemas of ``parts`` (:data:`PARTS`; all of them when none is named) in Hydra's
    ConfigStore, each once. Only what is named is imported."""
    store = ConfigStore.instance()
    for part in parts or tuple(PARTS):
        if part not in _registered:
            PARTS[part](store)
            _registered.add(part)
