"""The virtual display: one Xvfb per recording, exactly WxH at depth 24, a free display number."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from webrecord.api.models import ErrorCode
from webrecord.logs import event
from webrecord.recorder import procs
from webrecord.recorder.errors import RecorderError
from webrecord.recorder.settings import RecorderSettings

log = logging.getLogger(__name__)


def _read_line(fd: int) -> bytes:
    # Xvfb writes the number and the newline in separate writes; closing the pipe after the
    # first one makes the second fail and Xvfb exits ("Cannot write display number").
    data = b""
    while not data.endswith(b"\n"):
        chunk = os.read(fd, 64)
        if not chunk:
            break
        data += chunk
    return data


class Display:
    def __init__(self, width: int, height: int, settings: RecorderSettings, log_dir: Path) -> None:
        self.width = width
        self.height = height
        self.settings = settings
        self.log_dir = log_dir
        self.proc: asyncio.subprocess.Process | None = None
        self.name = ""  # e.g. ":99"

    async def start(self) -> str:
        # -displayfd: Xvfb picks a free display number and writes it to the fd once it is ready,
        # so there is no race on lock files and no polling.
        read_fd, write_fd = os.pipe()
        log_file = open(self.log_dir / "xvfb.log", "ab")
        try:
            self.proc = await procs.spawn(
                [self.settings.xvfb_path, "-displayfd", str(write_fd),
                 "-screen", "0", f"{self.width}x{self.height}x24",
                 "-nolisten", "tcp", "-noreset", "-dpi", "96"],
                stdin=asyncio.subprocess.DEVNULL, stdout=log_file, stderr=log_file,
                pass_fds=(write_fd,),
            )
        finally:
            os.close(write_fd)
            log_file.close()
        loop = asyncio.get_running_loop()
        try:
            data = await asyncio.wait_for(
                loop.run_in_executor(None, _read_line, read_fd), self.settings.display_start_timeout
            )
        except (asyncio.TimeoutError, TimeoutError):
            data = b""
        finally:
            os.close(read_fd)
        number = data.decode(errors="replace").strip()
        if not number.isdigit():
            await self.stop()
            raise RecorderError(ErrorCode.INTERNAL, "virtual display (Xvfb) failed to start; see xvfb.log")
        self.name = f":{number}"
        event(log, "display started", display=self.name, width=self.width, height=self.height)
        return self.name

    async def stop(self) -> None:
        await procs.terminate(self.proc, timeout=3.0)
        self.proc = None
