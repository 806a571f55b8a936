"""Runs the operator: kopf with explicit settings, our handlers and the shared runtime."""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

import kopf

from webrecord.api.resource import FINALIZER, GROUP
from webrecord.controller.expiry import Expiry
from webrecord.controller.kube import Kube
from webrecord.controller.recorder_client import RecorderClient
from webrecord.controller.runtime import Runtime
from webrecord.controller.settings import OperatorSettings
from webrecord.controller.standby import StandbyPool
from webrecord.logs import event

log = logging.getLogger(__name__)


def configure(kopf_settings: kopf.OperatorSettings, settings: OperatorSettings) -> None:
    """kopf settings chosen for many short-lived resources, not kopf's small-cluster defaults."""
    s = kopf_settings
    # Progress and diff-base in annotations of our own group; nothing under .status.kopf (the
    # structural schema would prune it anyway).
    s.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    s.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    s.persistence.finalizer = FINALIZER
    # Routine log lines stay logs; phase changes are posted explicitly as Events.
    s.posting.enabled = True
    s.posting.level = logging.WARNING
    # kopf logs every timer run at INFO; with a timer per task that drowns the useful lines.
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    # Watches: server-side timeout so connections are recycled, a client timeout a bit longer.
    s.watching.server_timeout = settings.watch_server_timeout_s
    s.watching.client_timeout = settings.watch_server_timeout_s + 30
    s.watching.connect_timeout = 10
    s.networking.request_timeout = 30
    s.networking.connect_timeout = 10
    s.networking.error_backoffs = [1, 2, 5, 10, 20, 30]
    # With explicit namespaces there is nothing to discover: no watch of all namespaces (which
    # would need a cluster-wide `list namespaces` the chart does not grant) nor of CRDs.
    s.scanning.disabled = bool(settings.namespaces)
    # Handler retries: quick first, then back off; never give up on our own resources.
    s.execution.max_workers = settings.max_workers
    s.batching.worker_limit = None
    s.batching.idle_timeout = 30
    s.batching.batch_window = 0.1
    # Peering: one active replica; the others stand by. Equal priorities would all run, so a
    # random one is taken unless set (kopf's recommended way for replicated Deployments).
    s.peering.name = settings.peering
    s.peering.standalone = settings.standalone
    s.peering.priority = settings.priority if settings.priority is not None else random.randint(1, 1_000_000)
    s.peering.mandatory = not settings.standalone


@kopf.on.startup()
async def _startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    own: OperatorSettings = memo["settings"]
    kube = Kube(max_workers=own.max_workers)
    memo["runtime"] = rt = Runtime(
        settings=own,
        kube=kube,
        recorders=RecorderClient(own.control_timeout_s),
        expiry=Expiry(kube.delete_recording),
    )
    memo["expiry_task"] = asyncio.create_task(rt.expiry.run())
    if own.pool_namespace:
        pool = StandbyPool(own, kube, rt.recorders)
        if own.standby_pods:
            rt.pool = pool
            memo["pool_task"] = asyncio.create_task(pool.run())
        else:
            memo["pool_task"] = asyncio.create_task(_quietly(pool.remove_all()))
    if own.metrics_port is not None:
        from prometheus_client import start_http_server

        from webrecord.metrics import OPERATOR

        memo["metrics_server"], _ = start_http_server(own.metrics_port, registry=OPERATOR)
        event(log, "operator metrics listening", port=memo["metrics_server"].server_port)
    event(log, "operator starting", namespaces=own.namespaces or "all",
          standalone=settings.peering.standalone, peering=settings.peering.name,
          priority=settings.peering.priority)


async def _quietly(job: Any) -> None:
    try:
        await job
    except Exception as exc:  # noqa: BLE001 - leftover standby pods are only a cost
        event(log, "standby pods of an earlier pool not removed", logging.WARNING,
              error=f"{exc.__class__.__name__}: {exc}")


@kopf.on.cleanup()
async def _cleanup(memo: kopf.Memo, **_: Any) -> None:
    for name in ("expiry_task", "pool_task"):
        running: asyncio.Task | None = memo.get(name)
        if running is not None:
            running.cancel()
    metrics_server = memo.get("metrics_server")
    if metrics_server is not None:
        metrics_server.shutdown()
        metrics_server.server_close()
    rt: Runtime | None = memo.get("runtime")
    if rt is not None:
        await rt.recorders.close()
        rt.kube.close()


def run(settings: OperatorSettings, stop_flag: asyncio.Event | None = None,
        ready_flag: Any = None) -> None:
    """Blocks until stopped (signal or `stop_flag`)."""
    import webrecord.controller.handlers  # noqa: F401 - registers the handlers

    memo = kopf.Memo(settings=settings)
    kopf_settings = kopf.OperatorSettings()
    configure(kopf_settings, settings)
    kwargs: dict[str, Any] = {
        "settings": kopf_settings,
        "memo": memo,
        "stop_flag": stop_flag,
        "ready_flag": ready_flag,
    }
    if settings.namespaces:
        kwargs["namespaces"] = settings.namespaces
    else:
        kwargs["clusterwide"] = True
    if settings.liveness_port:
        kwargs["liveness_endpoint"] = f"http://0.0.0.0:{settings.liveness_port}/healthz"
    asyncio.run(kopf.operator(**kwargs))
