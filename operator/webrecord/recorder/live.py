"""The live outputs of one recording: which receivers get the stream (a list that can change
while recording), and the feed that hands each of them the recording's bytes.

The feed polls the segment files (livefeed) and offers every new chunk to every relay
(liverelay); a relay that cannot keep up drops its own chunks. Pause: the capture stops, so
nothing new is written and the relays send nothing; their connections stay open and the
receivers' players hold the last frame until Resume (documented in docs/contracts.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from webrecord.api.live import parse_live_url
from webrecord.api.models import LiveOutput, LiveOutputStatus
from webrecord.egress.policy import EgressPolicy
from webrecord.logs import event
from webrecord.recorder.livefeed import SegmentTail, Source
from webrecord.recorder.liverelay import Relay
from webrecord.recorder.settings import RecorderSettings

log = logging.getLogger(__name__)


class LiveOutputs:
    def __init__(self, settings: RecorderSettings, policy: EgressPolicy,
                 current: Callable[[], Source | None],
                 on_change: Callable[[], None] | None = None) -> None:
        self.settings = settings
        self.policy = policy
        self.current = current
        self.on_change = on_change
        self.relays: dict[str, Relay] = {}
        self._paused = False
        self._feed: asyncio.Task | None = None

    async def set(self, outputs: list[LiveOutput]) -> None:
        """Make the receivers exactly `outputs`: new URLs connect, missing ones end; the ones
        in both go on untouched."""
        wanted = {o.url: o for o in outputs}
        for url in [u for u in self.relays if u not in wanted]:
            relay = self.relays.pop(url)
            event(log, "live output removed", url=relay.target.redacted)
            await relay.close()
        for url in wanted:
            if url not in self.relays:
                relay = Relay(parse_live_url(url), self.settings, self.policy, self.on_change)
                relay.paused = self._paused
                self.relays[url] = relay
                relay.start()
                event(log, "live output added", url=relay.target.redacted)
        if self.relays and (self._feed is None or self._feed.done()):
            self._feed = asyncio.get_running_loop().create_task(self._pump())
        self._changed()

    def pause(self, paused: bool) -> None:
        self._paused = paused
        for relay in self.relays.values():
            relay.paused = paused
        self._changed()

    def status(self) -> list[LiveOutputStatus] | None:
        return [r.status() for r in self.relays.values()] or None

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    async def _pump(self) -> None:
        """Every poll interval, the new bytes of the recording to every relay (a fresh tail per
        run: joining the stream at its live end)."""
        tail = SegmentTail(self.current)
        while self.relays:
            chunk = tail.read()
            if chunk:
                for relay in list(self.relays.values()):
                    relay.offer(chunk)
            await asyncio.sleep(self.settings.live_poll_seconds)

    async def close(self) -> None:
        relays, self.relays = list(self.relays.values()), {}
        if self._feed is not None:
            self._feed.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._feed
        await asyncio.gather(*(r.close() for r in relays), return_exceptions=True)
