"""`webrecord record` (foreground, one page to one file) and `webrecord recorder` (one task,
driven through the control endpoint; docs/contracts.md section 1)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from webrecord.api.models import (
    DEFAULT_MAX_DURATION_S,
    Action,
    ErrorCode,
    Phase,
    RecorderStatus,
    RecordingSpec,
    RecordingTask,
    Result,
    VideoFile,
)
from webrecord import files
from webrecord.logs import event
from webrecord.recorder import procs
from webrecord.recorder.settings import RecorderSettings

log = logging.getLogger(__name__)

DEMO_DIR = Path(__file__).parent / "demo"
# `webrecord recorder` handed its task over (SIGTERM, segments stored): not finished, not a crash.
EXIT_SUSPENDED = 75

# Model field (wire name) -> the flag a user of `record` typed.
_FLAG_NAMES = {
    "recordUrl": "URL",
    "width": "--width",
    "height": "--height",
    "maxDurationLimit": "--duration",
    "manualStart": "--manual-start",
    "output.video.muxer": "--muxer",
    "output.video.encryptKey": "--encrypt-key",
    "output.video.authUrl": "--auth-url",
    "output.video": "--encrypt-key",
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
        description="Run the RecordingTask in --task, serve the control endpoint, write status.json.")
    task.add_argument("--task", required=True, help="RecordingTask JSON file")
    task.add_argument("--work-dir", required=True, help="segments, outputs and status go here")
    _control_args(task, default_port=0)
    task.add_argument("--status-file", help="default: WORK_DIR/status.json")
    task.set_defaults(func=recorder_command)


def _control_args(parser: argparse.ArgumentParser, default_port: int | None) -> None:
    parser.add_argument("--control-host", default="127.0.0.1")
    parser.add_argument("--control-port", type=int, default=default_port,
                        help="control endpoint port (0 = any free port)")
    parser.add_argument("--token-file", help="Bearer token for the control endpoint")
    parser.add_argument("--port-file", help="write the chosen control port here")


# ---- shared helpers -----------------------------------------------------------------------

def validation_message(exc: ValidationError, names: dict[str, str] | None = None) -> str:
    """One line naming each bad field and its rule, e.g. '--width: must be <= 2560'."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        name = (names or {}).get(loc, loc or "input")
        ctx = err.get("ctx") or {}
        kind = err["type"]
        if kind == "less_than_equal":
            rule = f"must be <= {ctx.get('le')}"
        elif kind == "greater_than_equal":
            rule = f"must be >= {ctx.get('ge')}"
        elif kind == "string_pattern_mismatch" and "http" in str(ctx.get("pattern", "")):
            rule = "must be an http:// or https:// URL"
        elif kind == "missing":
            rule = "is required"
        else:
            rule = str(err["msg"]).removeprefix("Value error, ")
        parts.append(f"{name}: {rule}")
    return "; ".join(parts)


def _read_token(path: str | None) -> str | None:
    if not path:
        return None
    return Path(path).read_text().strip() or None


def write_atomic(path: Path, text: str) -> None:
    """Status, port and result files: a failed write is logged, the recording goes on."""
    try:
        files.write_atomic(path, text)
    except OSError as exc:
        event(log, "could not write file", logging.WARNING, path=str(path), error=str(exc))


def _supervise(run: Callable[[], int]) -> int:
    """Run the recorder in a child in its own session and forward signals to it.

    Why: Ctrl-C in a terminal signals the whole foreground process group, which includes
    Playwright's driver; it would die before we could stop cleanly. In its own session the child
    only sees the signals we forward, and turns them into a clean stop.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child
        code = 1
        try:
            os.setsid()
            procs.die_with_parent(signal.SIGTERM)  # supervisor killed hard: still stop cleanly
            code = run()
        except KeyboardInterrupt:
            code = 130
        except BaseException:  # noqa: BLE001 - report and exit; never return into the parent's code
            log.exception("recorder crashed")
            code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    def forward(signum: int, _frame: Any) -> None:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, forward)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code


def _install_stop_signals(on_signal: Callable[[int], None]) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, on_signal, sig)


def _human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


# ---- webrecord record ---------------------------------------------------------------------

def record_command(args: argparse.Namespace) -> int:
    if "WEBRECORD_LOG_LEVEL" not in os.environ:
        logging.getLogger().setLevel(logging.WARNING)  # the progress line is the interface here
    # `record` runs on the user's own machine (the demo page is served on 127.0.0.1).
    os.environ.setdefault("WEBRECORD_EGRESS_ALLOW_LOOPBACK", "true")
    if not args.url and not args.demo:
        print("webrecord record: URL: is required (or use --demo)", file=sys.stderr)
        return 2
    if args.url and args.demo:
        print("webrecord record: URL: give either a URL or --demo, not both", file=sys.stderr)
        return 2
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
        print(f"webrecord record: {validation_message(exc, _FLAG_NAMES)}", file=sys.stderr)
        return 2
    if args.manual_start_timeout is not None and args.manual_start_timeout <= 0:
        print("webrecord record: --manual-start-timeout: must be > 0", file=sys.stderr)
        return 2
    if not output.parent.exists():
        print(f"webrecord record: --output: directory {output.parent} does not exist", file=sys.stderr)
        return 2
    try:
        token = _read_token(args.token_file)
    except OSError as exc:
        print(f"webrecord record: --token-file: {exc.strerror}", file=sys.stderr)
        return 2
    return _supervise(lambda: asyncio.run(_record(args, spec, output, token)))


async def _serve_demo() -> tuple[Any, str]:
    from aiohttp import web
    app = web.Application()
    app.router.add_get("/", lambda _r: web.FileResponse(DEMO_DIR / "index.html"))
    app.router.add_static("/", DEMO_DIR)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # noqa: SLF001
    return runner, f"http://127.0.0.1:{port}/"


async def _record(args: argparse.Namespace, spec: RecordingSpec, output: Path,
                  token: str | None) -> int:
    from webrecord.recorder.control import ControlServer
    from webrecord.recorder.session import Session

    settings = RecorderSettings()
    output = output.resolve()
    keep_work = bool(args.work_dir)
    work_dir = Path(args.work_dir).resolve() if keep_work else Path(
        tempfile.mkdtemp(prefix=f".{output.stem}.webrecord-", dir=output.parent))
    work_dir.mkdir(parents=True, exist_ok=True)
    demo = None
    if args.demo:
        demo, url = await _serve_demo()
        spec = spec.model_copy(update={"record_url": url})
    task = RecordingTask(task_id="record", spec=spec)
    session = Session(task, work_dir, settings, output=output,
                      manual_start_timeout=args.manual_start_timeout)
    server = None
    progress = None
    signals = 0

    def on_signal(_sig: int) -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            print("\nstopping...", file=sys.stderr, flush=True)
            session.request(Action.STOP)

    _install_stop_signals(on_signal)
    try:
        if args.control_port is not None:
            server = ControlServer(session, token, args.control_host, args.control_port)
            port = await server.start()
            if args.port_file:
                write_atomic(Path(args.port_file), str(port))
        if not args.quiet:
            progress = asyncio.create_task(_progress(session, settings.progress_interval))
        status = await session.run()
        if progress is not None:
            progress.cancel()
        packaged = session.packaged
        videos = []
        if packaged is not None:
            videos.append(VideoFile(filename=packaged.path.name, file_size=packaged.size,
                                    file_duration=round(packaged.duration, 3)))
        result = Result(error_code=status.result.error_code,
                        error_message=status.result.error_message, videos=videos)
        session.finish(result)
        record = {
            **result.wire(),
            "status": session.status.status.value,
            "path": str(packaged.path) if packaged else None,
            "files": [str(f) for f in packaged.files] if packaged else [],
            "recordedSeconds": session.status.recorded_seconds,
            "segments": session.status.segments,
        }
        text = json.dumps(record)
        if not args.quiet and sys.stderr.isatty():
            print(file=sys.stderr)  # end the progress line
        print(text, flush=True)
        if args.result:
            write_atomic(Path(args.result), text + "\n")
        if result.error_code is not None:
            print(f"webrecord record: {result.error_code.value}: {result.error_message}",
                  file=sys.stderr, flush=True)
            return 1
        return 0
    finally:
        if progress is not None:
            progress.cancel()
        if server is not None:
            await server.stop()
        if demo is not None:
            await demo.cleanup()
        if not keep_work:
            shutil.rmtree(work_dir, ignore_errors=True)


async def _progress(session: Any, interval: float) -> None:
    """About once a second: state, recorded time, bytes so far."""
    tty = sys.stderr.isatty()
    started = time.monotonic()
    while True:
        await asyncio.sleep(interval)
        st = session.status
        rec = session.recorded_seconds()
        line = (f"{st.status.value:<10} recorded {int(rec) // 60:02d}:{rec % 60:04.1f}  "
                f"{_human_bytes(session.bytes_recorded()):>9}  segments {len(session.captures)}  "
                f"wall {time.monotonic() - started:5.1f}s")
        print(("\r" + line) if tty else line, end="" if tty else "\n", file=sys.stderr, flush=True)


# ---- webrecord recorder -------------------------------------------------------------------

def recorder_command(args: argparse.Namespace) -> int:
    try:
        task = RecordingTask.model_validate_json(Path(args.task).read_text())
    except OSError as exc:
        print(f"webrecord recorder: --task: {exc.strerror}: {args.task}", file=sys.stderr)
        return 2
    except ValidationError as exc:
        print(f"webrecord recorder: task: {validation_message(exc)}", file=sys.stderr)
        return 2
    try:
        token = _read_token(args.token_file)
    except OSError as exc:
        print(f"webrecord recorder: --token-file: {exc.strerror}", file=sys.stderr)
        return 2
    return _supervise(lambda: asyncio.run(_recorder(args, task, token)))


async def _recorder(args: argparse.Namespace, task: RecordingTask, token: str | None) -> int:
    from webrecord.recorder.control import ControlServer
    from webrecord.recorder.session import Session

    work_dir = Path(args.work_dir).resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    status_file = Path(args.status_file) if args.status_file else work_dir / "status.json"

    def save(status: RecorderStatus) -> None:
        write_atomic(status_file, json.dumps(status.wire()))

    previous_start = _previous_start_time(status_file, task.task_id)  # before we overwrite it
    store = _segment_store(task, work_dir)
    settings = RecorderSettings()
    session = Session(task, work_dir, settings, on_status=save,
                      on_segment=store.put if store is not None else None)
    if store is not None and not await _resume(session, store, settings, previous_start):
        await asyncio.to_thread(store.close)
        store = None
        session.on_segment = None
    save(session.status)
    server = ControlServer(session, token, args.control_host, args.control_port)
    port = await server.start()
    if args.port_file:
        write_atomic(Path(args.port_file), str(port))
    suspends = _sigterm_suspends(settings, store, work_dir)

    def on_signal(sig: int) -> None:
        if sig == signal.SIGTERM and suspends:
            session.suspend()
        else:
            session.request(Action.STOP)

    _install_stop_signals(on_signal)
    try:
        status = await session.run()
        if session.suspended:
            failures = await asyncio.to_thread(store.wait, 120) if store is not None else {}
            event(log, "task handed over", logging.WARNING, task=task.task_id,
                  segments=session.status.segments, seconds=session.status.recorded_seconds,
                  not_stored=failures or None)
            save(session.status)
            return EXIT_SUSPENDED
        if store is not None:
            # Every closed segment safely stored before the task reports a result.
            failures = await asyncio.to_thread(store.wait, 120)
            if failures:
                event(log, "segments not stored", logging.WARNING, failures=failures)
        result = _where_kept(await _deliver(task, session, status), store, suspends)
        if store is not None and suspends and _delivered(result):
            await _purge(store, task.task_id)
        session.finish(result)
        event(log, "task finished", task=task.task_id,
              error_code=result.error_code.value if result.error_code else None)
        return 0
    finally:
        await server.stop()
        if store is not None:
            await asyncio.to_thread(store.close)


def _segment_store(task: RecordingTask, work_dir: Path) -> Any:
    """The task's StorageType segment store (cos: uploaded as each segment closes)."""
    try:
        from webrecord.storage.segments import SegmentStore
        return SegmentStore.for_task(task, work_dir)
    except Exception as exc:  # noqa: BLE001 - recording matters more than the extra copy
        event(log, "no segment store", logging.WARNING, error=str(exc))
        return None


def _delivered(result: Result) -> bool:
    """The video reached its targets (a failed callback does not change that)."""
    return bool(result.videos) and result.error_code in (None, ErrorCode.CALLBACK_FAILED)


async def _purge(store: Any, task_id: str) -> None:
    """Stored segments are only needed until the video is delivered: bounded growth."""
    from webrecord.storage.s3 import StorageError

    try:
        await asyncio.to_thread(store.purge)
        event(log, "stored segments deleted after delivery", task=task_id,
              location=store.location)
    except (StorageError, OSError) as exc:
        event(log, "stored segments not deleted", logging.WARNING, task=task_id, error=str(exc))


def _where_kept(result: Result, store: Any, durable: bool) -> Result:
    """A delivery that gave up says where the recording survives: the segment store (the local
    file dies with a pod), and how to finish the delivery later."""
    from webrecord.delivery.pipeline import DELIVERY_CODES

    if (result.error_code not in DELIVERY_CODES or result.error_code == ErrorCode.CALLBACK_FAILED
            or store is None or not durable):
        return result
    note = (f"the recording's segments are kept in {store.location}; "
            f"`webrecord deliver --from-segments` delivers them later")
    return result.model_copy(update={"error_message": f"{result.error_message}; {note}"})


def _sigterm_suspends(settings: RecorderSettings, store: Any, work_dir: Path) -> bool:
    """Whether SIGTERM hands the task over: only where a new recorder finds the segments."""
    if settings.sigterm_suspends is not None:
        return settings.sigterm_suspends and store is not None
    root = getattr(store, "root", None)
    if store is None or (root is not None and Path(root).resolve().is_relative_to(work_dir)):
        return False
    return True


def _previous_start_time(status_file: Path, task_id: str) -> int | None:
    """startTime an earlier recorder of this task wrote (when its work dir survived)."""
    try:
        previous = RecorderStatus.model_validate_json(status_file.read_text())
    except (OSError, ValidationError):
        return None
    return previous.start_time if previous.task_id == task_id else None


async def _resume(session: Any, store: Any, settings: RecorderSettings,
                  start_time: int | None) -> bool:
    """Continue from the segments an earlier recorder of this task stored. False when the
    store cannot be read: then record without it rather than overwrite what it holds."""
    from webrecord.recorder.resume import fetch_stored_segments
    from webrecord.storage.s3 import StorageError

    try:
        stored = await fetch_stored_segments(store, session.seg_dir, settings)
    except (StorageError, OSError) as exc:
        event(log, "stored segments unreadable: recording without the segment store",
              logging.ERROR, task=session.task.task_id, error=str(exc))
        return False
    if stored.next_index:
        session.continue_from(stored, start_time)
    return True


async def _deliver(task: RecordingTask, session: Any, status: RecorderStatus) -> Result:
    """Hand the packaged files to the delivery stage (upload, callback)."""
    from webrecord.delivery.pipeline import LocalVideo, deliver

    videos = []
    if session.packaged is not None:
        p = session.packaged
        videos.append(LocalVideo(path=p.path, duration=p.duration, muxer=p.muxer))

    async def on_phase(phase: Phase) -> None:
        session.set_phase(phase)

    try:
        return await deliver(task, videos, status, on_phase)
    except Exception as exc:  # noqa: BLE001 - the task must still end finished with a reason
        log.exception("delivery failed")
        return Result(error_code=status.result.error_code or ErrorCode.INTERNAL,
                      error_message=status.result.error_message or f"delivery failed: {exc}")
