"""`webrecord record` (foreground, one page to one file: `recorder.foreground`) and `webrecord
recorder` (one task, driven through the control endpoint: `recorder.runtask`; docs/contracts.md
section 1): their arguments, checked, then run in a supervised child (`recorder.supervise`)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import Any, Callable

from pydantic import ValidationError

from webrecord.api.models import (DEFAULT_HEIGHT, DEFAULT_MAX_DURATION_S, DEFAULT_WIDTH,
                                  MAX_DIMENSION, RecordingSpec, RecordingTask)
from webrecord.recorder.supervise import run_supervised
from webrecord.recorder.validation import validation_message

log = logging.getLogger(__name__)

# Model field (wire name) -> the flag a user of `record` typed.
_FLAG_NAMES = {
    "recordUrl": "URL", "width": "--width", "height": "--height",
    "maxDurationLimit": "--duration", "manualStart": "--manual-start",
    "output.video.muxer": "--muxer", "output.video.encryptKey": "--encrypt-key",
    "output.video.authUrl": "--auth-url", "output.video": "--encrypt-key",
}


def register(subparsers: Any) -> None:
    rec = subparsers.add_parser(
        "record", help="record a web page with its sound to a video file",
        description="Record URL (or the built-in demo) to an mp4 or HLS file, in the foreground. "
                    "Ctrl-C stops and still writes the file.")
    rec.add_argument("url", nargs="?", help="page to record (http:// or https://)")
    rec.add_argument("-o", "--output", default="recording.mp4",
                     help="output file (.mp4, or .m3u8 for HLS); default recording.mp4")
    rec.add_argument("--width", type=int, help="1..2560, default 1280")
    rec.add_argument("--height", type=int, help="1..2560, default 720")
    rec.add_argument("--duration", type=int, metavar="SECONDS",
                     help=f"stop after this much recorded time (MaxDurationLimit; default {DEFAULT_MAX_DURATION_S})")
    rec.add_argument("--manual-start", action="store_true",
                     help="start recording when the page calls window.startRecord()")
    rec.add_argument("--manual-start-timeout", type=float, metavar="SECONDS",
                     help="give up when startRecord() was not called in time (default 300)")
    rec.add_argument("--muxer", choices=["mp4", "hls"], help="default: from the output's extension")
    rec.add_argument("--encrypt-key", metavar="HEX", help="AES-128 key, 32 hex digits (HLS only)")
    rec.add_argument("--auth-url", metavar="URL", help="key URI written into the HLS playlist")
    rec.add_argument("--demo", action="store_true", help="record the built-in demo page")
    _control_args(rec, default_port=None)
    rec.add_argument("--work-dir", help="keep segments and logs here (default: a temp dir, removed)")
    rec.add_argument("--result", metavar="FILE", help="also write the result record (JSON) here")
    rec.add_argument("-q", "--quiet", action="store_true", help="no progress line")
    rec.set_defaults(func=record_command)

    task = subparsers.add_parser(
        "recorder", help="run one recording task with a control endpoint (used by the operator)",
        description="Run the RecordingTask in --task, serve the control endpoint, write status.json; "
                    "or (--standby) start everything but the task and wait for POST /claim.")
    which = task.add_mutually_exclusive_group(required=True)
    which.add_argument("--task", help="RecordingTask JSON file")
    which.add_argument("--standby", action="store_true",
                       help="warm slot: start display, sound, Chromium on a blank page, then wait "
                            "for one task through POST /claim (docs/contracts.md section 1)")
    task.add_argument("--work-dir", required=True,
                      help="segments, outputs and status go here (standby: its own files, and "
                           "the claimed task's unless the claim names a workDir)")
    _control_args(task, default_port=0)
    task.add_argument("--status-file", help="default: WORK_DIR/status.json")
    task.add_argument("--width", type=int, default=DEFAULT_WIDTH,
                      help=f"standby: page width to prepare (default {DEFAULT_WIDTH}; a claim "
                           "of another size restarts display and Chromium)")
    task.add_argument("--height", type=int, default=DEFAULT_HEIGHT,
                      help=f"standby: page height to prepare (default {DEFAULT_HEIGHT})")
    task.add_argument("--lifeline-stdin", action="store_true",
                      help="standby: exit while idle once stdin reaches end of file (the spawner "
                           "is gone)")
    task.set_defaults(func=recorder_command)


def _control_args(parser: argparse.ArgumentParser, default_port: int | None) -> None:
    parser.add_argument("--control-host", default="127.0.0.1")
    parser.add_argument("--control-port", type=int, default=default_port,
                        help="control endpoint port (0 = any free port)")
    parser.add_argument("--token-file", help="Bearer token for the control endpoint")
    parser.add_argument("--port-file", help="write the chosen control port here")


# ---- shared helpers -----------------------------------------------------------------------

class _Usage(Exception):
    """A command line that cannot run: the message names the option and the rule (exit 2)."""


def _usage_errors(command: str, run: Callable[[argparse.Namespace], int]
                  ) -> Callable[[argparse.Namespace], int]:
    def checked(args: argparse.Namespace) -> int:
        try:
            return run(args)
        except _Usage as exc:
            print(f"webrecord {command}: {exc}", file=sys.stderr)
            return 2
    return checked


def _read_token(path: str | None) -> str | None:
    if not path:
        return None
    try:
        return Path(path).read_text().strip() or None
    except OSError as exc:
        raise _Usage(f"--token-file: {exc.strerror}") from None


# ---- webrecord record ---------------------------------------------------------------------

def _record_command(args: argparse.Namespace) -> int:
    if "WEBRECORD_LOG_LEVEL" not in os.environ:
        logging.getLogger().setLevel(logging.WARNING)  # the progress line is the interface here
    # `record` runs on the user's own machine (the demo page is served on 127.0.0.1).
    os.environ.setdefault("WEBRECORD_EGRESS_ALLOW_LOOPBACK", "true")
    if not args.url and not args.demo:
        raise _Usage("URL: is required (or use --demo)")
    if args.url and args.demo:
        raise _Usage("URL: give either a URL or --demo, not both")
    output = Path(args.output)
    muxer = args.muxer or ("hls" if output.suffix == ".m3u8" else "mp4")
    raw: dict[str, Any] = {"recordUrl": args.url or "http://127.0.0.1/", "manualStart": args.manual_start,
                           "output": {"video": {"muxer": muxer}}}
    for key, value in (("width", args.width), ("height", args.height),
                       ("maxDurationLimit", args.duration)):
        if value is not None:
            raw[key] = value
    if args.encrypt_key is not None:
        raw["output"]["video"]["encryptKey"] = args.encrypt_key
    if args.auth_url is not None:
        raw["output"]["video"]["authUrl"] = args.auth_url
    try:
        spec = RecordingSpec.model_validate(raw)
    except ValidationError as exc:
        raise _Usage(validation_message(exc, _FLAG_NAMES)) from None
    if args.manual_start_timeout is not None and args.manual_start_timeout <= 0:
        raise _Usage("--manual-start-timeout: must be > 0")
    if not output.parent.exists():
        raise _Usage(f"--output: directory {output.parent} does not exist")
    token = _read_token(args.token_file)
    from webrecord.recorder.foreground import record_foreground  # the recorder's parts: on use

    return run_supervised(lambda: asyncio.run(record_foreground(args, spec, output, token)))


# ---- webrecord recorder -------------------------------------------------------------------

def _recorder_command(args: argparse.Namespace) -> int:
    if args.standby:
        return _standby_command(args)
    try:
        task = RecordingTask.model_validate_json(Path(args.task).read_text())
    except OSError as exc:
        raise _Usage(f"--task: {exc.strerror}: {args.task}") from None
    except ValidationError as exc:
        raise _Usage(f"task: {validation_message(exc)}") from None
    token = _read_token(args.token_file)
    from webrecord.recorder.runtask import run_task  # the recorder's parts: on use

    port_file = Path(args.port_file) if args.port_file else None
    status_file = Path(args.status_file) if args.status_file else None
    return run_supervised(lambda: asyncio.run(run_task(
        task, Path(args.work_dir), status_file, token, args.control_host, args.control_port,
        port_file)))


def _standby_command(args: argparse.Namespace) -> int:
    for flag, value in (("--width", args.width), ("--height", args.height)):
        if not 1 <= value <= MAX_DIMENSION:
            raise _Usage(f"{flag}: must be between 1 and {MAX_DIMENSION}")
    token = _read_token(args.token_file)
    from webrecord.recorder.standby import Standby  # the recorder's parts: on use

    standby = Standby(Path(args.work_dir), args.width, args.height, token, args.control_host,
                      args.control_port, Path(args.port_file) if args.port_file else None,
                      args.lifeline_stdin, Path(args.status_file) if args.status_file else None)
    return run_supervised(lambda: asyncio.run(standby.run()))


record_command = _usage_errors("record", _record_command)
recorder_command = _usage_errors("recorder", _recorder_command)
