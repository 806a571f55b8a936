"""Caller URLs parsed the way Chromium parses them (the WHATWG URL standard, through ada-url).

`urlsplit` and a browser disagree on inputs such as `http://127.0.0.1:9\\@example.com/`
(urlsplit: host example.com; the browser: 127.0.0.1, path `/@example.com/`), `http://2130706433/`
or `http://0x7f.1/` (the browser: 127.0.0.1). A check that judges one host while the browser
fetches another is no check, so this module parses with a WHATWG parser and refuses what it
cannot judge with confidence:

- a scheme other than http/https;
- credentials (userinfo) in the URL;
- backslashes, control characters, whitespace anywhere in the input;
- an IPv4 host written in any form other than four dotted decimals (decimal, octal, hex,
  short forms, full-width digits, percent-encoded), and IPv4-mapped or -compatible IPv6.

Names are judged in their ASCII (IDNA/punycode) form, as the browser resolves them. This module
only parses; which addresses are allowed is the address policy's business (`webrecord.netcheck`).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

import ada_url

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_BAD_CHARS = re.compile(r"[\x00-\x20\x7f-\x9f\\]")
URL_CHARS_RULE = "must not contain backslashes, spaces or control characters"
CEL_URL_CHARS = "!self.matches('[\\\\x00-\\\\x20\\\\x7f-\\\\x9f\\\\\\\\]')"  # the same, for the CRD
_SCHEME = re.compile(r"^(https?)://", re.IGNORECASE)
_DOTTED = re.compile(r"^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$")


class UrlRejected(ValueError):
    """The URL is malformed or ambiguous; `rule` says which rule it breaks ("must not ...")."""

    def __init__(self, rule: str) -> None:
        super().__init__(rule)
        self.rule = rule


@dataclass(frozen=True)
class ParsedUrl:
    href: str  # the serialisation the browser uses
    scheme: str  # "http" | "https"
    host: str  # lower-case ASCII name, dotted IPv4, or IPv6 without brackets
    port: int
    address: IPAddress | None  # set when the host is an IP literal


def parse_http_url(url: str) -> ParsedUrl:
    """Parse an http(s) URL as the browser does, or raise UrlRejected naming the rule."""
    if _BAD_CHARS.search(url):
        raise UrlRejected(URL_CHARS_RULE)
    if not _SCHEME.match(url):
        raise UrlRejected("must be an http:// or https:// URL")
    try:
        parts = ada_url.parse_url(url)
    except ValueError:
        raise UrlRejected("is not a valid URL") from None
    scheme = parts["protocol"].rstrip(":")
    if scheme not in ("http", "https"):
        raise UrlRejected("must be an http:// or https:// URL")
    if parts["username"] or parts["password"] or "@" in _raw_authority(url):
        raise UrlRejected("must not contain credentials (user:password@)")
    host = parts["hostname"]
    if not host:
        raise UrlRejected("has no host")
    port = int(parts["port"]) if parts["port"] else (443 if scheme == "https" else 80)
    address = _address(url, host)
    if address is not None:
        host = str(address)
    return ParsedUrl(parts["href"], scheme, host, port, address)


def _raw_authority(url: str) -> str:
    rest = url.split("://", 1)[1]
    return re.split(r"[/?#]", rest, maxsplit=1)[0]


def _raw_host(url: str) -> str:
    authority = _raw_authority(url)
    if authority.startswith("["):
        return authority[: authority.find("]") + 1]
    return authority.rsplit(":", 1)[0] if ":" in authority else authority


def _address(url: str, host: str) -> IPAddress | None:
    """The IP literal the browser will use, refusing every form but the plain one."""
    if host.startswith("["):
        address = ipaddress.IPv6Address(host[1:-1])
        embedded = address.ipv4_mapped or _ipv4_compatible(address)
        if embedded is not None:
            raise UrlRejected(f"host {host} embeds the IPv4 address {embedded}: "
                              "write it as an IPv4 address")
        return address
    try:
        address4 = ipaddress.IPv4Address(host)
    except ValueError:
        return None  # a name
    if not _DOTTED.match(_raw_host(url)):
        raise UrlRejected(f"host is an ambiguous form of {address4}: "
                          "write IPv4 addresses as four decimal numbers (a.b.c.d)")
    return address4


def _ipv4_compatible(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    # ::a.b.c.d (deprecated, still routed by some stacks); :: and ::1 are not IPv4.
    value = int(address)
    if value >> 32 == 0 and value > 1:
        return ipaddress.IPv4Address(value & 0xFFFFFFFF)
    return None
