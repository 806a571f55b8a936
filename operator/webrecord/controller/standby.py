"""Standby recorder pods: the operator keeps `standby_pods` idle recorders running
(`webrecord recorder-pod --standby`: display, sound server, egress proxy and Chromium on a
blank page, waiting for POST /claim), so a new WebRecording skips the pod's start-up.

A claim takes the pool out of the picture in one API call: a JSON patch, conditional on the
pod's resourceVersion, that removes the standby label, sets the task label and the owner
reference to the WebRecording (from then on it is that task's recorder pod to every other
handler) and the task's time limit. Then the task travels in POST /claim. A claim that fails at
any step falls back to the task's own pod (the cold path); a pod that was taken but not
claimed is deleted. The pool is refilled at once after a claim and checked every
`standby_check_s`: ended standby pods are removed and replaced, extra ones (two operator
replicas both filling it) trimmed by name, so every replica trims the same ones.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from webrecord.api.models import RecordingTask
from webrecord.controller import pod as podlib
from webrecord.controller.kube import Kube
from webrecord.controller.recorder_client import RecorderClient, RecorderUnreachable
from webrecord.controller.settings import OperatorSettings
from webrecord.controller.status import created_at, pod_address
from webrecord.logs import event

log = logging.getLogger(__name__)

SELECTOR = f"{podlib.STANDBY_LABEL}=true"


def ready(pod: dict[str, Any]) -> bool:
    """Running, addressable, every container ready (its readiness probe: /healthz answers,
    which the standby recorder serves only once its stage runs)."""
    status = pod.get("status") or {}
    containers = status.get("containerStatuses") or []
    return (not (pod.get("metadata") or {}).get("deletionTimestamp")
            and status.get("phase") == "Running" and bool(status.get("podIP"))
            and bool(containers) and all(c.get("ready") for c in containers))


def ended(pod: dict[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


class StandbyPool:
    def __init__(self, settings: OperatorSettings, kube: Kube, recorders: RecorderClient) -> None:
        self.settings = settings
        self.kube = kube
        self.recorders = recorders
        self.namespace = settings.pool_namespace or ""
        self.tokens: dict[str, str] = {}  # pod name -> control token (else read from its Secret)
        self.wake = asyncio.Event()

    # ---- keeping the pool full ----------------------------------------------------------
    async def run(self) -> None:
        while True:
            try:
                await self.reconcile()
            except Exception as exc:  # noqa: BLE001 - the next round tries again
                event(log, "standby pool check failed", logging.WARNING,
                      error=f"{exc.__class__.__name__}: {exc}")
            try:
                await asyncio.wait_for(self.wake.wait(), self.settings.standby_check_s)
            except TimeoutError:
                pass
            self.wake.clear()

    async def reconcile(self) -> None:
        alive: list[dict[str, Any]] = []
        now = time.time()
        for pod in await self.kube.list_pods(self.namespace, SELECTOR):
            meta = pod["metadata"]
            if meta.get("deletionTimestamp"):
                continue
            # Idle standby pods end only when they cannot serve (a part died) or were told to
            # stop; one never ready within the start deadline (its Secret missing, an image
            # that does not start) would hold its place for ever. Both are replaced below.
            why = ("ended" if ended(pod) else "not ready within the start deadline"
                   if not ready(pod) and now - (created_at(pod) or now)
                   > self.settings.start_deadline_s else None)
            if why:
                event(log, f"standby pod {why}: replacing", logging.WARNING, pod=meta["name"],
                      phase=(pod.get("status") or {}).get("phase"))
                await self.kube.delete_pod(self.namespace, meta["name"], grace_s=0)
                self.tokens.pop(meta["name"], None)
                continue
            alive.append(pod)
        target = self.settings.standby_pods
        # The newest go first; every replica filling the pool picks the same ones.
        for pod in sorted(alive, key=lambda p: (p["metadata"]["creationTimestamp"],
                                                p["metadata"]["name"]))[target:]:
            event(log, "standby pod beyond the pool size: deleting", pod=pod["metadata"]["name"])
            await self.kube.delete_pod(self.namespace, pod["metadata"]["name"])
        for _ in range(target - len(alive)):
            await self.add()

    async def add(self) -> None:
        anchor = None
        if self.settings.standby_owner:
            anchor = await self.kube.read_config_map(self.namespace, self.settings.standby_owner)
            if anchor is None or anchor["metadata"].get("deletionTimestamp"):
                # The chart is being uninstalled (or the value names nothing): a pod created
                # now would have no owner and outlive the install.
                event(log, "standby owner ConfigMap missing: no standby pod created",
                      logging.WARNING, configmap=self.settings.standby_owner,
                      namespace=self.namespace)
                return
        name = podlib.new_standby_name()
        created = await self.kube.create(podlib.build_standby_pod(name, self.namespace,
                                                                  self.settings, anchor))
        if created is None:
            return
        # After the pod: the Secret is owned by it (gone with it). The kubelet waits for it.
        token = podlib.new_token()
        await self.kube.create(podlib.build_standby_secret(created, token))
        self.tokens[name] = token
        event(log, "standby pod created", pod=name, namespace=self.namespace)

    async def remove_all(self) -> None:
        """Pool size 0: idle standby pods left by an earlier configuration go."""
        for pod in await self.kube.list_pods(self.namespace, SELECTOR):
            await self.kube.delete_pod(self.namespace, pod["metadata"]["name"])

    async def token(self, pod_name: str) -> str | None:
        if pod_name not in self.tokens:
            data = await self.kube.read_secret_data(self.namespace, pod_name) or {}
            if podlib.TOKEN_KEY not in data:
                return None
            self.tokens[pod_name] = data[podlib.TOKEN_KEY].strip()
        return self.tokens[pod_name]

    # ---- the claim ----------------------------------------------------------------------
    def refusal(self, namespace: str, task: RecordingTask) -> str | None:
        """Why this task takes its own pod (None: it may claim a standby pod)."""
        if not self.settings.standby_pods:
            return "no standby pods (standby_pods = 0)"
        if namespace != self.namespace:
            return f"standby pods are in namespace {self.namespace}"
        return podlib.claimable(task.spec, self.settings)

    async def claim(self, owner: dict[str, Any],
                    task: RecordingTask) -> tuple[dict[str, Any], str] | None:
        """A ready standby pod made the task's recorder and running it, with its token; None
        when there is none or the claim failed (the caller takes the cold path)."""
        candidates = sorted((p for p in await self.kube.list_pods(self.namespace, SELECTOR)
                             if ready(p)), key=lambda p: p["metadata"]["creationTimestamp"])
        for pod in candidates:
            name = pod["metadata"]["name"]
            token = await self.token(name)
            base = pod_address(pod, self.settings.control_port)
            if token is None or base is None:
                continue
            taken = await self.kube.patch_pod(self.namespace, name, podlib.claim_patch(
                pod, owner, task.spec, self.settings, time.time()))
            if taken is None:
                continue  # claimed or deleted meanwhile: the next one
            self.wake.set()  # a replacement starts now, not at the next check
            try:
                await self.recorders.claim(base, token, {"task": task.wire()},
                                           self.settings.control_timeout_s)
            except RecorderUnreachable as exc:
                # Taken but not running the task: it must not linger as the task's pod.
                event(log, "standby claim failed: cold path", logging.WARNING,
                      task=task.task_id, pod=name, error=str(exc))
                await self.kube.delete_pod(self.namespace, name, grace_s=5)
                return None
            self.tokens.pop(name, None)
            event(log, "standby pod claimed", task=task.task_id, pod=name)
            return taken, token
        return None
