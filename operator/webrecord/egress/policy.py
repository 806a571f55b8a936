"""Which addresses a recording may connect to: one classification for every check.

Used at connect time by the egress proxy that all Chromium traffic goes through, by the
callback sender and by ffmpeg's network inputs, and at Start time by the adapter. Only
addresses are judged (names are resolved first, by `webrecord.egress.resolver`); a host is
refused when ANY address it resolves to is refused.

Refused, in this order of reasons:

- an address in `allow_cidrs` is allowed whatever else is true of it (an explicit exception,
  e.g. a test page on 127.0.0.1 with loopback refused, or an internal service that must be
  reachable);
- cloud metadata addresses (169.254.169.254, 169.254.170.2, 100.100.100.200, fd00:ec2::254):
  always;
- link-local (169.254.0.0/16, fe80::/10): always;
- loopback (127.0.0.0/8, ::1): unless `allow_loopback` (the local backend sets it: there the
  recorder runs on the caller's own machine; never in a cluster);
- unspecified (0.0.0.0/8, ::), multicast, reserved (240.0.0.0/4, 255.255.255.255, ::/8 ...):
  always (0.0.0.0 and :: connect to this host on Linux);
- the cluster's pod and service ranges (`pod_cidrs`, `service_cidrs`; the chart passes them):
  always when set;
- `deny_cidrs`: always;
- private ranges (10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7 and the other non-global
  special-purpose ranges): only when `deny_private`.

IPv6 forms that carry an IPv4 address (IPv4-mapped ::ffff:a.b.c.d, IPv4-compatible ::a.b.c.d,
NAT64 64:ff9b::/96 and 64:ff9b:1::/48, 6to4 2002::/16, Teredo) are judged as both: refused when
either the IPv6 address or the IPv4 address inside it is refused.

Settings come from the environment with the WEBRECORD_EGRESS_ prefix; CIDR lists accept a JSON
list or a comma-separated string (`WEBRECORD_EGRESS_POD_CIDRS=10.244.0.0/16,fd00:10:244::/56`).
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from webrecord.envlist import split_list

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254")
)
# Names that only ever mean a metadata service; refused before any lookup.
METADATA_HOSTS = frozenset(
    {"metadata.google.internal", "metadata.goog", "metadata", "metadata.tencentyun.com"}
)
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))

CidrList = Annotated[list[IPNetwork], NoDecode]


class EgressSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WEBRECORD_EGRESS_", extra="ignore")

    enabled: bool = Field(True, description="Route Chromium through the filtering proxy")
    allow_loopback: bool = Field(
        False, description="Allow 127.0.0.0/8 and ::1 (the local backend sets it)")
    deny_private: bool = Field(False, description="Also refuse private and CGNAT ranges")
    pod_cidrs: CidrList = Field(default_factory=list, description="The cluster's pod ranges")
    service_cidrs: CidrList = Field(default_factory=list,
                                    description="The cluster's service ranges")
    deny_cidrs: CidrList = Field(default_factory=list, description="More ranges to refuse")
    allow_cidrs: CidrList = Field(
        default_factory=list, description="Exceptions: allowed whatever else is true of them")
    dns_server: str | None = Field(
        None, description="host:port of a DNS server for the proxy's lookups (default: the "
        "system resolver, with /etc/hosts and the cluster's search domains)")
    resolve_timeout: float = Field(5.0, gt=0, description="Seconds for one host lookup")
    connect_timeout: float = Field(10.0, gt=0, description="Seconds for one upstream connect")

    @field_validator("pod_cidrs", "service_cidrs", "deny_cidrs", "allow_cidrs", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        return split_list(value)


def parse_address(text: str) -> IPAddress | None:
    """An address from a resolver answer or a bracketed URL host; None when it is not one.
    A zone id (fe80::1%eth0) is dropped: the address is judged, not the interface."""
    try:
        return ipaddress.ip_address(text.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, compatible, NAT64, 6to4, Teredo)."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    low32 = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if any(address in net for net in _NAT64):
        return low32
    if int(address) >> 32 == 0 and int(address) > 1:  # ::a.b.c.d (deprecated compatible form)
        return low32
    return None


class EgressPolicy:
    """Judges addresses; `refusal()` says why one is refused, or None when it is allowed."""

    def __init__(self, settings: EgressSettings | None = None) -> None:
        self.settings = settings or EgressSettings()
        s = self.settings
        self._ranges: list[tuple[str, list[IPNetwork]]] = [
            ("in the cluster's pod network", list(s.pod_cidrs)),
            ("in the cluster's service network", list(s.service_cidrs)),
            ("in a refused range (deny_cidrs)", list(s.deny_cidrs)),
        ]

    def refusal(self, address: IPAddress | str) -> str | None:
        """Why `address` is refused ("a link-local address", ...), or None if it is allowed."""
        if isinstance(address, str):
            parsed = parse_address(address)
            if parsed is None:
                return "not an IP address"
            address = parsed
        inner = embedded_ipv4(address)
        if inner is not None:
            reason = self._judge(inner)
            if reason is not None:
                return f"{reason} (as {inner})"
            if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
                return None  # ::ffff:a.b.c.d is a.b.c.d on the wire, nothing more
        return self._judge(address)

    def allowed(self, address: IPAddress | str) -> bool:
        return self.refusal(address) is None

    def host_refusal(self, host: str) -> str | None:
        """A refusal that needs no lookup: a metadata name, or a literal address refused."""
        name = host.strip("[]").lower().rstrip(".")
        if name in METADATA_HOSTS:
            return "a cloud metadata service name"
        if parse_address(name) is not None:
            return self.refusal(name)
        return None

    def _judge(self, address: IPAddress) -> str | None:
        s = self.settings
        if any(address in net for net in s.allow_cidrs):
            return None
        if address in METADATA_ADDRESSES:
            return "a cloud metadata address"
        if address.is_link_local:
            return "a link-local address"
        if address.is_loopback:
            return None if s.allow_loopback else "a loopback address"
        if address.is_unspecified or address in _THIS_NETWORK:
            return "an unspecified address"
        if address.is_multicast:
            return "a multicast address"
        if address.is_reserved:
            return "a reserved address"
        for reason, networks in self._ranges:
            if any(address in net for net in networks):
                return reason
        if s.deny_private and (address.is_private or address in _CGNAT or not address.is_global):
            return "a private address"
        return None
