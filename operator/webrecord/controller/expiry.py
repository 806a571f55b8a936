"""Bounded growth: what a finished task leaves behind goes away.

- Its recorder pod and token Secret are deleted as soon as the task is finished (the final
  status is in `.status`; nothing reads them afterwards). Garbage collection would only remove
  them with the WebRecording.
- The finished WebRecording itself is deleted `ttlSecondsAfterFinished` after its
  `status.finishTime` (spec field; unset: the operator's `ttl_seconds_after_finished`, where 0
  keeps it forever).

The schedule is computed from `status.finishTime` of what the watch delivers, so a restarted
operator (whose first listing delivers every finished WebRecording again) rebuilds it: nothing
is kept that the API server does not hold. One entry per finished WebRecording (a heap of
(due, key, uid)), one background task for all of them: no per-task timer or daemon.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from typing import Any

from webrecord.logs import event

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (namespace, name)


def expires_at(spec: dict[str, Any], status: dict[str, Any], default_ttl: int) -> float | None:
    """Unix time at which a finished WebRecording goes; None: it is kept."""
    finish = status.get("finishTime")
    if finish is None:
        return None
    ttl = spec.get("ttlSecondsAfterFinished")
    if ttl is None:
        if not default_ttl:
            return None
        ttl = default_ttl
    return float(finish) + float(ttl)


class Expiry:
    """The deletion schedule of finished WebRecordings."""

    def __init__(self, delete: Any) -> None:
        self._delete = delete  # async (namespace, name, uid) -> None
        self.due: dict[Key, tuple[float, str]] = {}
        self.released: set[Key] = set()  # finished tasks whose pod and Secret were deleted
        self._heap: list[tuple[float, Key, str]] = []
        self._wake = asyncio.Event()

    def __len__(self) -> int:
        return len(self.due)

    def schedule(self, key: Key, uid: str, at: float) -> None:
        if self.due.get(key) == (at, uid):
            return
        self.due[key] = (at, uid)
        heapq.heappush(self._heap, (at, key, uid))
        self._wake.set()

    def forget(self, key: Key) -> None:
        """The WebRecording is gone."""
        self.released.discard(key)
        self.unschedule(key)

    def unschedule(self, key: Key) -> None:
        if self.due.pop(key, None) is not None and len(self._heap) > 2 * len(self.due) + 64:
            # Entries of deleted resources are skipped lazily; rebuild before they pile up.
            self._heap = [(at, k, uid) for k, (at, uid) in self.due.items()]
            heapq.heapify(self._heap)

    async def run(self) -> None:
        """Deletes what is due, forever; cancelled at the operator's cleanup."""
        while True:
            now = time.time()
            while self._heap and self._heap[0][0] <= now:
                at, key, uid = heapq.heappop(self._heap)
                if self.due.get(key) != (at, uid):
                    continue  # rescheduled or already gone
                del self.due[key]
                try:
                    await self._delete(key[0], key[1], uid)
                    event(log, "finished WebRecording expired: deleted", task=key[1],
                          namespace=key[0])
                except Exception as exc:  # noqa: BLE001 - retried a little later
                    event(log, "expired WebRecording not deleted", logging.WARNING, task=key[1],
                          error=f"{exc.__class__.__name__}: {exc}")
                    # 403: the operator may not delete WebRecordings (RBAC); ask again later.
                    self.schedule(key, uid, now + (3600 if getattr(exc, "status", None) == 403
                                                   else 30))
            self._wake.clear()
            wait = min(3600.0, self._heap[0][0] - time.time()) if self._heap else 3600.0
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=max(0.0, wait))
            except asyncio.TimeoutError:
                pass
