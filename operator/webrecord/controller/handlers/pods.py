"""Watch of the recorder pods: keeps the runtime's pod cache current (no polling of pods)."""

from __future__ import annotations

from typing import Any

import kopf

from webrecord.api.resource import LABEL_COMPONENT, LABEL_MANAGED_BY, LABEL_TASK
from webrecord.controller.pod import MANAGED_BY
from webrecord.controller.runtime import runtime


@kopf.on.event("", "v1", "pods", labels={LABEL_COMPONENT: "recorder", LABEL_MANAGED_BY: MANAGED_BY})
async def recorder_pod_event(
    type: str | None, body: kopf.Body, namespace: str, memo: kopf.Memo, **_: Any,  # noqa: A002
) -> None:
    task = (body.get("metadata", {}).get("labels") or {}).get(LABEL_TASK)
    if not task:
        return
    rt = runtime(memo)
    if type == "DELETED":
        rt.pod_deleted((namespace, task), body["metadata"]["name"])
    else:
        rt.remember_pod((namespace, task), dict(body))
