"""`hcp-cam fa`: placeholder until its issue lands."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("fa", help="(not implemented yet)")
    p.set_defaults(func=lambda args: print("hcp-cam fa: not implemented yet") or 1)
