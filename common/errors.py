"""The errors that are the user's input, not our bug, and the one wrapper that reports them.

Every command (``python -m pipeline.train``, ``inpaint``, ``evaluate``, ``export``, ``benchmark``,
``data.preview``) runs its work through :func:`cli`: a :class:`BlindfillError` ends it with one
line, ``error: <message>``, and exit status 1, never a traceback. Anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import TypeVar

from hydra.errors import InstantiationException

T = TypeVar("T")


class BlindfillError(ValueError):
    """Base of every error a command reports in one line."""


class ConfigError(BlindfillError):
    """A setting or command-line value that cannot work."""


class CheckpointError(BlindfillError):
    """A model file that is missing, unreadable, unsafe, of another stage or version, or that
    does not fit its own configuration."""


class NonFiniteLossError(BlindfillError):
    """The loss was NaN or infinite for too many steps in a row."""


def user_error(err: BaseException) -> BlindfillError | None:
    """``err`` itself, or the :class:`BlindfillError` Hydra's ``instantiate`` wrapped, else None."""
    while err is not None:
        if isinstance(err, BlindfillError):
            return err
        err = err.__cause__ if isinstance(err, InstantiationException) else None
    return None


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


def cli(main: Callable[..., T]) -> Callable[..., T]:
    """Decorate a command's ``main``: a :class:`BlindfillError` (also one raised while Hydra
    instantiates a config) exits with ``error: <message>``."""

    @functools.wraps(main)
    def run(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except (BlindfillError, InstantiationException) as err:
            reason = user_error(err)
            if reason is None:
                raise
            sys.exit(f"error: {reason}")

    return run
