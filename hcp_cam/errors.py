"""Exceptions that the command line turns into a one-line message and a non-zero exit."""

from __future__ import annotations

import os

__all__ = ["HcpCamError", "InputError", "ConfigError"]


class HcpCamError(Exception):
    """Base class of every error hcp-cam raises on purpose (bad input, bad configuration)."""


class InputError(HcpCamError, ValueError):
    """An input file or value is wrong. The message names the file and what is wrong with it.

    Args:
        message: what is wrong, in words a user can act on.
        path: the offending file, if there is one; it is put at the start of the message.
    """

    def __init__(self, message: str, path: str | os.PathLike | None = None) -> None:
        self.path = None if path is None else os.fspath(path)
        super().__init__(f"{self.path}: {message}" if self.path else message)


class ConfigError(HcpCamError, ValueError):
    """A configuration value (bundle key, CLI option) is invalid."""
