"""HTTP client of a recorder's control endpoint (docs/contracts.md section 1)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiohttp

from webrecord.api.models import Action, RecorderStatus


class RecorderUnreachable(Exception):
    """No answer (connection refused, timeout) or an unexpected reply."""


@dataclass
class ControlReply:
    status: RecorderStatus | None  # None when the action was refused
    error: str | None = None  # the recorder's errorMessage for a 409


class RecorderClient:
    def __init__(self, timeout_s: float) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # Many recorders, few requests each: a modest pool, no keep-alive surprises.
            connector = aiohttp.TCPConnector(limit=64, force_close=False)
            self._session = aiohttp.ClientSession(timeout=self._timeout, connector=connector)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    @staticmethod
    def _headers(token: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"} if token else {}

    async def _status_reply(self, method: str, base: str, path: str, token: str | None,
                            **kwargs: object) -> RecorderStatus:
        """A route that answers 200 with a RecorderStatus; anything else raises."""
        try:
            async with self._http().request(method, f"{base}{path}",
                                            headers=self._headers(token), **kwargs) as resp:
                body = await resp.text()
                if resp.status != 200:
                    raise RecorderUnreachable(f"{method} {path} answered HTTP {resp.status}: {body[:200]}")
                return RecorderStatus.model_validate_json(body)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise RecorderUnreachable(f"{method} {base}{path}: {exc.__class__.__name__}: {exc}") from exc
        except ValueError as exc:
            raise RecorderUnreachable(f"{method} {base}{path}: unreadable status: {exc}") from exc

    async def status(self, base: str, token: str | None) -> RecorderStatus:
        return await self._status_reply("GET", base, "/status", token)

    async def claim(self, base: str, token: str | None, body: dict[str, object],
                    timeout_s: float) -> RecorderStatus:
        """POST /claim to a standby recorder: its task's status once the task runs. Any other
        answer (400, 409 AlreadyClaimed, 503 SlotUnusable) raises RecorderUnreachable."""
        return await self._status_reply("POST", base, "/claim", token, json=body,
                                        timeout=aiohttp.ClientTimeout(total=timeout_s))

    async def set_live(self, base: str, token: str | None, live: list[dict[str, Any]]) -> str | None:
        """PUT /live: the recorder's live receivers become `live`; the recorder's refusal
        (a task no longer active, a URL it refuses) or None."""
        try:
            async with self._http().put(f"{base}/live", json={"live": live},
                                        headers=self._headers(token)) as resp:
                body = await resp.text()
                if resp.status == 200:
                    return None
                if resp.status in (400, 409):
                    try:
                        return str(json.loads(body).get("errorMessage", body))
                    except (ValueError, AttributeError):
                        return body[:500]
                raise RecorderUnreachable(f"PUT /live answered HTTP {resp.status}: {body[:200]}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise RecorderUnreachable(f"PUT {base}/live: {exc.__class__.__name__}: {exc}") from exc

    async def control(
        self, base: str, token: str | None, action: Action, seq: int | None
    ) -> ControlReply:
        payload: dict[str, object] = {"action": action.value}
        if seq is not None:
            payload["seq"] = seq
        try:
            async with self._http().post(
                f"{base}/control", json=payload, headers=self._headers(token)
            ) as resp:
                body = await resp.text()
                if resp.status == 200:
                    return ControlReply(RecorderStatus.model_validate_json(body))
                if resp.status == 409:
                    try:
                        message = str(json.loads(body).get("errorMessage", body))
                    except (ValueError, AttributeError):
                        message = body[:500]
                    return ControlReply(None, message)
                raise RecorderUnreachable(f"POST /control answered HTTP {resp.status}: {body[:200]}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise RecorderUnreachable(f"POST {base}/control: {exc.__class__.__name__}: {exc}") from exc
