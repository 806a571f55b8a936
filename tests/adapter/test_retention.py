"""Bounded growth of the local backend: finished tasks' directories and rows are pruned
`retention_seconds` after they finished (at startup and periodically); queued, running and
recently finished tasks are kept, and so are the finished videos. Real SQLite, real files."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from webrecord.adapter.backends.local import LocalBackend
from webrecord.adapter.settings import AdapterSettings
from webrecord.adapter.store import RunState
from webrecord.api.models import Phase, RecorderStatus, RecordingSpec

from .helpers import wait_for

HOUR = 3600


def _backend(state: Path, **settings: object) -> LocalBackend:
    return LocalBackend(AdapterSettings(state_dir=state, auth_enabled=False, **settings))


def _add(backend: LocalBackend, task_id: str, state: RunState, finished_ago: float | None,
         created_ago: float = 2 * 24 * HOUR) -> Path:
    """A task row as the backend writes it, with its directory (task file, log, a segment)."""
    now = int(time.time())
    status = RecorderStatus(task_id=task_id, status=Phase.RECORDING,
                            create_time=now - int(created_ago))
    if finished_ago is not None:
        status = status.model_copy(update={"status": Phase.FINISHED,
                                           "finish_time": now - int(finished_ago)})
    backend.store.insert(task_id, "", RecordingSpec(record_url="http://127.0.0.1:9/"), status,
                         now - int(created_ago))
    if state is RunState.RUNNING:
        backend.store.set_running(task_id, 999_999_999)
    if state is not RunState.QUEUED:
        backend.store.set_status(task_id, status, state)
    directory = backend.task_dir(task_id)
    (directory / "work" / "segments").mkdir(parents=True)
    (directory / "work" / "segments" / "000001.mkv").write_bytes(b"x" * 1000)
    (directory / "task.json").write_text("{}")
    (directory / "recorder.log").write_text("log\n")
    return directory


def test_prunes_only_finished_tasks_older_than_the_retention(tmp_path: Path) -> None:
    backend = _backend(tmp_path / "state", retention_seconds=24 * HOUR)
    old = _add(backend, "old-done", RunState.DONE, finished_ago=25 * HOUR)
    young = _add(backend, "young-done", RunState.DONE, finished_ago=HOUR)
    running = _add(backend, "old-running", RunState.RUNNING, finished_ago=None)
    queued = _add(backend, "old-queued", RunState.QUEUED, finished_ago=None)
    # A recorder that wrote "finished" while its row still says running (being reaped): kept.
    reaping = _add(backend, "reaping", RunState.RUNNING, finished_ago=25 * HOUR)
    video = backend.output_dir / "old-done" / "video.mp4"
    video.parent.mkdir(parents=True)
    video.write_bytes(b"mp4")

    assert asyncio.run(backend.prune()) == ["old-done"]
    assert not old.exists() and backend.store.get("old-done") is None
    for task_id, directory in (("young-done", young), ("old-running", running),
                               ("old-queued", queued), ("reaping", reaping)):
        assert directory.exists() and backend.store.get(task_id) is not None, task_id
    assert video.read_bytes() == b"mp4"  # delivered videos are the caller's, never pruned
    # Later, the young one's time has come too; the others still stay.
    assert asyncio.run(backend.prune(now=int(time.time()) + 24 * HOUR)) == ["young-done"]
    assert backend.store.count(RunState.RUNNING) == 2 and backend.store.count(RunState.QUEUED) == 1
    backend.store.close()


def test_zero_retention_keeps_everything(tmp_path: Path) -> None:
    backend = _backend(tmp_path / "state", retention_seconds=0)
    directory = _add(backend, "ancient", RunState.DONE, finished_ago=365 * 24 * HOUR)
    assert asyncio.run(backend.prune()) == []
    assert directory.exists() and backend.store.get("ancient") is not None
    backend.store.close()


def test_pruned_at_startup_and_periodically(tmp_path: Path) -> None:
    state = tmp_path / "state"
    before = _backend(state, retention_seconds=HOUR)
    stale = _add(before, "stale", RunState.DONE, finished_ago=2 * HOUR)
    before.store.close()

    async def scenario() -> None:
        backend = _backend(state, retention_seconds=2, retention_check_seconds=0.2)
        await backend.open()
        try:
            await asyncio.sleep(0.1)
            assert not stale.exists() and backend.store.get("stale") is None  # at startup
            fresh = _add(backend, "fresh", RunState.DONE, finished_ago=0)
            await asyncio.sleep(0.5)
            assert fresh.exists()  # not yet: it finished less than 2 s ago
            began = time.monotonic()
            await asyncio.to_thread(wait_for, lambda: fresh.exists(), lambda e: not e, 10,
                                    "the periodic prune")
            assert backend.store.get("fresh") is None
            assert time.monotonic() - began < 4
        finally:
            await backend.close()

    asyncio.run(scenario())


def test_describe_after_pruning_says_no_task(tmp_path: Path) -> None:
    from webrecord.adapter.backends.base import TaskNotFound

    backend = _backend(tmp_path / "state", retention_seconds=HOUR)
    _add(backend, "gone", RunState.DONE, finished_ago=2 * HOUR)
    assert asyncio.run(backend.describe("gone", "")).status is Phase.FINISHED
    asyncio.run(backend.prune())
    with pytest.raises(TaskNotFound):
        asyncio.run(backend.describe("gone", ""))
    backend.store.close()
