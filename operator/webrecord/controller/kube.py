"""The few Kubernetes API calls the handlers make, as coroutines.

kopf does the watching and the patching of our own resources; pods and secrets are created and
read with the official client, through `webrecord.kubeclient` (a bounded thread pool, so that
1,000 WebRecordings created at once do not start 1,000 threads).
"""

from __future__ import annotations

import base64
import json
from typing import Any, Callable

import kubernetes
from kubernetes.client.rest import ApiException

from webrecord.kubeclient import KubeClient


class Kube(KubeClient):
    def __init__(self, max_workers: int = 16) -> None:
        super().__init__(max_workers, thread_name_prefix="kube")

    async def _call_json(self, absent: tuple[int, ...], fn: Callable[..., Any], *args: Any,
                         **kwargs: Any) -> dict[str, Any] | None:
        """`fn`'s answer, parsed; None when the API answers one of the `absent` statuses (gone,
        already there: handlers may run twice)."""
        try:
            resp = await self.call(fn, *args, _preload_content=False, **kwargs)
        except ApiException as exc:
            if exc.status in absent:
                return None
            raise
        return json.loads(resp.data)

    async def create(self, manifest: dict[str, Any]) -> dict[str, Any] | None:
        """Create a Pod or Secret and return it; None when it already exists."""
        fn = {
            "Pod": self.core.create_namespaced_pod,
            "Secret": self.core.create_namespaced_secret,
        }[manifest["kind"]]
        return await self._call_json((409,), fn, manifest["metadata"]["namespace"], manifest)

    async def read_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._call_json((404,), self.core.read_namespaced_pod, name, namespace)

    async def read_config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._call_json((404,), self.core.read_namespaced_config_map, name, namespace)

    async def list_pods(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        found = await self._call_json((), self.core.list_namespaced_pod, namespace,
                                      label_selector=label_selector)
        return (found or {}).get("items") or []

    async def patch_pod(self, namespace: str, name: str,
                        ops: list[dict[str, Any]]) -> dict[str, Any] | None:
        """JSON patch (RFC 6902) of a pod; None when it is gone (404) or a `test` op failed
        (409/422: it changed since it was read)."""
        return await self._call_json((404, 409, 422), self.core.patch_namespaced_pod, name,
                                     namespace, ops, _content_type="application/json-patch+json")

    async def read_secret_data(self, namespace: str, name: str) -> dict[str, str] | None:
        secret = await self._call_json((404,), self.core.read_namespaced_secret, name, namespace)
        if secret is None:
            return None
        data = secret.get("data") or {}
        return {k: base64.b64decode(v).decode() for k, v in data.items()}

    async def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        """JSON merge patch of a WebRecording's status subresource."""
        from webrecord.api.resource import GROUP, PLURAL, VERSION

        await self.call(
            self.custom.patch_namespaced_custom_object_status, GROUP, VERSION, namespace, PLURAL,
            name, {"status": status}, _preload_content=False,
        )

    async def delete_pod(self, namespace: str, name: str, grace_s: int = 30) -> None:
        await self._call_json((404,), self.core.delete_namespaced_pod, name, namespace,
                              grace_period_seconds=grace_s)

    async def delete_secret(self, namespace: str, name: str) -> None:
        await self._call_json((404,), self.core.delete_namespaced_secret, name, namespace)

    async def delete_recording(self, namespace: str, name: str, uid: str) -> None:
        """Delete a WebRecording, only the one with this uid (not a new one of the same name)."""
        from webrecord.api.resource import GROUP, PLURAL, VERSION

        body = kubernetes.client.V1DeleteOptions(
            preconditions=kubernetes.client.V1Preconditions(uid=uid),
            propagation_policy="Background")
        # 404: gone; 409: another object of that name by now.
        await self._call_json((404, 409), self.custom.delete_namespaced_custom_object, GROUP,
                              VERSION, namespace, PLURAL, name, body=body)
