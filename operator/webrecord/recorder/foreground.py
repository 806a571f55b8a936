"""`webrecord record`: one page to one file in the foreground, a progress line on stderr, the
result record on stdout."""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from webrecord.api.models import Action, RecordingSpec, RecordingTask, Result, VideoFile
from webrecord.files import try_write_atomic
from webrecord.recorder.settings import RecorderSettings
from webrecord.recorder.supervise import install_stop_signals

DEMO_DIR = Path(__file__).parent / "demo"


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


async def record_foreground(args: argparse.Namespace, spec: RecordingSpec, output: Path,
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
    # Its own id per run: segment cuts are spread by task id (capture.cut_phase).
    task = RecordingTask(task_id=f"record-{secrets.token_hex(4)}", spec=spec)
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

    install_stop_signals(on_signal)
    try:
        if args.control_port is not None:
            server = ControlServer(session, token, args.control_host, args.control_port)
            port = await server.start()
            if args.port_file:
                try_write_atomic(Path(args.port_file), str(port))
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
            try_write_atomic(Path(args.result), text + "\n")
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


def _human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"
