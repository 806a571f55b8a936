"""Attack-suite fixtures: the adapter's real loopback servers (tests/adapter) and a loopback
"forbidden" server that records every connection reaching it (test traffic never leaves this
machine: the forbidden address is a loopback one, with loopback refused)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from adapter.conftest import KEYS, make_server, server, signed_server  # noqa: F401 - fixtures
from delivery.conftest import moto_endpoint  # noqa: F401 - fixture (moto S3 on loopback)

from .egress_servers import HitServer


@pytest.fixture
def forbidden() -> Iterator[HitServer]:
    srv = HitServer("127.0.0.1")
    try:
        yield srv
    finally:
        srv.close()
