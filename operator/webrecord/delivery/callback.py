"""Callback: POST the Describe-shaped result to the task's CallbackURL, signed, with retries.

Signature (when WEBRECORD_CALLBACK_SECRET or _FILE is set), for receivers to verify:

    X-Webrecord-Timestamp: <unix seconds>
    X-Webrecord-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>." + raw body bytes)>

The timestamp is inside the signed string so a captured request cannot be replayed later
with a fresh timestamp. `verify_signature()` below is the reference check for receivers.

Where it may go: the host is judged by the egress address policy (`webrecord.egress`, settings
WEBRECORD_EGRESS_*) and the request connects to the address that was judged; redirects are
never followed (a 3xx is a failed callback), so neither a redirect nor a changed DNS answer can
send the signed body somewhere the policy refuses.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

import aiohttp
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
    wait_random_exponential,
)
from yarl import URL

from webrecord import __version__
from webrecord.egress.policy import EgressPolicy, EgressSettings
from webrecord.egress.resolver import RefusedByPolicy, policy_connector
from webrecord.logs import event
from webrecord.delivery.settings import DeliverySettings

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Webrecord-Signature"
TIMESTAMP_HEADER = "X-Webrecord-Timestamp"


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The value of X-Webrecord-Signature for this body and timestamp."""
    digest = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(
    secret: bytes | str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    tolerance_s: float = 300.0,
    now: float | None = None,
) -> bool:
    """True when `headers` carry a valid signature of `body` made with `secret`, not older
    than `tolerance_s`. Pass the raw request body bytes (not re-serialised JSON).

    Example (aiohttp receiver):
        body = await request.read()
        if not verify_signature(SECRET, body, request.headers): return web.Response(status=401)
    """
    key = secret.encode() if isinstance(secret, str) else secret
    lowered = {k.lower(): v for k, v in headers.items()}
    timestamp = lowered.get(TIMESTAMP_HEADER.lower(), "")
    signature = lowered.get(SIGNATURE_HEADER.lower(), "")
    try:
        age = abs((time.time() if now is None else now) - int(timestamp))
    except ValueError:
        return False
    if age > tolerance_s:
        return False
    return hmac.compare_digest(sign(key, timestamp, body), signature)


@dataclass
class CallbackOutcome:
    ok: bool
    attempts: int
    status: int | None = None  # HTTP status of the last try
    error: str | None = None  # the last failure, in words
    errors: list[str] = field(default_factory=list)


class _TryFailed(Exception):
    """One try of the callback failed; `final` when another try cannot change the answer (a
    refusal by the egress policy, a redirect)."""

    def __init__(self, error: str, final: bool = False) -> None:
        super().__init__(error)
        self.error, self.final = error, final


def _retry_schedule(settings: DeliverySettings) -> AsyncRetrying:
    """`callback_attempts` tries; before try n+1 a wait of base/2 + uniform(0, base/2) with
    base = min(callback_backoff_max_s, callback_backoff_s * 2**(n-1)): exponential with "equal
    jitter", which spreads the retries of many recorders hitting one receiver."""
    half, half_max = settings.callback_backoff_s / 2, settings.callback_backoff_max_s / 2
    return AsyncRetrying(
        stop=stop_after_attempt(settings.callback_attempts),
        wait=(wait_exponential(multiplier=half, min=0, max=half_max)
              + wait_random_exponential(multiplier=half, max=half_max)),
        retry=retry_if_exception(lambda exc: isinstance(exc, _TryFailed) and not exc.final),
        reraise=True,
    )


def _refused(url: str, policy: EgressPolicy) -> str | None:
    # The resolver judges names at connect time; literal addresses never reach it.
    try:
        host = URL(url).host or ""
    except ValueError:
        return f"{url} is not a valid URL"
    reason = policy.host_refusal(host)
    return f"{url}: {host} is refused: {reason}" if reason else None


async def send_callback(
    url: str, body: dict[str, Any], settings: DeliverySettings | None = None,
    egress: EgressSettings | None = None,
) -> CallbackOutcome:
    """POST `body` as JSON to `url`; any 2xx is success. Never raises for network faults.
    A host the egress policy refuses, or a redirect, fails at once (no retries)."""
    settings = settings or DeliverySettings()
    policy = EgressPolicy(egress or EgressSettings())
    raw = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    secret = settings.callback_key()
    outcome = CallbackOutcome(ok=False, attempts=0)
    refused = _refused(url, policy)
    if refused:
        outcome.error = refused
        outcome.errors.append(refused)
        event(log, "callback refused", logging.WARNING, url=url, error=refused)
        return outcome
    timeout = aiohttp.ClientTimeout(total=settings.callback_timeout_s)
    async with aiohttp.ClientSession(timeout=timeout, connector=policy_connector(policy)) as session:
        try:
            await _retry_schedule(settings)(_post_once, session, url, raw, secret, settings,
                                            outcome)
        except _TryFailed:
            pass  # outcome holds the tries and their errors
    return outcome


async def _post_once(session: aiohttp.ClientSession, url: str, raw: bytes, secret: bytes | None,
                     settings: DeliverySettings, outcome: CallbackOutcome) -> None:
    """One signed POST; fills `outcome`; raises _TryFailed unless the receiver answered 2xx."""
    outcome.attempts += 1
    headers = {"Content-Type": "application/json", "User-Agent": f"webrecord/{__version__}"}
    if secret:
        stamp = str(int(time.time()))  # fresh on every try: receivers reject old timestamps
        headers[TIMESTAMP_HEADER] = stamp
        headers[SIGNATURE_HEADER] = sign(secret, stamp, raw)
    final = False  # a refusal or a redirect will not change on a retry
    try:
        async with session.post(url, data=raw, headers=headers, allow_redirects=False) as resp:
            outcome.status = resp.status
            await resp.read()
            if 200 <= resp.status < 300:
                outcome.ok, outcome.error = True, None
                event(log, "callback delivered", url=url, attempt=outcome.attempts,
                      http_status=resp.status)
                return
            error = f"HTTP {resp.status} from {url}"
            if 300 <= resp.status < 400:
                error += " (redirects are not followed)"
                final = True
    except asyncio.TimeoutError:
        outcome.status = None
        error = f"no answer from {url} within {settings.callback_timeout_s:g} s"
    except aiohttp.ClientConnectorError as exc:
        outcome.status = None
        if isinstance(exc.os_error, RefusedByPolicy):
            error, final = f"{url}: {exc.os_error}", True
        else:
            error = f"cannot reach {url}: {exc.__class__.__name__}: {exc}"
    except aiohttp.ClientError as exc:
        outcome.status = None
        error = f"cannot reach {url}: {exc.__class__.__name__}: {exc}"
    outcome.error = error
    outcome.errors.append(error)
    event(log, "callback try failed", logging.WARNING, url=url, attempt=outcome.attempts,
          error=error)
    raise _TryFailed(error, final)
