"""The SQLite task table and the URL policy, as units."""

from __future__ import annotations

from pathlib import Path

import pytest

from webrecord.api.protocol.errors import ApiError
from webrecord.adapter.ssrf import UrlPolicy
from webrecord.adapter.store import RunState, TaskStore
from webrecord.api.models import Phase, RecorderStatus, RecordingSpec


def test_store_survives_reopen_and_pages_newest_first(tmp_path: Path) -> None:
    store = TaskStore(tmp_path / "t.sqlite")
    spec = RecordingSpec(record_url="http://127.0.0.1/")
    for i in range(5):
        owner = "a" if i % 2 == 0 else "b"
        store.insert(f"wr-{i}", owner, spec, RecorderStatus(task_id=f"wr-{i}"), 1000 + i)
    store.set_running("wr-0", 4242)
    store.set_status("wr-0", RecorderStatus(task_id="wr-0", status=Phase.RECORDING, start_time=1001))
    assert store.next_seq("wr-0") == 1 and store.next_seq("wr-0") == 2
    store.close()

    store = TaskStore(tmp_path / "t.sqlite")
    row = store.get("wr-0")
    assert row is not None and row.state is RunState.RUNNING and row.pid == 4242 and row.seq == 2
    assert row.status.status is Phase.RECORDING and row.status.start_time == 1001
    assert row.spec == spec
    tasks, total = store.page("a", 0, 2)
    assert total == 3 and [t.task_id for t in tasks] == ["wr-4", "wr-2"]
    tasks, total = store.page("a", 2, 2)
    assert [t.task_id for t in tasks] == ["wr-0"]
    assert [r.task_id for r in store.in_state(RunState.QUEUED)] == ["wr-1", "wr-2", "wr-3", "wr-4"]
    assert store.get_status("wr-3") == ("b", RecorderStatus(task_id="wr-3"))
    assert store.get("nope") is None and store.get_status("nope") is None
    store.close()


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("http://169.254.169.254/latest/meta-data/", False),
        ("http://[fd00:ec2::254]/", False),
        ("http://100.100.100.200/", False),
        ("http://169.254.1.1/", False),
        ("http://[fe80::1%25eth0]/", False),
        ("http://0251.0376.0251.0376/", False),  # octal form of 169.254.169.254
        ("http://metadata.google.internal./", False),
        ("http://0.0.0.0/", False),
        ("http://127.0.0.1:8080/", False),
        ("http://localhost/", False),
        ("http://10.1.2.3/", True),
        ("http://192.168.1.10/", True),
        ("https://93.184.215.14/", True),
    ],
)
async def test_url_policy_defaults_for_kubernetes(url: str, allowed: bool) -> None:
    policy = UrlPolicy(allow_loopback=False)
    if allowed:
        await policy.check("Data.RecordURL", url)
    else:
        with pytest.raises(ApiError) as info:
            await policy.check("Data.RecordURL", url)
        assert info.value.code.value in ("UrlNotAllowed", "InvalidParam")
        assert info.value.message.startswith("Data.RecordURL: ")


async def test_url_policy_configuration() -> None:
    await UrlPolicy(allow_loopback=True).check("Data.RecordURL", "http://127.0.0.1:9/")
    await UrlPolicy(allow=["169.254.10.0/24"]).check("Data.CallbackURL", "http://169.254.10.5/")
    await UrlPolicy(allow=["metadata.google.internal"]).check("Data.RecordURL", "http://metadata.google.internal/")
    with pytest.raises(ApiError, match="private address"):
        await UrlPolicy(deny_private=True).check("Data.RecordURL", "http://10.0.0.1/")
    with pytest.raises(ApiError, match="cloud metadata"):
        await UrlPolicy(allow=["169.254.10.0/24"]).check("Data.RecordURL", "http://169.254.169.254/")
