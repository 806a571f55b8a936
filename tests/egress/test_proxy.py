"""The SOCKS5 egress proxy at the protocol level, with a real client socket and real servers."""

from __future__ import annotations

import asyncio
import struct

import pytest

from attacks.egress_servers import HitServer, PageServer
from webrecord.egress.childenv import minimal_env
from webrecord.egress.policy import EgressPolicy, EgressSettings
from webrecord.egress.proxy import EgressProxy

POLICY = EgressPolicy(EgressSettings(allow_loopback=False, allow_cidrs=["127.0.0.1/32"]))


async def socks(port: int, host: str, dport: int, command: int = 1) -> tuple[int, bytes]:
    """One SOCKS5 request; (reply code, what a GET through the tunnel returned)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"\x05\x01\x00")
        assert await reader.readexactly(2) == b"\x05\x00"
        name = host.encode()
        writer.write(bytes((5, command, 0, 3, len(name))) + name + struct.pack("!H", dport))
        head = await reader.readexactly(4)
        await reader.readexactly(4 if head[3] == 1 else 16)
        await reader.readexactly(2)
        if head[1] != 0:
            return head[1], b""
        writer.write(b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        return 0, await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


@pytest.mark.timeout(30)
async def test_connect_allowed_refused_and_other_commands() -> None:
    refused = HitServer("127.0.0.2")
    page = PageServer({"/x": "hello"})
    try:
        async with EgressProxy(POLICY) as proxy:
            code, body = await socks(proxy.port, "127.0.0.1", page.port)
            assert code == 0 and body.endswith(b"hello")
            assert (await socks(proxy.port, "127.0.0.2", refused.port))[0] == 2
            assert (await socks(proxy.port, "localhost6.invalid", refused.port))[0] == 2
            assert (await socks(proxy.port, "127.0.0.1", page.port, command=3))[0] == 7  # UDP
            assert (await socks(proxy.port, "127.0.0.1", page.port, command=2))[0] == 7  # BIND
            assert proxy.stats.refused == 2
        assert refused.hits == []
    finally:
        refused.close()
        page.close()


def test_minimal_env_keeps_only_what_children_need() -> None:
    source = {"PATH": "/bin", "HOME": "/h", "LC_ALL": "C.UTF-8", "AWS_SECRET_ACCESS_KEY": "x",
              "WEBRECORD_CALLBACK_SECRET": "y", "LC_API_KEY": "z", "KUBERNETES_SERVICE_HOST": "k"}
    env = minimal_env({"DISPLAY": ":5"}, source=source)
    assert env == {"PATH": "/bin", "HOME": "/h", "LC_ALL": "C.UTF-8", "DISPLAY": ":5"}
    with pytest.raises(ValueError):
        minimal_env({"AWS_ACCESS_KEY_ID": "x"}, source=source)
