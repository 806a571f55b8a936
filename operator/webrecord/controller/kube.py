"""The few Kubernetes API calls the handlers make, as coroutines.

kopf does the watching and the patching of our own resources; pods and secrets are created and
read with the official client, through `webrecord.kubeclient` (a bounded thread pool, so that
1,000 WebRecordings created at once do not start 1,000 threads).
"""

from __future__ import annotations

import base64
from typing import Any

import kubernetes
from kubernetes.client.rest import ApiException

from webrecord.kubeclient import KubeClient


class Kube(KubeClient):
    def __init__(self, max_workers: int = 16) -> None:
        super().__init__(max_workers, thread_name_prefix="kube")

    async def create(self, manifest: dict[str, Any]) -> dict[str, Any] | None:
        """Create a Pod or Secret and return it; None when it already exists (handlers may run
        twice)."""
        ns = manifest["metadata"]["namespace"]
        fn = {
            "Pod": self.core.create_namespaced_pod,
            "Secret": self.core.create_namespaced_secret,
        }[manifest["kind"]]
        try:
            resp = await self.call(fn, ns, manifest, _preload_content=False)
        except ApiException as exc:
            if exc.status == 409:
                return None
            raise
        return _json(resp)

    async def read_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            resp = await self.call(
                self.core.read_namespaced_pod, name, namespace, _preload_content=False
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return _json(resp)

    async def read_secret_data(self, namespace: str, name: str) -> dict[str, str] | None:
        try:
            resp = await self.call(
                self.core.read_namespaced_secret, name, namespace, _preload_content=False
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        data = _json(resp).get("data") or {}
        return {k: base64.b64decode(v).decode() for k, v in data.items()}

    async def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        """JSON merge patch of a WebRecording's status subresource."""
        from webrecord.api.resource import GROUP, PLURAL, VERSION

        await self.call(
            self.custom.patch_namespaced_custom_object_status, GROUP, VERSION, namespace, PLURAL,
            name, {"status": status}, _preload_content=False,
        )

    async def delete_pod(self, namespace: str, name: str, grace_s: int = 30) -> None:
        try:
            await self.call(
                self.core.delete_namespaced_pod, name, namespace,
                grace_period_seconds=grace_s, _preload_content=False,
            )
        except ApiException as exc:
            if exc.status != 404:
                raise

    async def delete_secret(self, namespace: str, name: str) -> None:
        try:
            await self.call(self.core.delete_namespaced_secret, name, namespace,
                             _preload_content=False)
        except ApiException as exc:
            if exc.status != 404:
                raise

    async def delete_recording(self, namespace: str, name: str, uid: str) -> None:
        """Delete a WebRecording, only the one with this uid (not a new one of the same name)."""
        from webrecord.api.resource import GROUP, PLURAL, VERSION

        body = kubernetes.client.V1DeleteOptions(
            preconditions=kubernetes.client.V1Preconditions(uid=uid),
            propagation_policy="Background")
        try:
            await self.call(self.custom.delete_namespaced_custom_object, GROUP, VERSION,
                             namespace, PLURAL, name, body=body, _preload_content=False)
        except ApiException as exc:
            if exc.status not in (404, 409):  # gone, or another object by now
                raise


def _json(resp: Any) -> dict[str, Any]:
    import json

    return json.loads(resp.data)
