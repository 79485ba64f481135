"""Every configurable value checked in one place, before a command does any work.

Types come from the structured configs (``conf/schemas.py``: OmegaConf refuses ``batch_size=abc``
by type when the override is merged). Ranges are written once, next to the defaults, on the
constructor or command field they constrain, as pydantic constraints::

    batch_size: Annotated[int, Field(ge=1)] = 8

:func:`check_config` walks a composed config and checks every value that has such a constraint:
the fields of a structured node (a command's root, e.g. ``InpaintCommand``) and the arguments of
every node with ``_target_`` (data module, stage modules, data sets, ...). A value out of range is
one :class:`~common.errors.ConfigError` naming the key, the value and what is allowed. The
networks check their own bounds in their constructors (``depth must be in 0..8``), which a
command reports in one line too (:func:`common.errors.command`). :func:`checked` gives the Python
API the same ranges.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
import types
import typing
from collections.abc import Mapping
from typing import Annotated, Any

from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from pydantic import Field, TypeAdapter, ValidationError

from common.errors import ConfigError, user_error

__all__ = [
    "Annotated",
    "Count",
    "Field",
    "NonNegative",
    "NonNegativeInt",
    "Positive",
    "Share",
    "check_config",
    "checked",
]

# The ranges most arguments need, by name (a signature reads ``lr: Positive = 1e-4``).
Positive = Annotated[float, Field(gt=0)]
NonNegative = Annotated[float, Field(ge=0)]
Count = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]
Share = Annotated[float, Field(ge=0, lt=1)]  # a fraction of the samples, never all of them


def _constrained(hint: Any) -> bool:
    """``Annotated[...]``, or ``Optional[Annotated[...]]``."""
    if typing.get_origin(hint) is Annotated:
        return True
    return typing.get_origin(hint) in (typing.Union, types.UnionType) and any(map(_constrained, typing.get_args(hint)))


def constraints_of(obj: Any) -> dict[str, Any]:
    """The constrained (``Annotated``) annotations of a class's constructor, a function's
    parameters, or a dataclass's fields: name -> annotation."""
    if dataclasses.is_dataclass(obj):
        hints = typing.get_type_hints(obj, include_extras=True)
        return {f.name: hints[f.name] for f in dataclasses.fields(obj) if _constrained(hints.get(f.name))}
    try:
        target = obj.__init__ if inspect.isclass(obj) else obj
        hints = typing.get_type_hints(target, include_extras=True)
    except (TypeError, NameError):
        return {}
    return {name: hint for name, hint in hints.items() if name != "return" and _constrained(hint)}


def _allowed(error: dict) -> str:
    """pydantic's message for one error, lower-cased into "must ..." form."""
    message = error["msg"]
    for prefix in ("Input should be ", "Value should be "):
        if message.startswith(prefix):
            return "must be " + message[len(prefix) :]
    return message[0].lower() + message[1:]


def check_values(owner: Any, values: Mapping, where: str = "") -> None:
    """Check each entry of ``values`` that ``owner`` (class, function or dataclass) constrains;
    ``where`` prefixes the key in the error (``data.``)."""
    for name, hint in constraints_of(owner).items():
        if name not in values:
            continue
        value = values[name]
        if value is None or (isinstance(value, str) and value.startswith(("${", "???"))):
            continue  # unset, or filled in later by an interpolation
        try:
            TypeAdapter(hint).validate_python(value)
        except ValidationError as err:
            raise ConfigError(f"{where}{name}={value!r}: {_allowed(err.errors()[0])}") from None


def checked(cls: type) -> type:
    """Class decorator: every construction checks the constrained arguments (the Python API gets
    the same ranges as a config, which :func:`check_config` checks before anything is built)."""
    init = cls.__init__
    signature = inspect.signature(init)

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        bound = signature.bind(self, *args, **kwargs)
        check_values(cls, bound.arguments)
        init(self, *args, **kwargs)

    cls.__init__ = __init__
    return cls


def _target(node: Mapping) -> Any:
    """The class or function a node's ``_target_`` names, or None."""
    path = node.get("_target_")
    if not isinstance(path, str) or "." not in path:
        return None
    module, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return None


def _walk(node: Any, where: str, schema: Any = None) -> None:
    if isinstance(node, list):
        for i, item in enumerate(node):
            _walk(item, f"{where}{i}.")
        return
    if not isinstance(node, Mapping):
        return
    for owner in (schema, _target(node)):
        if owner is not None:
            check_values(owner, node, where)
    for key, value in node.items():
        _walk(value, f"{where}{key}.")


def check_config(cfg: DictConfig) -> None:
    """Check every constrained value of a composed command config (see the module docstring);
    raises :class:`ConfigError` for the first value out of range. Interpolations (``${width_mult}``)
    are checked resolved where they resolve."""
    if not isinstance(cfg, DictConfig):
        return
    schema = OmegaConf.get_type(cfg)
    try:
        plain = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    except OmegaConfBaseException:  # an interpolation that fails here fails with its own message later
        plain = OmegaConf.to_container(cfg, resolve=False, throw_on_missing=False)
    _walk(plain, "", schema if dataclasses.is_dataclass(schema) else None)


def instantiate(config, **kwargs):
    """``hydra.utils.instantiate(config, **kwargs)``, but a :class:`BlindfillError` raised while
    building comes out as itself, not wrapped in Hydra's ``InstantiationException``."""
    from hydra.utils import instantiate as hydra_instantiate

    try:
        return hydra_instantiate(config, **kwargs)
    except InstantiationException as err:
        reason = user_error(err)
        if reason is None:
            raise
        raise reason from None
