"""Shared state of one operator process, handed to every handler through kopf's `memo`.

Everything here is a cache that can be rebuilt from the API server: pods come from the pod
watch (and a direct read when the watch has not delivered them yet), tokens from the per-task
secrets. An operator restarted mid-task therefore loses nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from webrecord.controller.expiry import Expiry
from webrecord.controller.kube import Kube
from webrecord.controller.pod import TOKEN_KEY, recorder_name
from webrecord.controller.recorder_client import RecorderClient
from webrecord.controller.settings import OperatorSettings
from webrecord.controller.standby import StandbyPool

Key = tuple[str, str]  # (namespace, task name)
_GONE: dict[str, Any] = {"gone": True}


@dataclass
class Runtime:
    settings: OperatorSettings
    kube: Kube
    recorders: RecorderClient
    pods: dict[Key, dict[str, Any]] = field(default_factory=dict)
    tokens: dict[Key, str] = field(default_factory=dict)
    unreachable_since: dict[Key, float] = field(default_factory=dict)
    lost_since: dict[Key, float] = field(default_factory=dict)  # recorder gone, not replaced yet
    reserved: set[Key] = field(default_factory=set)  # pods this process created, maybe unseen
    expiry: Expiry | None = None  # deletion schedule of finished WebRecordings
    pool: StandbyPool | None = None  # standby recorder pods (standby_pods > 0)

    def running(self) -> set[Key]:
        """Tasks whose recorder pod exists and has not ended (for the concurrency limit)."""
        live = {
            key for key, pod in self.pods.items()
            if not pod.get("gone")
            and (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
        }
        return live | self.reserved

    def has_slot(self, key: Key) -> bool:
        limit = self.settings.max_concurrent
        if not limit:
            return True
        running = self.running()
        return key in running or len(running) < limit

    def remember_pod(self, key: Key, pod: dict[str, Any] | None) -> None:
        self.pods[key] = pod if pod is not None else _GONE
        if pod is None or (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            self.reserved.discard(key)

    def pod_deleted(self, key: Key, pod_name: str) -> None:
        """A pod of the task is gone; only the current one makes the task's recorder gone (a
        standby pod whose claim failed goes while the task's own pod already runs)."""
        cached = self.pods.get(key)
        if cached is None or cached.get("gone") or cached["metadata"]["name"] == pod_name:
            self.remember_pod(key, None)

    def forget(self, key: Key) -> None:
        self.pods.pop(key, None)
        self.reserved.discard(key)
        self.tokens.pop(key, None)
        self.unreachable_since.pop(key, None)
        self.lost_since.pop(key, None)

    async def pod(self, namespace: str, name: str,
                  pod_name: str | None = None) -> dict[str, Any] | None:
        """The task's pod as last seen by the watch; read once from the API when unseen
        (`pod_name`: its status.podName, a claimed standby pod's own name)."""
        key = (namespace, name)
        cached = self.pods.get(key)
        if cached is None:
            cached = await self.kube.read_pod(namespace, pod_name or recorder_name(name)) or _GONE
            self.pods.setdefault(key, cached)
            cached = self.pods[key]
        return None if cached is _GONE or cached.get("gone") else cached

    async def token(self, namespace: str, name: str) -> str | None:
        key = (namespace, name)
        if key not in self.tokens:
            data = await self.kube.read_secret_data(namespace, recorder_name(name))
            if not data or TOKEN_KEY not in data:
                return None
            self.tokens[key] = data[TOKEN_KEY].strip()
        return self.tokens[key]

    def unreachable_for(self, key: Key, now: float | None = None) -> float:
        """Seconds since the recorder first failed to answer (0 on the first failure)."""
        now = time.time() if now is None else now
        return now - self.unreachable_since.setdefault(key, now)


def runtime(memo: Any) -> Runtime:
    return memo["runtime"]
