"""Resolve a host and judge every address it resolves to, once, right before connecting.

The caller connects to the addresses returned here and to nothing else: the name is never
resolved a second time, so a DNS answer that changes between a check and a connect (rebinding)
cannot slip a refused address in. A host is refused when any of its addresses is refused.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from webrecord.egress.policy import EgressPolicy, IPAddress, parse_address


class EgressRefused(Exception):
    """The host may not be reached; str() names the host, the address and the reason."""

    def __init__(self, host: str, reason: str, address: IPAddress | None = None) -> None:
        self.host = host
        self.address = address
        self.reason = reason
        where = f"{host} ({address})" if address is not None and str(address) != host else host
        super().__init__(f"{where} is refused: {reason}")


async def lookup(host: str, policy: EgressPolicy) -> list[IPAddress]:
    """Every address of `host` (a literal address is its own answer); [] when none."""
    literal = parse_address(host)
    if literal is not None:
        return [literal]
    s = policy.settings
    if s.dns_server:
        return await _lookup_server(host, s.dns_server, s.resolve_timeout)
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, None, type=socket.SOCK_STREAM), s.resolve_timeout)
    except (OSError, asyncio.TimeoutError, UnicodeError, ValueError):
        return []
    found = (parse_address(str(info[4][0])) for info in infos)
    return list(dict.fromkeys(a for a in found if a is not None))


async def _lookup_server(host: str, server: str, timeout: float) -> list[IPAddress]:
    # A named DNS server (tests, or a resolver the operator chooses): A and AAAA, no cache.
    import dns.asyncresolver
    import dns.exception
    import dns.resolver

    address, _, port = server.rpartition(":")
    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers = [address.strip("[]")]
    resolver.port = int(port)
    resolver.lifetime = timeout
    resolver.cache = None
    out: list[IPAddress] = []
    for rdtype in ("A", "AAAA"):
        try:
            answer = await resolver.resolve(host, rdtype, search=False)
        except (dns.exception.DNSException, OSError):
            continue
        out += [a for a in (parse_address(r.to_text()) for r in answer) if a is not None]
    return out


async def judged_addresses(host: str, policy: EgressPolicy) -> list[IPAddress]:
    """The addresses to connect to for `host`; EgressRefused when it has none or any refused."""
    reason = policy.host_refusal(host)
    if reason is not None:
        raise EgressRefused(host, reason)
    addresses = await lookup(host, policy)
    if not addresses:
        raise EgressRefused(host, "it does not resolve")
    for address in addresses:
        reason = policy.refusal(address)
        if reason is not None:
            raise EgressRefused(host, reason, address)
    return addresses


class RefusedByPolicy(OSError):
    """What PolicyResolver raises: aiohttp wraps it in ClientConnectorDNSError.os_error."""


class PolicyResolver(AbstractResolver):
    """aiohttp resolver that answers only with judged addresses, so an aiohttp client connects
    to exactly what the policy allowed (each redirect hop is resolved through it again)."""

    def __init__(self, policy: EgressPolicy) -> None:
        self.policy = policy

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        try:
            addresses = await judged_addresses(host, self.policy)
        except EgressRefused as exc:
            # aiohttp turns an OSError from the resolver into ClientConnectorDNSError.
            raise RefusedByPolicy(str(exc)) from exc
        return [
            ResolveResult(hostname=host, host=str(a), port=port,
                          family=socket.AF_INET6 if a.version == 6 else socket.AF_INET,
                          proto=0, flags=socket.AI_NUMERICHOST)
            for a in addresses
        ]

    async def close(self) -> None:
        return None


def policy_connector(policy: EgressPolicy, **kwargs: Any) -> aiohttp.TCPConnector:
    """A connector whose every connection to a NAME is judged and pinned. aiohttp never asks a
    resolver about a literal address: judge those with `policy.host_refusal()` first."""
    # use_dns_cache=False: a cached answer would skip the judgement of a later request.
    return aiohttp.TCPConnector(resolver=PolicyResolver(policy), use_dns_cache=False, **kwargs)
