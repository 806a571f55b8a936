"""The `webrecord` command. Each subcommand lives in the module that owns it.

A command module exposes `register(subparsers)` which adds its parser(s) and sets
`func=<callable(args) -> int>` as the parser default.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from webrecord import __version__, logs

# Modules that add subcommands; each owns its own arguments.
COMMAND_MODULES = [
    "webrecord.recorder.cli",  # record, recorder
    "webrecord.adapter.cli",  # serve
    "webrecord.controller.cli",  # operator, recorder-pod
    "webrecord.api.crd",  # crd
    "webrecord.delivery.cli",  # deliver
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="webrecord", description=__doc__)
    parser.add_argument("--version", action="version", version=f"webrecord {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    logs.setup()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
