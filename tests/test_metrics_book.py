"""webrecord.metrics.RecordingBook: status changes become counts; a task first seen mid-way (a
restarted adapter or operator) is a baseline, never counted again; callback failures are
recognised wherever the delivery stage or the operator wrote them."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from webrecord.api.models import ErrorCode, Phase, RecorderStatus, Result, VideoFile
from webrecord.metrics import RecordingBook, RecordingMetrics


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def _status(phase: Phase, **extra: object) -> RecorderStatus:
    return RecorderStatus(task_id="wr-1", status=phase, create_time=100, **extra)


def test_transitions_are_counted_once_and_baselines_are_not() -> None:
    registry = CollectorRegistry()
    book = RecordingBook(RecordingMetrics(registry))
    book.observe("a", _status(Phase.NORMAL), True)
    book.observe("a", _status(Phase.RECORDING, start_time=103), True)
    book.observe("a", _status(Phase.RECORDING, start_time=103, restarts=1), True)
    assert dict(book.by_phase()) == {"recording": 1}
    video = VideoFile(filename="v.mp4", file_size=500, file_duration=2.0, file_url="file:///v")
    book.observe("a", _status(Phase.FINISHED, start_time=103, restarts=1,
                              result=Result(videos=[video])), True)
    # A task already finished when first seen (a restart): nothing counted.
    book.observe("b", _status(Phase.FINISHED, result=Result(error_code=ErrorCode.TIMEOUT)), True)
    # First seen recording, then finished with a failed callback noted by the operator.
    book.observe("c", _status(Phase.RECORDING, start_time=101), True)
    book.observe("c", _status(Phase.FINISHED, start_time=101, message="lost; callback failed "
                              "after 3 attempt(s): refused",
                              result=Result(error_code=ErrorCode.RECORDER_LOST)), True)
    assert dict(book.by_phase()) == {}
    assert _value(registry, "webrecord_recordings_finished_total", error_code="ok") == 1
    assert _value(registry, "webrecord_recordings_finished_total", error_code="Timeout") == 0
    assert _value(registry, "webrecord_recordings_finished_total", error_code="RecorderLost") == 1
    assert _value(registry, "webrecord_start_latency_seconds_count") == 1  # c started unseen
    assert _value(registry, "webrecord_start_latency_seconds_sum") == 3
    assert _value(registry, "webrecord_recorder_restarts_total") == 1
    assert _value(registry, "webrecord_delivered_bytes_total") == 500
    assert _value(registry, "webrecord_callbacks_total", outcome="ok") == 1
    assert _value(registry, "webrecord_callbacks_total", outcome="failed") == 1


def test_a_task_forgotten_is_a_baseline_again() -> None:
    registry = CollectorRegistry()
    book = RecordingBook(RecordingMetrics(registry))
    book.observe("a", _status(Phase.RECORDING), False)
    book.forget("a")
    book.observe("a", _status(Phase.FINISHED), False)
    assert _value(registry, "webrecord_recordings_finished_total", error_code="ok") == 0
