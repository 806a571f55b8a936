"""`webrecord recorder-pod ARGS`: the recorder pod's entrypoint.

Runs `webrecord recorder ARGS` as a child and, once it exits, copies its final status file into
the container's termination message (`WEBRECORD_TERMINATION_LOG`, the pod's
terminationMessagePath). The recorder exits right after `finished`, so its control endpoint is
gone by the time the operator polls again; the kubelet carries the termination message into
the pod's status, where the operator reads the result. SIGTERM/SIGINT are passed to the child.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from webrecord.logs import event

log = logging.getLogger(__name__)

# The kubelet keeps at most 4096 bytes of a container's termination message.
MESSAGE_LIMIT = 4096


def status_file(args: list[str]) -> Path | None:
    """The recorder's status file from its arguments (docs/contracts.md section 1)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--work-dir")
    parser.add_argument("--status-file")
    known, _ = parser.parse_known_args(args)
    if known.status_file:
        return Path(known.status_file)
    if known.work_dir:
        return Path(known.work_dir) / "status.json"
    return None


def compact(raw: str) -> str:
    """The status JSON cut to the kubelet's limit, dropping the least useful fields first."""
    if len(raw.encode()) <= MESSAGE_LIMIT:
        return raw
    try:
        doc: dict[str, Any] = json.loads(raw)
    except ValueError:
        return raw.encode()[:MESSAGE_LIMIT].decode(errors="ignore")
    for key in ("message", "segments"):
        doc.pop(key, None)
    text = json.dumps(doc, separators=(",", ":"))
    videos = (doc.get("result") or {}).get("videos") or []
    while len(text.encode()) > MESSAGE_LIMIT and videos:
        videos.pop()  # keep the first files; the callback has the full list
        text = json.dumps(doc, separators=(",", ":"))
    return text


def write_termination_message(source: Path | None, target: Path) -> None:
    try:
        raw = source.read_text() if source else ""
    except OSError as exc:
        event(log, "no status file to report", logging.WARNING, path=str(source), error=str(exc))
        return
    try:
        target.write_text(compact(raw))  # no rename: the kubelet mounts a file at this path
    except OSError as exc:
        event(log, "cannot write termination message", logging.WARNING, path=str(target),
              error=str(exc))


def run(recorder_args: list[str]) -> int:
    cmd = [sys.executable, "-m", "webrecord.cli", "recorder", *recorder_args]
    child = subprocess.Popen(cmd)

    def forward(signum: int, _frame: Any) -> None:
        if child.poll() is None:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    code = _wait_reaping(child.pid)
    target = os.environ.get("WEBRECORD_TERMINATION_LOG")
    if target:
        write_termination_message(status_file(recorder_args), Path(target))
    event(log, "recorder exited", exit_code=code)
    return code


def _wait_reaping(pid: int) -> int:
    """Wait for `pid`; as the container's PID 1, also reap orphans (Chromium helpers)."""
    if os.getpid() != 1:
        return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    while True:
        try:
            done, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 1
        if done == pid:
            return os.waitstatus_to_exitcode(status)


# The recorder's options (docs/contracts.md section 1), passed through unchanged.
_PASSED = ("--task", "--work-dir", "--control-host", "--control-port", "--token-file",
           "--status-file", "--port-file", "--width", "--height")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "recorder-pod",
        help="run the recorder and report its final status as the pod's termination message",
    )
    for flag in _PASSED:
        parser.add_argument(flag, required=flag == "--work-dir")
    # A standby pod: the recorder waits for POST /claim (its status file is the same).
    parser.add_argument("--standby", action="store_true")
    parser.set_defaults(func=_run_args)


def _run_args(args: argparse.Namespace) -> int:
    if bool(args.task) == args.standby:
        print("recorder-pod: exactly one of --task and --standby is required", file=sys.stderr)
        return 2
    passed: list[str] = ["--standby"] if args.standby else []
    for flag in _PASSED:
        value = getattr(args, flag[2:].replace("-", "_"))
        if value is not None:
            passed += [flag, str(value)]
    return run(passed)
