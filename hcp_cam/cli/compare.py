"""`hcp-cam compare`: placeholder until its issue lands."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("compare", help="(not implemented yet)")
    p.set_defaults(func=lambda args: print("hcp-cam compare: not implemented yet") or 1)
