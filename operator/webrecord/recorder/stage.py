"""The stage a recording plays on: the virtual display, the sound server, the egress proxy and
Chromium on a blank page. Nothing in it depends on the task but the page size, so a standby
slot (recorder/standby.py) starts it before any task exists and a Session adopts it; a cold
recorder starts it the same way inside its Session."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from webrecord.egress.childenv import minimal_env
from webrecord.egress.policy import EgressPolicy, EgressSettings
from webrecord.egress.proxy import EgressProxy
from webrecord.logs import event
from webrecord.recorder.audio import PulseAudio
from webrecord.recorder.browser import Browser
from webrecord.recorder.display import Display
from webrecord.recorder.priority import StartupPriority
from webrecord.recorder.settings import RecorderSettings

log = logging.getLogger(__name__)


def _ignore(*_args: Any) -> None:
    return None


class Stage:
    def __init__(self, settings: RecorderSettings, egress_settings: EgressSettings,
                 width: int, height: int, log_dir: Path, profile_dir: Path,
                 refresh: int | None = None) -> None:
        self.settings = settings
        self.egress_settings = egress_settings
        self.width, self.height = width, height
        self.refresh = refresh  # the capture's frame rate, for a display that can match it
        self.log_dir = log_dir
        self.profile_dir = profile_dir
        self.display: Display | None = None
        self.audio: PulseAudio | None = None
        self.egress: EgressProxy | None = None  # every Chromium connection goes through it
        self.browser: Browser | None = None
        # Low CPU weight until the capture starts (Session restores it).
        self.priority = StartupPriority(settings.startup_nice)

    def env(self) -> dict[str, str]:
        """Chromium's and ffmpeg's environment: the display and the sound server, nothing of
        the recorder's own (no storage keys, no callback secret)."""
        assert self.display is not None and self.audio is not None
        return minimal_env({"DISPLAY": self.display.name, **self.audio.client_env()})

    async def start(self, on_hook: Callable[[str], Any] = _ignore,
                    on_crash: Callable[[str], None] = _ignore) -> None:
        """Start every part; on failure what was started is stopped again (RecorderError)."""
        self.priority.lower(os.getpid())  # with Playwright's driver, in our session
        try:
            self.display = Display(self.width, self.height, self.settings, self.log_dir,
                                   self.refresh)
            self.audio = PulseAudio(self.settings, self.log_dir)
            await asyncio.gather(self.display.start(), self.audio.start())
            self.priority.lower_new()
            if self.egress_settings.enabled:
                self.egress = EgressProxy(EgressPolicy(self.egress_settings))
                await self.egress.start()
            self.browser = Browser(
                self.settings, self.width, self.height, self.env(), self.profile_dir,
                on_hook=on_hook, on_crash=on_crash,
                proxy=self.egress.url if self.egress is not None else None)
            # The sound server's first record stream is slow to open: paid while Chromium starts.
            async with self.priority.watching():
                await asyncio.gather(self.browser.open(), self.audio.warm_up())
        except BaseException:
            await self.close()
            raise

    def _refresh_matters(self, refresh: int | None) -> bool:
        """Whether this display runs at a rate (Xorg) other than `refresh`."""
        return self.display is not None and self.display.frame_locked and refresh != self.refresh

    async def resize(self, width: int, height: int, refresh: int | None = None) -> None:
        """Another page size or frame rate: a new display of exactly that size and rate and
        Chromium relaunched on it (the sound server, the proxy and Playwright's driver stay)."""
        if (width, height) == (self.width, self.height) and not self._refresh_matters(refresh):
            return
        assert self.browser is not None and self.display is not None
        event(log, "stage resized", width=width, height=height, refresh=refresh,
              was=f"{self.width}x{self.height}@{self.refresh}")
        await self.browser.close_browser()
        await self.display.stop()
        self.width, self.height, self.refresh = width, height, refresh
        self.display = Display(width, height, self.settings, self.log_dir, refresh)
        await self.display.start()
        self.browser.width, self.browser.height, self.browser.env = width, height, self.env()
        await self.browser.open()

    async def close(self) -> None:
        """Stop every part; safe to call twice and on a half-started stage."""
        browser, self.browser = self.browser, None
        if browser is not None:
            await browser.close()
        egress, self.egress = self.egress, None
        if egress is not None:
            await egress.close()
        audio, self.audio = self.audio, None
        display, self.display = self.display, None
        await asyncio.gather(*(p.stop() for p in (audio, display) if p is not None),
                             return_exceptions=True)
