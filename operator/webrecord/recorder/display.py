"""The virtual display: one X server per recording, exactly WxH at depth 24, a free display
number. Xorg's dummy driver at the capture's refresh rate where it is installed and the size
fits it (xorgconf: Chromium then draws only the frames the capture takes, and framegrab locks
onto them); Xvfb otherwise, or when Xorg does not start."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from webrecord.api.models import ErrorCode
from webrecord.logs import event
from webrecord.recorder import procs, xorgconf
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
    def __init__(self, width: int, height: int, settings: RecorderSettings, log_dir: Path,
                 refresh: int | None = None) -> None:
        self.width = width
        self.height = height
        self.refresh = refresh  # the capture's frame rate; None: no fixed rate wanted
        self.settings = settings
        self.log_dir = log_dir
        self.proc: asyncio.subprocess.Process | None = None
        self.name = ""  # e.g. ":99"
        self.server = ""  # "xorg" or "xvfb", once started

    @property
    def frame_locked(self) -> bool:
        """Whether the display refreshes at the capture's rate (framegrab can lock onto it)."""
        return self.server == "xorg"

    def _xorg_wanted(self) -> bool:
        # Above large_frame_pixels (1080p) each raw frame through the grabber's pipe is 8-26 MB:
        # those sizes keep Xvfb and x11grab, which reads the server's shared memory in place.
        return (self.settings.display_server == "xorg" and self.refresh is not None
                and self.width * self.height <= self.settings.large_frame_pixels
                and xorgconf.fits(self.width, self.height, self.refresh)
                and shutil.which(self.settings.xorg_path) is not None)

    async def start(self) -> str:
        number = None
        if self._xorg_wanted():
            assert self.refresh is not None
            config = self.log_dir / f"xorg-{self.width}x{self.height}_{self.refresh}.conf"
            config.write_text(xorgconf.config_text(self.width, self.height, self.refresh))
            number = await self._launch(lambda fd: xorgconf.xorg_argv(
                self.settings.xorg_path, config, self.log_dir / "xorg.log", fd), "xorg-stderr.log")
            if number is None:
                event(log, "Xorg did not start; using Xvfb (see xorg.log)", logging.WARNING,
                      width=self.width, height=self.height, refresh=self.refresh)
            else:
                self.server = "xorg"
        if number is None:
            number = await self._launch(lambda fd: [
                self.settings.xvfb_path, "-displayfd", str(fd),
                "-screen", "0", f"{self.width}x{self.height}x24",
                "-nolisten", "tcp", "-noreset", "-dpi", "96"], "xvfb.log")
            if number is None:
                raise RecorderError(ErrorCode.INTERNAL,
                                    "virtual display (Xvfb) failed to start; see xvfb.log")
            self.server = "xvfb"
        self.name = f":{number}"
        event(log, "display started", display=self.name, width=self.width, height=self.height,
              server=self.server, refresh=self.refresh if self.frame_locked else None)
        return self.name

    async def _launch(self, argv_for: Callable[[int], list[str]], log_name: str) -> str | None:
        """Start an X server given -displayfd FD; its display number once it is ready, or None
        (it is stopped again). -displayfd: the server picks a free number and writes it once it
        accepts clients, so there is no race on lock files and no polling."""
        read_fd, write_fd = os.pipe()
        log_file = open(self.log_dir / log_name, "ab")
        try:
            self.proc = await procs.spawn(
                argv_for(write_fd), stdin=asyncio.subprocess.DEVNULL, stdout=log_file,
                stderr=log_file, pass_fds=(write_fd,))
        except OSError:
            os.close(read_fd)
            return None
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
            return None
        return number

    async def stop(self) -> None:
        await procs.terminate(self.proc, timeout=3.0)
        self.proc = None
