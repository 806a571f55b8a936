"""The top-level command: every subcommand is reachable, and running one imports only its module."""

import subprocess
import sys

from webrecord.cli import COMMANDS, build_parser


def test_every_command_is_registered_by_its_module() -> None:
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command")
    assert set(COMMANDS) <= set(subparsers.choices)


def test_record_does_not_import_the_cluster_and_storage_libraries() -> None:
    code = (
        "import sys; from webrecord import cli; cli.build_parser(cli._modules_for(['record', '-h']))\n"
        "print(sorted(m for m in ('boto3', 'kopf', 'kubernetes') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_help_lists_all_commands() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "webrecord.cli", "--help"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0
    for name in COMMANDS:
        assert name in out.stdout
