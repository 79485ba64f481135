"""The errors that are the user's input, not our bug: a command reports them in one line, never a
traceback (:mod:`common.cli`)."""

from __future__ import annotations

from hydra.errors import InstantiationException


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
