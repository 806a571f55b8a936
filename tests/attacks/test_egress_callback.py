"""The signed callback cannot be sent where the egress policy refuses: not to a refused
address, not through a redirect, not through a name whose DNS answer is refused. The refused
receiver is a real server on 127.0.0.2 (loopback refused, 127.0.0.1 allowed) that records hits."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from webrecord.delivery.callback import send_callback
from webrecord.egress.policy import EgressSettings
from webrecord.delivery.settings import DeliverySettings

from .egress_servers import HitServer, PageServer, RebindingDns

REFUSED = "127.0.0.2"
SETTINGS = DeliverySettings(callback_attempts=3, callback_backoff_s=0.01,
                            callback_timeout_s=5, callback_secret="s3cret")


@pytest.fixture
def target() -> Iterator[HitServer]:
    server = HitServer(REFUSED)
    yield server
    server.close()


def policy(**extra: object) -> EgressSettings:
    return EgressSettings(allow_loopback=False, allow_cidrs=["127.0.0.1/32"], **extra)


@pytest.mark.timeout(30)
async def test_refused_address_gets_no_callback(target: HitServer) -> None:
    outcome = await send_callback(f"http://{target.netloc}/cb", {"a": 1}, SETTINGS, policy())
    assert not outcome.ok and "loopback" in (outcome.error or "")
    assert outcome.attempts == 0 and target.hits == []


@pytest.mark.timeout(30)
@pytest.mark.parametrize("code", [302, 307, 308])
async def test_redirect_is_not_followed(target: HitServer, code: int) -> None:
    page = PageServer({})
    try:
        outcome = await send_callback(
            f"{page.url}/redirect?code={code}&to=http://{target.netloc}/stolen", {"a": 1},
            SETTINGS, policy())
        assert not outcome.ok and outcome.status == code and outcome.attempts == 1
        assert "redirects are not followed" in (outcome.error or "")
        assert target.hits == []
    finally:
        page.close()


@pytest.mark.timeout(30)
async def test_name_resolving_to_refused_address_is_refused(target: HitServer) -> None:
    dns = RebindingDns("callback.test", REFUSED, REFUSED)
    try:
        outcome = await send_callback(f"http://callback.test:{target.port}/cb", {"a": 1},
                                      SETTINGS, policy(dns_server=dns.address))
        assert not outcome.ok and "loopback" in (outcome.error or ""), outcome
        assert outcome.attempts == 1 and target.hits == []
        assert dns.answers, "the policy's resolver was not asked"
    finally:
        dns.close()


@pytest.mark.timeout(30)
async def test_allowed_receiver_still_gets_it() -> None:
    page = PageServer({})
    try:
        outcome = await send_callback(f"{page.url}/cb", {"a": 1}, SETTINGS, policy())
        assert outcome.ok and outcome.status == 200 and "/cb" in page.paths
    finally:
        page.close()
