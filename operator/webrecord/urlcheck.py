"""Start-time judgement of a caller's URL (and of a live output's host): parsed as the browser parses it (`webrecord.api.urls`),
its host resolved (`webrecord.egress.resolver`), every address judged by the one address policy (`webrecord.egress.policy`).

Used by the adapter at Start (adapter.ssrf) and by the recorder before it opens the page, so a
WebRecording created with kubectl is judged too. A name that does not resolve here is accepted:
the recorder's egress proxy judges every connection again at connect time (DNS rebinding,
redirects and subresources are its business, not this check's).
"""

from __future__ import annotations

from collections.abc import Iterable

from webrecord.api.live import parse_live_url
from webrecord.api.urls import ParsedUrl, parse_http_url
from webrecord.egress.policy import EgressPolicy
from webrecord.egress.resolver import lookup


async def url_refusal(
    url: str,
    policy: EgressPolicy,
    allow_hosts: Iterable[str] = (),
) -> tuple[ParsedUrl, str | None]:
    """(the parsed URL, why its host is refused or None). Raises UrlRejected when the URL
    itself is malformed or ambiguous."""
    parsed = parse_http_url(url)
    return parsed, await host_refusal(parsed.host, parsed.address is not None, policy, allow_hosts)


async def live_url_refusal(url: str, policy: EgressPolicy,
                           allow_hosts: Iterable[str] = ()) -> str | None:
    """Why a live output's host is refused (as its relay would judge it before connecting), or
    None. Raises UrlRejected when the URL breaks a rule of `webrecord.api.live`."""
    parsed = parse_live_url(url)
    return await host_refusal(parsed.host, parsed.address is not None, policy, allow_hosts)


async def host_refusal(host: str, literal: bool, policy: EgressPolicy,
                       allow_hosts: Iterable[str] = ()) -> str | None:
    name = host.rstrip(".")
    if name in {h.lower().rstrip(".") for h in allow_hosts}:
        return None
    reason = None if literal else policy.host_refusal(name)  # a metadata name
    if reason is not None:
        return f"host {name[:64]!r} is {reason}"
    for address in await lookup(name, policy):
        reason = policy.refusal(address)
        if reason is not None:
            return f"host {name[:64]!r} resolves to {address}, {reason}"
    return None
