"""`python -m webrecord.adapter ...` = `webrecord serve ...` without the other subcommands."""

from __future__ import annotations

import argparse
import sys

from webrecord import logs
from webrecord.adapter import cli


def main(argv: list[str] | None = None) -> int:
    logs.setup()
    parser = argparse.ArgumentParser(prog="python -m webrecord.adapter")
    sub = parser.add_subparsers(dest="command", required=True)
    cli.register(sub)
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
