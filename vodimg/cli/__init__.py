"""The ``vodimg`` command. Each sub-command lives in its own module with ``register(subparsers)``."""

from __future__ import annotations

import argparse
import importlib
import sys

# Sub-command modules, in the order ``vodimg --help`` lists them.
COMMAND_MODULES = ("serve", "worker", "accounts", "tls", "process", "upload")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vodimg",
        description="Self-hosted Tencent Cloud VOD image async processing (API 2018-07-17).",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"vodimg.cli.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    sys.exit(args.handler(args) or 0)
