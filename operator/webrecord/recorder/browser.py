"""Chromium through Playwright: exactly the screen, sound on, page hooks, crash events.

The page is shown fullscreen (kiosk) at exactly the display size with no viewport emulation, so
what x11grab sees is the page and nothing else: no scrollbars, no infobars, no borders.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from playwright.async_api import BrowserContext, Page, Playwright, async_playwright
from playwright.async_api import Error as PlaywrightError

from webrecord.api.models import ErrorCode
from webrecord.logs import event
from webrecord.recorder.errors import RecorderError
from webrecord.recorder.settings import RecorderSettings

log = logging.getLogger(__name__)

# window.<name>() -> the hook name handed to on_hook.
HOOKS = ("startRecord", "pauseRecord", "resumeRecord", "refreshPage", "stopRecord")
# A console line that is exactly one of these acts as the hook (another recorder's convention).
CONSOLE_SIGNALS = {"START_RECORDING": "startRecord", "END_RECORDING": "stopRecord"}

# Chromium features turned off. Chromium reads only the last --disable-features, and ours comes
# after Playwright's, so Playwright's own list is repeated here (its chromiumSwitches.ts).
DISABLED_FEATURES = [
    "Translate", "MediaRouter", "DialMediaRouteProvider", "GlobalMediaControls",
    # The WebUI omnibox popups, preloaded at every start in a hidden renderer of their own:
    # 0.8-0.9 CPU s per start for a popup the kiosk window never shows. Three 720p30 recordings
    # starting together on 2 cores kept 92-99% of their frames with it, 98.4-99.3% without.
    "WebUIOmniboxPopup", "WebUIOmniboxAimPopup",
    # Model and hint downloads (optimizationguide-pa.googleapis.com, refused by the egress proxy).
    "OptimizationHints", "OptimizationGuideModelDownloading", "OptimizationHintsFetching",
    # Playwright's (chromiumSwitches.ts, 1.65): HTTP stays HTTP, no start-up requests to
    # Google, no paint holding; the Windows and Edge ones ride along so the test that compares
    # the two lists on a real launch stays exact.
    "AvoidUnnecessaryBeforeUnloadCheckSync", "DestroyProfileOnBrowserClose", "HttpsUpgrades",
    "HttpsFirstBalancedModeAutoEnable", "LensOverlay", "PaintHolding",
    "ThirdPartyStoragePartitioning", "AvoidCorsURLLoaderRestartOnRedirect",
    "NetworkTimeServiceQuerying", "AimEnabled", "PreconnectToSearch", "TcpPortRandomizationWin",
    "msForceBrowserSignIn", "msEdgeUpdateLaunchServicesPreferredVersion",
]
# Playwright's enabled list, repeated for the same reason: an --enable-features in
# WEBRECORD_CHROMIUM_ARGS is merged into this one instead of replacing Playwright's.
ENABLED_FEATURES = ["CDPScreenshotNewSurface", "SkipListAccountsWithoutGaiaCookies"]

# The network is closed and the window must show only the page: no first-run UI, no update or
# sync traffic, no infobars, no crash bubbles, autoplay with sound allowed.
BASE_ARGS = [
    "--kiosk",
    "--window-position=0,0",
    "--autoplay-policy=no-user-gesture-required",
    "--hide-scrollbars",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-quic",
    "--disable-infobars",
    "--noerrdialogs",
    "--disable-session-crashed-bubble",
    "--disable-features=" + ",".join(DISABLED_FEATURES),
    "--enable-features=" + ",".join(ENABLED_FEATURES),
    "--disable-dev-shm-usage",
    "--password-store=basic",
    "--test-type",  # hides the "unsupported command-line flag" infobar of --no-sandbox
    "--ozone-platform=x11",
    # Chromium's PulseAudio output buffer in frames (default ~512-1024 at 48 kHz: 10-20 ms,
    # plus as much again queued in the sink): the sound reached the file 30-45 ms behind the
    # picture. 128 frames (2.7 ms) measured: mean offset -8.6/-3.7/+9.8 ms over three runs
    # (max 14 ms) against +31/+32/+44 ms before, with no measurable CPU cost (bench/recorder av).
    "--audio-buffer-size=128",
]


def merge_feature_flags(args: list[str]) -> list[str]:
    """args with every --enable-features and every --disable-features joined into one flag each,
    where the first stood: Chromium reads only the last of each, so a feature list in
    WEBRECORD_CHROMIUM_ARGS would otherwise undo DISABLED_FEATURES."""
    out = list(args)
    where: dict[str, int] = {}  # flag name -> its index in out
    values: dict[str, list[str]] = {}
    for i, arg in enumerate(args):
        name, eq, value = arg.partition("=")
        if not eq or name not in ("--enable-features", "--disable-features"):
            continue
        where.setdefault(name, i)
        values.setdefault(name, [])
        values[name] += [v for v in value.split(",") if v and v not in values[name]]
    for name, i in where.items():
        out[i] = f"{name}={','.join(values[name])}"
    dropped = {i for i, arg in enumerate(args)
               if arg.partition("=")[0] in where and i not in where.values()}
    return [arg for i, arg in enumerate(out) if i not in dropped]


def proxy_args(proxy: str) -> list[str]:
    """Every connection through the egress proxy, with no way around it."""
    return [
        f"--proxy-server={proxy}",
        # Chromium sends loopback hosts around any proxy unless told not to.
        "--proxy-bypass-list=<-loopback>",
        # WebRTC may otherwise send UDP (STUN/TURN, media) straight from the host.
        "--force-webrtc-ip-handling-policy=disable_non_proxied_udp",
        "--webrtc-ip-handling-policy=disable_non_proxied_udp",
    ]


# Chromium aborts every request in flight when the host's network interfaces change (a
# container bridge or veth appearing on a shared node): not the page's fault, load it again.
_TRANSIENT_NET_ERROR = "net::ERR_NETWORK_CHANGED"
_NAVIGATION_ATTEMPTS = 3


class Browser:
    """One Playwright driver for the session; Chromium may be (re)launched several times."""

    def __init__(self, settings: RecorderSettings, width: int, height: int, env: dict[str, str],
                 profile_dir: Path, on_hook: Callable[[str], Any],
                 on_crash: Callable[[str], None], proxy: str | None = None) -> None:
        self.settings, self.env, self.profile_dir = settings, env, profile_dir
        self.width, self.height = width, height
        self.on_hook, self.on_crash = on_hook, on_crash
        self.proxy = proxy  # socks5://127.0.0.1:PORT of the egress proxy, or None
        self._pw: Playwright | None = None
        self.context: BrowserContext | None = None
        self.page: Page | None = None
        self._closing = False
        self.launches = 0
        # The task's page control (recorder/pageprep.py), applied to every context opened
        # from now on (a relaunch after a crash included); None for a standby slot.
        self.page_setup: Callable[[BrowserContext, Page], Awaitable[None]] | None = None
        self.console_signals = True

    def _sandbox(self) -> bool:
        no_sandbox = self.settings.chromium_no_sandbox
        if no_sandbox is None:
            no_sandbox = os.geteuid() == 0  # Chromium refuses to run as root with its sandbox
        return not no_sandbox

    def _args(self) -> list[str]:
        args = merge_feature_flags([*BASE_ARGS, f"--window-size={self.width},{self.height}",
                                    *self.settings.chromium_args])
        if not self._sandbox():
            args.append("--no-sandbox")
        if self.proxy:
            args += proxy_args(self.proxy)
        return args

    async def launch(self, url: str) -> None:
        """Start Chromium and load url; RecorderError(PageLoadFailed) when the page fails."""
        await self.open()
        await self.goto(url)

    async def open(self) -> None:
        """Start Chromium on a blank page with a fresh profile (what a standby slot keeps
        ready: nothing in it depends on the task)."""
        if self._pw is None:
            self._pw = await async_playwright().start()
        self._closing = False
        # A fresh profile per launch: a crashed profile would show a "restore pages?" prompt.
        shutil.rmtree(self.profile_dir, ignore_errors=True)
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.context = await self._pw.chromium.launch_persistent_context(
                str(self.profile_dir),
                executable_path=self.settings.chromium_path,
                headless=False,
                args=self._args(),
                # --enable-automation shows an infobar that would be recorded.
                ignore_default_args=["--enable-automation"],
                env=self.env,
                no_viewport=True,
                chromium_sandbox=self._sandbox(),  # Playwright's default would turn it off
                handle_sigint=False,
                handle_sigterm=False,
                handle_sighup=False,
                timeout=self.settings.browser_start_timeout * 1000,
            )
        except PlaywrightError as exc:
            raise RecorderError(ErrorCode.INTERNAL, f"Chromium failed to start: {_first_line(exc)}") from exc
        self.launches += 1
        context = self.context
        context.on("close", lambda _ctx: self._closed("browser"))
        for name in HOOKS:
            await context.expose_binding(name, self._binding(name))
        self.page = context.pages[0] if context.pages else await context.new_page()
        self.page.on("crash", lambda _page: self._closed("renderer"))
        self.page.on("console", self._console)
        if self.page_setup is not None:
            await self.page_setup(context, self.page)
        event(log, "chromium started", launches=self.launches)

    def _console(self, message: Any) -> None:
        hook = CONSOLE_SIGNALS.get(message.text.strip()) if self.console_signals else None
        if hook is not None:
            event(log, "console signal", line=message.text.strip())
            self.on_hook(hook)

    def _binding(self, name: str) -> Callable[..., Any]:
        def call(_source: Any, *_args: Any) -> bool:
            # Fire and forget: a hook that reloads or stops must not wait on its own page.
            return bool(self.on_hook(name))
        return call

    def _closed(self, what: str) -> None:
        if not self._closing:
            event(log, "chromium went away", logging.WARNING, what=what)
            self.on_crash(what)

    async def goto(self, url: str) -> None:
        assert self.page is not None
        for attempt in range(1, _NAVIGATION_ATTEMPTS + 1):
            try:
                response = await self.page.goto(url, wait_until="load",
                                                timeout=self.settings.page_load_timeout * 1000)
                break
            except PlaywrightError as exc:
                if attempt < _NAVIGATION_ATTEMPTS and _TRANSIENT_NET_ERROR in str(exc):
                    event(log, "page load retried", logging.WARNING, attempt=attempt,
                          error=_first_line(exc))
                    continue
                raise RecorderError(ErrorCode.PAGE_LOAD_FAILED,
                                    f"page failed to load: {url}: {_first_line(exc)}") from exc
        if response is not None and response.status >= 400:
            raise RecorderError(ErrorCode.PAGE_LOAD_FAILED,
                                f"page failed to load: {url}: HTTP {response.status}")

    async def reload(self) -> None:
        if self.page is None:
            return
        try:
            await self.page.reload(wait_until="load", timeout=self.settings.page_load_timeout * 1000)
        except PlaywrightError as exc:
            # The recording goes on; what the page shows now is what gets recorded.
            event(log, "reload failed", logging.WARNING, error=_first_line(exc))

    async def close_browser(self) -> None:
        """Close Chromium (kept driver); safe after a crash."""
        self._closing = True
        context, self.context, self.page = self.context, None, None
        if context is not None:
            try:
                await asyncio.wait_for(context.close(), 10)
            except Exception as exc:  # noqa: BLE001 - a dead browser may fail to close; go on
                event(log, "chromium close failed", logging.WARNING, error=_first_line(exc))

    async def close(self) -> None:
        await self.close_browser()
        pw, self._pw = self._pw, None
        if pw is not None:
            try:
                await asyncio.wait_for(pw.stop(), 10)
            except Exception as exc:  # noqa: BLE001
                event(log, "playwright stop failed", logging.WARNING, error=_first_line(exc))
        shutil.rmtree(self.profile_dir, ignore_errors=True)


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "message", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
