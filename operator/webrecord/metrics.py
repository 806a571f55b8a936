"""Prometheus metrics of the adapter, the operator and the recorder: every definition here.

Each component has its own registry, so an endpoint shows only what its process measures:
`ADAPTER` (the adapter's metrics port), `OPERATOR` (the operator's metrics port), `RECORDER` (the
recorder's control endpoint, GET /metrics). Names follow the Prometheus conventions: prefix
`webrecord_`, the unit in the name (`_seconds`, `_bytes`), `_total` on counters.

The recording-level metrics that the adapter (local backend) and the operator both keep come
from `RecordingBook`, which sees each task's status as it changes and counts transitions only
when it saw the task before them: a restarted process takes its first look as the baseline
rather than counting old tasks again.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector
from prometheus_client.core import GaugeMetricFamily

from webrecord.api.models import ErrorCode, Phase, RecorderStatus, Result

ADAPTER = CollectorRegistry()
OPERATOR = CollectorRegistry()
RECORDER = CollectorRegistry()

# Seconds: a start is a browser launch plus a navigation; waits and uploads run longer.
_LATENCY_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300)
_WAIT_BUCKETS = (0.1, 1, 5, 15, 30, 60, 300, 900, 1800, 3600)
_REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

OK = "ok"  # the error_code / outcome label of a success


class RecordingMetrics:
    """What the adapter (local backend) and the operator count about recordings."""

    def __init__(self, registry: CollectorRegistry) -> None:
        counter = partial(Counter, registry=registry)
        self.finished = counter("webrecord_recordings_finished_total",
                                "Recordings that finished, by Result.ErrorCode (ok: none)",
                                ["error_code"])
        self.start_latency = Histogram(
            "webrecord_start_latency_seconds",
            "Task creation to the first recorded frame (whole seconds of the task's times)",
            buckets=_LATENCY_BUCKETS, registry=registry)
        self.delivered_bytes = counter("webrecord_delivered_bytes_total",
                                       "Bytes of the videos finished recordings delivered "
                                       "(their FileSize)")
        self.callbacks = counter("webrecord_callbacks_total",
                                 "Callbacks of finished recordings with a CallbackURL, by "
                                 "outcome (ok, failed)", ["outcome"])
        self.restarts = counter("webrecord_recorder_restarts_total",
                                "Recorders replaced after they were lost (process or pod)")


ADAPTER_RECORDINGS = RecordingMetrics(ADAPTER)
OPERATOR_RECORDINGS = RecordingMetrics(OPERATOR)

# ------------------------------------------------------------------ adapter

ADAPTER_REQUESTS = Counter(
    "webrecord_adapter_requests_total",
    "Requests answered, by Action (or path) and ErrorCode (ok: success)",
    ["action", "code"], registry=ADAPTER)
ADAPTER_REQUEST_SECONDS = Histogram(
    "webrecord_adapter_request_duration_seconds", "Time to answer a request, by Action",
    ["action"], buckets=_REQUEST_BUCKETS, registry=ADAPTER)
ADAPTER_IN_FLIGHT = Gauge(
    "webrecord_adapter_requests_in_flight", "Requests being handled now", registry=ADAPTER)
QUEUE_WAIT = Histogram(
    "webrecord_queue_wait_seconds",
    "Local backend: time a task waited queued for a free recorder slot",
    buckets=_WAIT_BUCKETS, registry=ADAPTER)

# ------------------------------------------------------------------ operator

OPERATOR_QUEUE_WAIT = Histogram(
    "webrecord_queue_wait_seconds",
    "Operator: a WebRecording's creation to its recorder pod's creation (waits for a slot "
    "under operator.maxConcurrent included)", buckets=_WAIT_BUCKETS, registry=OPERATOR)
OPERATOR_CALLBACKS_SENT = Counter(
    "webrecord_operator_callbacks_total",
    "Callbacks the operator sent itself (tasks it ended: pod lost, time limit), by outcome",
    ["outcome"], registry=OPERATOR)

# ------------------------------------------------------------------ recorder

UPLOAD_BYTES = Counter(
    "webrecord_upload_bytes_total",
    "Bytes of the packaged videos the upload stage sent (counted when it ends; whether the "
    "targets took them: webrecord_recordings_finished_total's error_code)",
    registry=RECORDER)
UPLOAD_SECONDS = Counter(
    "webrecord_upload_seconds_total", "Time spent in the upload phase", registry=RECORDER)
RECORDER_CALLBACKS = Counter(
    "webrecord_callbacks_total", "Callbacks this recorder sent, by outcome (ok, failed)",
    ["outcome"], registry=RECORDER)
FRAMES = Counter(
    "webrecord_recorder_frames_total",
    "Video frames ffmpeg encoded (its progress report), including repeated ones",
    registry=RECORDER)
REPEATED_FRAMES = Counter(
    "webrecord_recorder_repeated_frames_total",
    "Frames ffmpeg repeated to keep the frame rate (dup_frames); 0 since frames keep their "
    "grab slots (recorder/frameclock): a late grab leaves a gap instead", registry=RECORDER)
DROPPED_FRAMES = Counter(
    "webrecord_recorder_dropped_frames_total",
    "Frames ffmpeg dropped (drop_frames); 0 since frames keep their grab slots "
    "(recorder/frameclock)", registry=RECORDER)
ENCODER_SPEED = Gauge(
    "webrecord_recorder_encoder_speed_ratio",
    "ffmpeg's speed (media time per wall time; below 1: the encoder falls behind)",
    registry=RECORDER)


def callback_outcome(result: Result, note: str | None = None) -> str:
    """ok, or failed: CallbackFailed, or a callback failure noted after an earlier error (the
    first ErrorCode stays; delivery appends "callback to URL failed after N tries" to the
    result's message, the operator "callback failed after N attempt(s)" to the status's
    message, `note`)."""
    failed = result.error_code == ErrorCode.CALLBACK_FAILED or any(
        "callback" in text and " failed after " in text
        for text in (result.error_message or "", note or ""))
    return "failed" if failed else OK


class SessionGauges(Collector):
    """A recorder's own state at scrape time: its status, recorded seconds, segments."""

    def __init__(self, live_status: Callable[[], RecorderStatus | None]) -> None:
        self.live_status = live_status

    def collect(self) -> Iterable[GaugeMetricFamily]:
        status = self.live_status()
        if status is None:  # a standby recorder without a task yet
            return
        phase = GaugeMetricFamily("webrecord_recorder_status",
                                  "1 for this recorder's current status", labels=["status"])
        for value in Phase:
            phase.add_metric([value.value], 1 if status.status is value else 0)
        yield phase
        yield GaugeMetricFamily("webrecord_recorder_recorded_seconds",
                                "Recorded (not paused) time so far", value=status.recorded_seconds)
        yield GaugeMetricFamily("webrecord_recorder_segments",
                                "Segments closed or in progress", value=status.segments)


QUEUED_NOTE = "queued:"  # how a task waiting for a slot begins its status message


@dataclass
class _Seen:
    phase: Phase
    restarts: int
    started: bool
    queued: bool


class RecordingBook:
    """Per-task last seen status; turns status changes into the RecordingMetrics."""

    def __init__(self, metrics: RecordingMetrics) -> None:
        self.metrics = metrics
        self._seen: dict[str, _Seen] = {}

    def observe(self, key: str, status: RecorderStatus, has_callback: bool) -> None:
        before = self._seen.get(key)
        if status.status is Phase.FINISHED:
            self._seen.pop(key, None)
        else:
            self._seen[key] = _Seen(status.status, status.restarts, status.start_time is not None,
                                    (status.message or "").startswith(QUEUED_NOTE))
        if before is None:
            return  # first look (a restart of this process): the baseline, nothing counted
        m = self.metrics
        if status.restarts > before.restarts:
            m.restarts.inc(status.restarts - before.restarts)
        if status.start_time is not None and not before.started and status.create_time:
            m.start_latency.observe(max(0, status.start_time - status.create_time))
        if status.status is Phase.FINISHED:
            code = status.result.error_code
            m.finished.labels(code.value if code else OK).inc()
            m.delivered_bytes.inc(sum(v.file_size or 0 for v in status.result.videos))
            if has_callback:
                m.callbacks.labels(callback_outcome(status.result, status.message)).inc()

    def forget(self, key: str) -> None:
        self._seen.pop(key, None)

    def by_phase(self) -> Tally[str]:
        return Tally(seen.phase.value for seen in self._seen.values())

    def queued(self) -> int:
        return sum(seen.queued for seen in self._seen.values())


class PhaseGauge(Collector):
    """`webrecord_recordings{status}`: tasks in each status now (not finished), read at scrape
    time from `count()` (a store query or a RecordingBook)."""

    def __init__(self, count: Callable[[], Iterable[tuple[str, int]]]) -> None:
        self.count = count

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily("webrecord_recordings", "Recordings in each status now "
                                   "(finished ones are counted by "
                                   "webrecord_recordings_finished_total)", labels=["status"])
        counts = dict(self.count())
        for phase in Phase:
            if phase is not Phase.FINISHED:
                family.add_metric([phase.value], counts.get(phase.value, 0))
        yield family


class FunctionGauge(Collector):
    """A gauge without labels whose value `read()` gives at scrape time."""

    def __init__(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        self.name, self.documentation, self.read = name, documentation, read

    def collect(self) -> Iterable[GaugeMetricFamily]:
        yield GaugeMetricFamily(self.name, self.documentation, value=self.read())


class Chain(Collector):
    """Everything another registry holds (the process-wide counters in a per-app registry)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterable:
        return self.registry.collect()


OPERATOR_BOOK = RecordingBook(OPERATOR_RECORDINGS)  # fed by the operator's watch events
OPERATOR.register(PhaseGauge(lambda: OPERATOR_BOOK.by_phase().items()))
OPERATOR.register(FunctionGauge("webrecord_queue_length",
                                "WebRecordings waiting for a recorder slot (operator.maxConcurrent)",
                                OPERATOR_BOOK.queued))


def exposition(registry: CollectorRegistry) -> web.Response:
    response = web.Response(body=generate_latest(registry))
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response


def handler(registry: CollectorRegistry) -> Callable[[web.Request], web.Response]:
    """An aiohttp GET handler serving `registry` in the text exposition format."""

    async def metrics(_request: web.Request) -> web.Response:
        return exposition(registry)

    return metrics  # type: ignore[return-value]
