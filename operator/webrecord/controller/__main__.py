"""`python -m webrecord.controller operator ...`: the operator's commands without the rest of the CLI."""

from __future__ import annotations

import argparse
import sys

from webrecord import logs
from webrecord.controller import cli


def main(argv: list[str] | None = None) -> int:
    logs.setup()
    parser = argparse.ArgumentParser(prog="python -m webrecord.controller")
    cli.register(parser.add_subparsers(dest="command", metavar="COMMAND", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
