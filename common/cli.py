"""The command machinery: every command (``python -m pipeline.train``, ``inpaint``, ``evaluate``,
``export``, ``serve``, ``benchmark``, ``data.preview``) is declared with :func:`command`; an input
error (:class:`~common.errors.BlindfillError`, Hydra's and OmegaConf's config errors) ends it with
``error: <message>`` on one line and exit status 1; a bug keeps its traceback
(``BLINDFILL_DEBUG=1`` shows every traceback)."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import TypeVar

from hydra.errors import HydraException, InstantiationException
from omegaconf.errors import OmegaConfBaseException

from common.errors import BlindfillError, user_error

T = TypeVar("T")

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


def command(config_name: str, *schemas: str) -> Callable[[Callable[..., T]], Callable[[], T]]:
    """Declare a command's ``main(cfg)`` (``@hydra.main`` with ``conf/<config_name>.yaml``, plus
    :func:`cli`): Hydra's own errors while composing (an unknown key or option, a value of the
    wrong type, a missing mandatory value) end in one line too. ``schemas``: the parts of
    :data:`conf.schemas.PARTS` the command's config composes, registered when it starts."""
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
            if schemas:
                from conf.schemas import register

                register(*schemas)
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
