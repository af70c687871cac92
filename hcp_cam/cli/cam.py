"""`hcp-cam cam`: placeholder until its issue lands."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("cam", help="(not implemented yet)")
    p.set_defaults(func=lambda args: print("hcp-cam cam: not implemented yet") or 1)
