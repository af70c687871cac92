"""Bad input to a bundle run ends as the command line's does: one line on stderr, exit code 2.

``python -m monai.bundle run`` wraps an error raised inside a config expression in MONAI's own
``RuntimeError("Failed to evaluate ...")`` and prints the whole chain as a traceback. The hook
installed here finds an :class:`hcp_cam.errors.HcpCamError` in that chain and prints only its
message; anything else (a bug) keeps Python's full traceback.
"""

from __future__ import annotations

import os
import sys
from types import TracebackType

from hcp_cam.errors import HcpCamError

__all__ = ["user_error", "report_errors"]

EXIT_BAD_INPUT = 2


def user_error(exc: BaseException | None) -> HcpCamError | None:
    """The first :class:`HcpCamError` in ``exc``'s ``__cause__``/``__context__`` chain, or ``None``."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, HcpCamError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def _hook(previous):
    def hook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        err = user_error(exc)
        if err is None:
            previous(kind, exc, tb)
            return
        print(f"cam_dmri bundle: error: {err}", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        # the interpreter would exit 1 after any excepthook; the project's code for bad input is 2.
        # Every `finally` and context manager has run by now, so no temporary file is left behind.
        os._exit(EXIT_BAD_INPUT)

    hook.hcp_cam = True  # type: ignore[attr-defined]
    return hook


def report_errors() -> bool:
    """Install the hook (once per process); the bundle's ``initialize`` calls it first.

    Returns:
        ``True``, so that the call can stand in a config list.
    """
    if not getattr(sys.excepthook, "hcp_cam", False):
        sys.excepthook = _hook(sys.excepthook)
    return True
