"""Where a RecordURL / CallbackURL may point.

The recorder's browser opens RecordURL and the delivery stage POSTs to CallbackURL, both from
inside our network, so a caller could aim them at the cloud metadata service or other link-local
endpoints. The host is resolved here (numeric forms such as `http://2852039166/` resolve too) and
refused when any address it resolves to is:

- link-local (169.254.0.0/16, fe80::/10) or a known metadata address/name: always, unless the
  host or a CIDR containing the address is listed in `url_allow`;
- loopback (127.0.0.0/8, ::1): unless loopback is allowed (default: allowed for the local
  backend, where the recorder runs on the caller's machine; refused for kubernetes);
- private (10/8, 172.16/12, 192.168/16, fc00::/7, 100.64/10): only when `url_deny_private`;
- unspecified/multicast/reserved: always.

A name that does not resolve is accepted (the recorder then reports PageLoadFailed): it cannot
be shown to be internal, and pods may resolve names the adapter cannot. This is a check at Start
time; DNS rebinding later is out of its reach, which is why the chart's NetworkPolicy also blocks
the metadata addresses for recorder pods.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

from webrecord.adapter.errors import AdapterErrorCode, ApiError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

METADATA_HOSTS = frozenset(
    {"metadata.google.internal", "metadata.goog", "metadata", "metadata.tencentyun.com"}
)
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "100.100.100.200", "fd00:ec2::254", "169.254.170.2")
)
_CGNAT = ipaddress.ip_network("100.64.0.0/10")


class UrlPolicy:
    def __init__(
        self,
        allow: Iterable[str] = (),
        allow_loopback: bool = True,
        deny_private: bool = False,
        resolve_timeout: float = 2.0,
    ) -> None:
        self.allow_hosts: set[str] = set()
        self.allow_networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for item in allow:
            try:
                self.allow_networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                self.allow_hosts.add(item.lower().rstrip("."))
        self.allow_loopback = allow_loopback
        self.deny_private = deny_private
        self.resolve_timeout = resolve_timeout

    async def check(self, field: str, url: str) -> None:
        """Raise UrlNotAllowed (or InvalidParam for an unparsable URL) naming `field`."""
        try:
            parts = urlsplit(url)
            host = (parts.hostname or "").lower().rstrip(".")
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError as exc:
            raise ApiError(AdapterErrorCode.INVALID_PARAM, f"{field}: not a valid URL ({exc})")
        if not host:
            raise ApiError(AdapterErrorCode.INVALID_PARAM, f"{field}: URL has no host")
        if host in self.allow_hosts:
            return
        if host in METADATA_HOSTS:
            raise ApiError(
                AdapterErrorCode.URL_NOT_ALLOWED,
                f"{field}: host {host!r} is a cloud metadata service",
            )
        for address in await self._resolve(host):
            reason = self._refusal(address)
            if reason:
                raise ApiError(
                    AdapterErrorCode.URL_NOT_ALLOWED,
                    f"{field}: host {host[:64]!r} resolves to {address}, {reason}",
                )

    async def _resolve(self, host: str) -> list[IPAddress]:
        try:
            return [_normalise(ipaddress.ip_address(host))]
        except ValueError:
            pass
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(host, None, type=socket.SOCK_STREAM), self.resolve_timeout
            )
        except (OSError, asyncio.TimeoutError, UnicodeError, ValueError):
            return []
        out = []
        for info in infos:
            try:
                out.append(_normalise(ipaddress.ip_address(info[4][0].split("%")[0])))
            except ValueError:
                continue
        return out

    def _refusal(self, address: IPAddress) -> str | None:
        if any(address in net for net in self.allow_networks):
            return None
        if address in METADATA_ADDRESSES:
            return "a cloud metadata address"
        if address.is_link_local:
            return "a link-local address"
        if address.is_loopback:
            return None if self.allow_loopback else "a loopback address (not allowed here)"
        if address.is_unspecified or address.is_multicast or address.is_reserved:
            return "not a routable unicast address"
        if self.deny_private and (address.is_private or address in _CGNAT):
            return "a private address (url_deny_private is set)"
        return None


def _normalise(address: IPAddress) -> IPAddress:
    # ::ffff:169.254.169.254 must be judged as the IPv4 address it is.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address
