"""Where a RecordURL / CallbackURL / AuthUrl / live output may point, judged at Start (and a
live output at UpdateLive).

The URL is parsed the WHATWG way (as Chromium parses it; `webrecord.api.urls`), so the host
judged is the host the browser fetches; URLs it cannot judge (credentials, backslashes,
ambiguous IPv4 forms, IPv4-mapped IPv6) are refused with InvalidParam. The host is resolved
and every address judged by the one address policy (`webrecord.egress.policy`, also used at
connect time): metadata and link-local always refused, loopback unless allowed (default:
allowed for the local backend, where the recorder runs on the caller's machine; refused for
kubernetes), private ranges when `url_deny_private`. `url_allow` lists host names or CIDRs that
are allowed whatever they resolve to.

This is a check at Start time; the recorder repeats it before opening the page (so kubectl-made
tasks are judged too) and its egress proxy judges every connection.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from webrecord.api.protocol.errors import AdapterErrorCode, ApiError
from webrecord.api.urls import UrlRejected
from webrecord.egress.policy import EgressPolicy, EgressSettings
from webrecord.urlcheck import live_url_refusal, url_refusal


class UrlPolicy:
    def __init__(
        self,
        allow: Iterable[str] = (),
        allow_loopback: bool = True,
        deny_private: bool = False,
        resolve_timeout: float = 2.0,
    ) -> None:
        self.allow_hosts: set[str] = set()
        networks = []
        for item in allow:
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                self.allow_hosts.add(item.lower().rstrip("."))
        self.policy = EgressPolicy(EgressSettings(
            allow_loopback=allow_loopback, deny_private=deny_private, allow_cidrs=networks,
            resolve_timeout=resolve_timeout))

    async def check(self, field: str, url: str) -> None:
        """Raise UrlNotAllowed (or InvalidParam for a URL it cannot judge) naming `field`."""
        try:
            _, reason = await url_refusal(url, self.policy, self.allow_hosts)
        except UrlRejected as exc:
            raise ApiError(AdapterErrorCode.INVALID_PARAM, f"{field}: {exc.rule}") from None
        self._refuse(field, reason)

    async def check_live(self, field: str, url: str) -> None:
        """The same for a live output (rtmp://, rtmps://, srt://): its host judged as the
        recorder's relay judges it before each connect, so a refused receiver is an error now
        rather than a `refused` output later. The URL itself was parsed already."""
        try:
            reason = await live_url_refusal(url, self.policy, self.allow_hosts)
        except UrlRejected as exc:
            raise ApiError(AdapterErrorCode.INVALID_PARAM, f"{field}: {exc.rule}") from None
        self._refuse(field, reason)

    @staticmethod
    def _refuse(field: str, reason: str | None) -> None:
        if reason is not None:
            raise ApiError(AdapterErrorCode.URL_NOT_ALLOWED, f"{field}: {reason}")
