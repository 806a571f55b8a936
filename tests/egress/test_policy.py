"""The address classification every egress check shares (webrecord.egress.policy)."""

from __future__ import annotations

import pytest

from webrecord.egress.policy import EgressPolicy, EgressSettings
from webrecord.egress.resolver import EgressRefused, judged_addresses

ALWAYS_REFUSED = [
    "169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254", "169.254.1.1",
    "fe80::1", "0.0.0.0", "0.1.2.3", "::", "224.0.0.1", "ff02::1", "240.0.0.1",
    "255.255.255.255",
    # IPv6 forms that carry a refused IPv4 address
    "::ffff:169.254.169.254", "64:ff9b::a9fe:a9fe", "64:ff9b:1::7f00:1",
    "2002:a9fe:a9fe::1", "::127.0.0.1",
]


@pytest.mark.parametrize("address", ALWAYS_REFUSED)
def test_refused_whatever_the_settings(address: str) -> None:
    policy = EgressPolicy(EgressSettings(allow_loopback=True))
    assert policy.refusal(address) is not None, address


def test_loopback_only_when_allowed() -> None:
    assert EgressPolicy(EgressSettings()).refusal("127.0.0.2") == "a loopback address"
    assert EgressPolicy(EgressSettings()).refusal("::1") == "a loopback address"
    assert EgressPolicy(EgressSettings(allow_loopback=True)).allowed("127.0.0.2")


def test_allow_cidrs_is_an_exact_exception() -> None:
    policy = EgressPolicy(EgressSettings(allow_cidrs="127.0.0.1/32"))
    assert policy.allowed("127.0.0.1")
    assert not policy.allowed("127.0.0.2")


def test_cluster_and_private_ranges(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBRECORD_EGRESS_POD_CIDRS", "10.244.0.0/16, fd00:10:244::/56")
    monkeypatch.setenv("WEBRECORD_EGRESS_SERVICE_CIDRS", '["10.96.0.0/12"]')
    policy = EgressPolicy(EgressSettings())
    assert policy.refusal("10.244.3.4") == "in the cluster's pod network"
    assert policy.refusal("::ffff:10.96.0.1") is not None
    assert policy.refusal("fd00:10:244::5") == "in the cluster's pod network"
    assert policy.allowed("10.1.2.3")  # private but not refused by default
    assert policy.allowed("93.184.215.14")
    strict = EgressPolicy(EgressSettings(deny_private=True))
    for address in ("10.1.2.3", "192.168.1.1", "172.16.0.1", "100.64.0.1", "fd12::1"):
        assert strict.refusal(address) == "a private address", address
    assert strict.allowed("2606:4700::1111")


async def test_names_are_judged_by_every_address() -> None:
    policy = EgressPolicy(EgressSettings())
    with pytest.raises(EgressRefused, match="loopback"):
        await judged_addresses("localhost", policy)
    with pytest.raises(EgressRefused, match="metadata"):
        await judged_addresses("metadata.google.internal", policy)
    with pytest.raises(EgressRefused, match="does not resolve"):
        await judged_addresses("no-such-host.invalid", policy)
    loopback_ok = EgressPolicy(EgressSettings(allow_loopback=True))
    assert [str(a) for a in await judged_addresses("127.0.0.1", loopback_ok)] == ["127.0.0.1"]


def test_mapped_addresses_are_their_ipv4_address() -> None:
    policy = EgressPolicy(EgressSettings())
    assert policy.refusal("::ffff:127.0.0.2") == "a loopback address (as 127.0.0.2)"
    assert policy.allowed("::ffff:93.184.215.14")
    assert policy.refusal("64:ff9b::7f00:2") == "a loopback address (as 127.0.0.2)"
