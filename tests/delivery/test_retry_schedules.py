"""The documented retry schedules (delivery/README.md) as the retry library computes them."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

from tenacity import RetryCallState

from webrecord.api.models import Phase
from webrecord.delivery.callback import _retry_schedule
from webrecord.delivery.pipeline import LocalVideo, deliver
from webrecord.delivery.settings import DeliverySettings

from .conftest import fast_settings, free_port, write_random
from .test_delivery_pipeline import make_status, make_task


def _wait_after(retrying, attempt: int) -> float:
    state = RetryCallState(retrying, fn=None, args=(), kwargs={})
    state.attempt_number = attempt
    return retrying.wait(state)


def test_callback_waits_double_with_jitter_up_to_the_cap() -> None:
    """Tries 5, backoff 0.5 s doubling with jitter, capped at 8 s: the wait after try n lies in
    [base/2, base] with base = min(8, 0.5 * 2**(n-1)), and it varies."""
    retrying = _retry_schedule(DeliverySettings(callback_backoff_s=0.5, callback_backoff_max_s=8))
    for attempt in range(1, 9):
        base = min(8.0, 0.5 * 2 ** (attempt - 1))
        waits = [_wait_after(retrying, attempt) for _ in range(200)]
        assert all(base / 2 <= w <= base for w in waits), (attempt, min(waits), max(waits))
        assert max(waits) - min(waits) > base / 10  # jittered, not fixed
    stop_state = RetryCallState(retrying, fn=None, args=(), kwargs={})
    stop_state.attempt_number = 5
    assert retrying.stop(stop_state)
    stop_state.attempt_number = 4
    assert not retrying.stop(stop_state)


def test_upload_gives_up_when_the_next_try_would_pass_the_retry_window(tmp_path: Path,
                                                                       bucket: str) -> None:
    """An endpoint nobody listens on: tries with waits 0.5, 1, ... until the next would start
    after WEBRECORD_DELIVERY_RETRY_S; the message counts the tries."""
    video = write_random(tmp_path / "v.mp4", 64 * 1024)
    settings = fast_settings(s3_endpoint_url=f"http://127.0.0.1:{free_port()}", s3_max_attempts=1,
                             delivery_retry_s=2.0, delivery_backoff_s=0.5,
                             delivery_backoff_max_s=0.5)

    async def on_phase(_: Phase) -> None:
        pass

    began = time.monotonic()
    task = make_task(output={"cos": {"bucket": bucket, "region": "us-east-1"}})
    result = asyncio.run(deliver(task, [LocalVideo(video, 1.0, "mp4")], make_status(), on_phase,
                                 settings))
    elapsed = time.monotonic() - began
    assert result.error_code is not None and result.error_code.value == "UploadFailed"
    tries = re.search(r"gave up after (\d+) tries in 2 s", result.error_message or "")
    assert tries, result.error_message
    # Waits of 0.5 s (the cap): at least one retry; no wait that would end past the window,
    # so the stage ends within the window plus one (refused, hence short) try.
    assert int(tries.group(1)) >= 2
    assert 0.5 <= elapsed < 2.0 + 2 * settings.s3_connect_timeout_s
