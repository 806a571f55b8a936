"""The one Kubernetes client setup and the thread-pool call wrapper, shared by the operator
(`webrecord.controller.kube`) and the adapter's kubernetes backend.

The official client is synchronous: calls run in a bounded thread pool so that 1,000 tasks at
once do not start 1,000 threads, with an HTTP connection pool of the same size.
"""

from __future__ import annotations

import asyncio
import functools
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, TypeVar

import kubernetes

T = TypeVar("T")


def load_config(kubeconfig: Path | str | None = None) -> kubernetes.client.Configuration:
    """`kubeconfig` when given; else the in-cluster service account when running in a pod
    (and KUBECONFIG is unset); else the default kubeconfig (KUBECONFIG or ~/.kube/config)."""
    config = kubernetes.client.Configuration()
    if kubeconfig:
        kubernetes.config.load_kube_config(str(kubeconfig), client_configuration=config)
    elif os.environ.get("KUBERNETES_SERVICE_HOST") and not os.environ.get("KUBECONFIG"):
        kubernetes.config.load_incluster_config(client_configuration=config)
    else:
        kubernetes.config.load_kube_config(client_configuration=config)
    return config


class KubeClient:
    """An ApiClient with CoreV1Api and CustomObjectsApi, and `call()` to run one of their
    methods in the pool."""

    def __init__(self, max_workers: int, thread_name_prefix: str = "kube",
                 kubeconfig: Path | str | None = None) -> None:
        config = load_config(kubeconfig)
        config.connection_pool_maxsize = max_workers
        self.api_client = kubernetes.client.ApiClient(config)
        self.core = kubernetes.client.CoreV1Api(self.api_client)
        self.custom = kubernetes.client.CustomObjectsApi(self.api_client)
        self._pool = ThreadPoolExecutor(max_workers=max_workers,
                                        thread_name_prefix=thread_name_prefix)

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`fn(*args, **kwargs)` in the pool; raises what it raises (ApiException, OSError)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.api_client.close()
