"""Live output URLs (rtmp://, rtmps://, srt://): parsed strictly, and redacted for logs and status.

A live URL is caller input that a recorder connects to, so it gets the same care as RecordURL:
one strict form that both this parser and ffmpeg's read the same way (no credentials, no
backslashes or spaces, IPv4 only as four decimals), its host judged by the egress policy right
before each connect (`webrecord.recorder.liverelay`). Stream keys travel in the URL (the RTMP
path after the application, SRT's `streamid`/`passphrase`), so everything past the host and the
first path part is a secret: `redact()` is the only form that reaches a log, a status or an error.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl

from webrecord.api.urls import IPAddress, UrlRejected

LIVE_SCHEMES = ("rtmp", "rtmps", "srt")
DEFAULT_PORTS = {"rtmp": 1935, "rtmps": 443}
LIVE_URL_RULE = "must be an rtmp://, rtmps:// or srt:// URL"
MAX_LIVE_OUTPUTS = 5

# host: a DNS name, dotted IPv4 or a bracketed IPv6; the rest: printable ASCII without spaces,
# backslashes, quotes or '@' (ffmpeg's URL splitter takes user info from before an '@').
_URL = re.compile(r"^(?P<scheme>[A-Za-z0-9]+)://(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)"
                  r"(?::(?P<port>[0-9]{1,5}))?(?P<path>/[^?#]*)?(?:\?(?P<query>[^#]*))?$")
_SAFE = re.compile(r"^[\x21-\x7e]+$")
_UNSAFE = set("\\\"'`@<>{}|^")
_DOTTED = re.compile(r"^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$")
_NAME_LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


@dataclass(frozen=True)
class LiveUrl:
    url: str  # as given
    scheme: str  # rtmp | rtmps | srt
    host: str  # lower-case name, dotted IPv4, or IPv6 without brackets
    port: int
    address: IPAddress | None  # set when the host is an IP literal
    path: str
    query: str

    @property
    def redacted(self) -> str:
        return redact(self.url)

    def with_address(self, address: IPAddress) -> str:
        """The URL with its host replaced by an address judged before the connect (so the
        connection goes where the check looked, whatever DNS answers next)."""
        host = f"[{address}]" if address.version == 6 else str(address)
        query = f"?{self.query}" if self.query else ""
        return f"{self.scheme}://{host}:{self.port}{self.path}{query}"


def parse_live_url(url: str) -> LiveUrl:
    """A live output URL, or UrlRejected naming the rule it breaks."""
    if not _SAFE.match(url) or any(c in _UNSAFE for c in url):
        raise UrlRejected("must not contain spaces, control characters, quotes, backslashes "
                          "or credentials (user@)")
    match = _URL.match(url)
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in LIVE_SCHEMES:
        raise UrlRejected(LIVE_URL_RULE)
    if match is None:
        raise UrlRejected("is not a valid URL (scheme://host[:port][/path][?query])")
    host = match["host"].lower()
    address = _address(host)
    if address is None:
        labels = host.rstrip(".").split(".")
        if not all(_NAME_LABEL.match(label) for label in labels) or len(host) > 253:
            raise UrlRejected("host is not a valid DNS name")
    port = int(match["port"]) if match["port"] else DEFAULT_PORTS.get(scheme, 0)
    if not 0 < port < 65536:
        raise UrlRejected("needs a port between 1 and 65535 (srt:// has no default port)")
    path, query = match["path"] or "", match["query"] or ""
    if scheme.startswith("rtmp") and len([p for p in path.split("/") if p]) < 2:
        raise UrlRejected("needs an application and a stream name (rtmp://host/app/stream)")
    return LiveUrl(url, scheme, str(address) if address else host, port, address, path, query)


def _address(host: str) -> IPAddress | None:
    if host.startswith("["):
        try:
            address = ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise UrlRejected("host is not a valid IPv6 address") from None
        if address.ipv4_mapped is not None:
            raise UrlRejected(f"host embeds the IPv4 address {address.ipv4_mapped}: "
                              "write it as an IPv4 address")
        return address
    if re.fullmatch(r"[0-9.]+|0x[0-9a-f.x]*", host) or host.rstrip(".").split(".")[-1].isdigit():
        if not _DOTTED.match(host):
            raise UrlRejected("host is an ambiguous IPv4 form: write it as four decimal "
                              "numbers (a.b.c.d)")
        return ipaddress.IPv4Address(host)
    return None


def secrets_of(url: str) -> list[str]:
    """The parts of `url` that may carry a stream key, longest first (for scrubbing text)."""
    rest = url.split("://", 1)[-1]
    path_query = rest[len(re.split(r"[/?]", rest, maxsplit=1)[0]):]
    path, _, query = path_query.partition("?")
    parts = [p for p in path.split("/") if p]
    found = ["/".join(parts[1:])] if len(parts) > 1 else []
    if query:
        found.append(query)
        found += [value for _, value in parse_qsl(query, keep_blank_values=True) if value]
    return sorted({s for s in found if len(s) >= 3}, key=len, reverse=True)


def redact(url: str) -> str:
    """scheme://host:port/app/*** ?*** : the receiver is named, its keys are not."""
    rest = url.split("://", 1)
    if len(rest) != 2:
        return "***"
    authority = re.split(r"[/?]", rest[1], maxsplit=1)[0]
    tail = rest[1][len(authority):]
    path, _, query = tail.partition("?")
    parts = [p for p in path.split("/") if p]
    shown = f"{rest[0]}://{authority}"
    if parts:
        shown += f"/{parts[0]}" + ("/***" if len(parts) > 1 else "")
    return shown + ("?***" if query else "")


def scrub(text: str, url: str) -> str:
    """`text` (an ffmpeg error line, say) with the URL's secrets replaced by ***."""
    text = text.replace(url, redact(url))
    for secret in secrets_of(url):
        text = text.replace(secret, "***")
    return text
