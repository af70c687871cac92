"""The ``hcp-cam`` command line: one sub-command per module in this package.

Each sub-command module defines ``register(subparsers)``, which adds its parser and sets
``func`` (called with the parsed ``argparse.Namespace``; returns an exit code or ``None``).
Errors raised on purpose (:class:`hcp_cam.errors.HcpCamError`) become one line on stderr and
exit code 2; no traceback. A sub-command may set ``args.fast_exit`` once its outputs are written:
the program (:func:`console_main`) then ends without the interpreter's teardown (see there).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from hcp_cam import __version__
from hcp_cam.errors import HcpCamError

__all__ = ["build_parser", "main", "console_main"]

# sub-command modules, in the order `hcp-cam --help` lists them
_COMMANDS = ("synth", "datalist", "fa", "compare", "cam", "figures", "group", "report")


def build_parser(commands: Sequence[str] = _COMMANDS) -> argparse.ArgumentParser:
    """The ``hcp-cam`` parser with the sub-commands ``commands`` (default: all)."""
    parser = argparse.ArgumentParser(
        prog="hcp-cam", description="Class Activation Maps of age from HCP diffusion MRI."
    )
    parser.add_argument("--version", action="version", version=f"hcp-cam {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in commands:
        module = importlib.import_module(f"hcp_cam.cli.{name}")
        module.register(sub)
    return parser


def _requested(argv: Sequence[str]) -> Sequence[str]:
    """The one sub-command named on the command line, or all (for ``--help``, a typo, none given).

    Building one sub-command's parser imports one module: ``hcp-cam fa`` does not load the
    plotting or table libraries the other sub-commands import.
    """
    first = next((a for a in argv if not a.startswith("-")), None)
    return (first,) if first in _COMMANDS else _COMMANDS


def _run(argv: Sequence[str] | None) -> tuple[int, argparse.Namespace]:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_requested(argv))
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        rc = args.func(args)
    except HcpCamError as e:
        print(f"hcp-cam {args.command}: error: {e}", file=sys.stderr)
        return 2, args
    return int(rc or 0), args


def main(argv: Sequence[str] | None = None) -> int:
    """Run one sub-command (``argv`` default: ``sys.argv[1:]``); returns its exit code."""
    return _run(argv)[0]


def console_main() -> NoReturn:
    """The ``hcp-cam`` program (console script and ``python -m hcp_cam.cli``): :func:`main`, then exit.

    After a sub-command that set ``args.fast_exit`` (``hcp-cam fa`` on one DWI, run once per subject
    in array jobs), the streams are flushed and the process ends with ``os._exit``: the interpreter's
    teardown after ``import torch`` takes ~0.5 s, a seventh of the whole command on a
    100x120x96 x 51 DWI (docs/performance.md). Its outputs are complete by then (written under
    temporary names and renamed); nothing else is pending (no thread, no open file).
    """
    rc, args = _run(None)
    if getattr(args, "fast_exit", False):
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)
    sys.exit(rc)


if __name__ == "__main__":  # pragma: no cover
    console_main()
