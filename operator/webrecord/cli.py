"""The `webrecord` command. Each subcommand lives in the module that owns it.

A command module exposes `register(subparsers)` which adds its parser(s) and sets
`func=<callable(args) -> int>` as the parser default.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from webrecord import __version__, logs

# Subcommand -> the module that registers it. Only the module of the command being run is
# imported: boto3, kopf and the kubernetes client cost ~0.4 s of start-up (more under load),
# which a recorder's start latency should not pay.
COMMANDS = {
    "record": "webrecord.recorder.cli",
    "recorder": "webrecord.recorder.cli",
    "serve": "webrecord.adapter.cli",
    "operator": "webrecord.controller.cli",
    "recorder-pod": "webrecord.controller.cli",
    "crd": "webrecord.api.crd",
    "deliver": "webrecord.delivery.cli",
}
COMMAND_MODULES = list(dict.fromkeys(COMMANDS.values()))


def _modules_for(argv: list[str]) -> list[str]:
    """The module of the named command, or all of them (help, typos) when none is named."""
    first = next((arg for arg in argv if not arg.startswith("-")), None)
    return [COMMANDS[first]] if first in COMMANDS else COMMAND_MODULES


def build_parser(modules: list[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="webrecord", description=__doc__)
    parser.add_argument("--version", action="version", version=f"webrecord {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in modules or COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    logs.setup()
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(_modules_for(argv))
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
