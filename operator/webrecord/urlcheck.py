"""Start-time judgement of a caller's URL: parsed as the browser parses it (`webrecord.api.urls`),
its host resolved (`webrecord.egress.resolver`), every address judged by the one address policy (`webrecord.egress.policy`).

Used by the adapter at Start (adapter.ssrf) and by the recorder before it opens the page, so a
WebRecording created with kubectl is judged too. A name that does not resolve here is accepted:
the recorder's egress proxy judges every connection again at connect time (DNS rebinding,
redirects and subresources are its business, not this check's).
"""

from __future__ import annotations

from collections.abc import Iterable

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
    name = parsed.host.rstrip(".")
    if name in {h.lower().rstrip(".") for h in allow_hosts}:
        return parsed, None
    reason = None if parsed.address else policy.host_refusal(name)  # a metadata name
    if reason is not None:
        return parsed, f"host {name[:64]!r} is {reason}"
    for address in await lookup(name, policy):
        reason = policy.refusal(address)
        if reason is not None:
            return parsed, f"host {name[:64]!r} resolves to {address}, {reason}"
    return parsed, None
