"""The errors that are the user's input, not our bug, and the one wrapper that reports them.

Every command (``python -m pipeline.train``, ``inpaint``, ``evaluate``, ``export``, ``benchmark``,
``data.preview``) is declared with :func:`command`: Hydra composes its config, every value is
checked (:func:`common.config.check_config`), and any input error ends the command with one line,
``error: <message>``, and exit status 1, never a traceback: a :class:`BlindfillError`, and Hydra's
and OmegaConf's own errors (an unknown key, a value of the wrong type, a missing option). Anything
else is a bug and keeps its traceback. ``BLINDFILL_DEBUG=1`` shows the traceback of every error.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import TypeVar

from hydra.errors import HydraException, InstantiationException
from omegaconf.errors import OmegaConfBaseException

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


DEBUG_ENV = "BLINDFILL_DEBUG"


def message_of(err: BlindfillError) -> str:
    """The message of an input error; one raised in a data-loader worker comes back wrapped in
    the worker's traceback (``Caught X in DataLoader worker ... Original Traceback``): its last line."""
    text = str(err)
    if "Original Traceback" in text:
        last = [line for line in text.splitlines() if line.strip()][-1]
        return last.split(": ", 1)[-1]  # "data.datasets.DatasetError: <message>"
    return text


def one_line(err: BaseException) -> str:
    """An error's message on one line: Hydra's and OmegaConf's multi-line messages (and their
    cause's) joined, without OmegaConf's ``full_key``/``object_type`` details."""
    if isinstance(err, InstantiationException) and isinstance(err.__cause__, (ValueError, TypeError)):
        lines = [line.strip() for line in str(err).splitlines()]
        where = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("full_key:")), "")
        return f"{where + ': ' if where else ''}{err.__cause__}".splitlines()[0]
    parts = []
    for e in (err, err.__cause__):
        if e is None or (e is err.__cause__ and not isinstance(e, OmegaConfBaseException)):
            continue
        for line in str(e).splitlines():
            line = line.strip().rstrip(".")
            if line.startswith("Config search path"):  # Hydra's internals, after the useful part
                break
            if line and not line.startswith(("full_key:", "object_type=", "reference_type=")) and line not in parts:
                parts.append(line)
    text, listing = "", False
    for part in parts:  # "Available options in 'stage':" is followed by one option per line
        if not text:
            text = part
        elif listing:
            text += (" " if text.endswith(":") else ", ") + part
        else:
            text += "; " + part
        listing = listing or part.endswith(":")
    return text


def refused_argument(err: InstantiationException) -> bool:
    """Whether a constructor refused a configured value (its own check raised ``ValueError`` or
    ``TypeError``, e.g. ``depth must be in 0..8``), or a :class:`BlindfillError`."""
    return user_error(err) is not None or isinstance(err.__cause__, (ValueError, TypeError))


def _exit_if_input_error(err: Exception, composing: bool = False) -> None:
    """Exit with ``error: <one line>`` when ``err`` is the user's input: anything raised while
    Hydra parses and composes the command line, Hydra's and OmegaConf's config errors, a value a
    constructor refused. A bug returns (its traceback follows), as does everything under
    ``BLINDFILL_DEBUG=1``."""
    if os.environ.get(DEBUG_ENV):
        return
    if not (composing or isinstance(err, (HydraException, OmegaConfBaseException))):
        return
    if isinstance(err, InstantiationException) and not refused_argument(err):
        return  # a bug while building an object, not an input error
    message = one_line(user_error(err) or err)
    if "Got NoneType" in message:  # group=null
        message += " (a group's default is removed with ~GROUP, e.g. ~damage)"
    sys.exit(f"error: {message}")


def command(config_name: str) -> Callable[[Callable[..., T]], Callable[[], T]]:
    """Declare a command's ``main(cfg)`` (``@hydra.main`` with ``conf/<config_name>.yaml``, plus
    :func:`cli`): Hydra's own errors while composing (an unknown key or option, a value of the
    wrong type, a missing mandatory value) end in one line too."""
    import hydra

    def decorate(main: Callable[..., T]) -> Callable[[], T]:
        started = []

        def checked_main(cfg):
            started.append(True)
            try:
                return cli(main)(cfg)
            except (HydraException, OmegaConfBaseException) as err:  # reported here, before Hydra adds its own line
                _exit_if_input_error(err)
                raise

        hydra_main = hydra.main(config_path="pkg://conf", config_name=config_name, version_base="1.3")(checked_main)

        @functools.wraps(main)
        def run() -> T:
            started.clear()
            os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra re-raises instead of printing its own report
            try:
                return hydra_main()
            except Exception as err:
                _exit_if_input_error(err, composing=not started)  # before main: parsing and composing
                raise

        return run

    return decorate


def cli(main: Callable[..., T]) -> Callable[..., T]:
    """Decorate a command's ``main(cfg)``: the config's values are checked first
    (:func:`common.config.check_config`), and a :class:`BlindfillError` (also one raised while
    Hydra instantiates a config) exits with ``error: <message>``."""

    @functools.wraps(main)
    def run(*args, **kwargs):
        from common.config import check_config

        try:
            if args:
                check_config(args[0])
            return main(*args, **kwargs)
        except (BlindfillError, InstantiationException) as err:
            reason = user_error(err)
            if reason is None or os.environ.get(DEBUG_ENV):
                raise
            sys.exit(f"error: {message_of(reason)}")

    return run
