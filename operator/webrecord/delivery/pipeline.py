"""The delivery stage: put the finished videos where the task asked, then tell the caller.

`deliver()` is what the recorder calls after stop and packaging (docs/contracts.md section 2).
Targets, from the task:
  - Output.Cos (bucket set): S3-compatible upload, FileURL from Domain or the bucket endpoint;
  - Output.Vod: VOD apply-upload / commit-upload, FileId (and FileURL when no Cos);
  - neither: atomic copy into WEBRECORD_OUTPUT_DIR (the cfs case), or, without it, the local
    files are reported as they are (file:// URLs).
Expected faults never raise: they become Result.ErrorCode/ErrorMessage, and the local files stay
where they are (the message says where) so `webrecord deliver` can retry. A small manifest
(`delivery.json` beside the first video) remembers what already reached each target, so a retry
only redoes what failed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_result,
    stop_before_delay,
    wait_exponential,
)

from webrecord.api.models import (
    ErrorCode,
    Phase,
    RecorderStatus,
    RecordingTask,
    Result,
    SnapshotFile,
    VideoFile,
)
from webrecord.api.protocol import describe_body
from webrecord.delivery import images
from webrecord.delivery.callback import send_callback
from webrecord.api.names import relative_path_problem
from webrecord.files import PathEscape, contained, write_atomic
from webrecord.logs import event
from webrecord.storage.filesystem import DiskFullError, atomic_copy, atomic_copy_tree
from webrecord.storage.s3 import Bucket, StorageError
from webrecord.storage.video import LocalVideo, hls_files
from webrecord.delivery.settings import DeliverySettings

log = logging.getLogger(__name__)

MANIFEST_NAME = "delivery.json"
# Codes this stage sets; `webrecord deliver` clears them from the status before a retry.
DELIVERY_CODES = {ErrorCode.UPLOAD_FAILED, ErrorCode.VOD_FAILED, ErrorCode.CALLBACK_FAILED,
                  ErrorCode.DISK_FULL}


class DeliveryFailure(Exception):
    """An expected fault of one target, already worded for Result.ErrorMessage."""

    def __init__(self, code: ErrorCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class _Plan:
    """What one video becomes: its names and what each target said about it."""

    video: LocalVideo
    stem: str  # TargetName (plus a suffix for the 2nd, 3rd... video)
    file_url: str | None = None
    file_id: str | None = None
    errors: list[DeliveryFailure] = field(default_factory=list)
    image_urls: images.Urls = field(default_factory=dict)  # snapshots and poster (extension)


# ---------------------------------------------------------------- naming


def target_dir(task: RecordingTask) -> str:
    cos = task.spec.output.cos
    value = (cos.target_dir if cos else None) or task.task_id
    return value.strip("/")


def target_name(task: RecordingTask, status: RecorderStatus) -> str:
    cos = task.spec.output.cos
    if cos and cos.target_name:
        return cos.target_name
    return str(status.stop_time or int(time.time()))


def named_by_caller(task: RecordingTask) -> bool:
    cos = task.spec.output.cos
    return bool(cos and cos.target_name)


def object_key(*parts: str) -> str:
    """`a/b/c` from caller-chosen parts, refused (DeliveryFailure) when it would climb out of
    its prefix: the models refuse such names already; this guards the key itself."""
    key = "/".join(p for p in parts if p)
    problem = relative_path_problem(key)
    if problem:
        raise DeliveryFailure(ErrorCode.UPLOAD_FAILED, f"object key {key[:80]!r} {problem}")
    return key


def _extension(video: LocalVideo) -> str:
    return ".m3u8" if video.muxer == "hls" else (video.path.suffix or ".mp4")


def _video_size(video: LocalVideo) -> int:
    size = video.path.stat().st_size
    if video.muxer == "hls":
        size += sum(p.stat().st_size for p in hls_files(video.path).values())
    return size


# ---------------------------------------------------------------- manifest (retry memory)


def _manifest_path(videos: list[LocalVideo]) -> Path | None:
    return videos[0].path.parent / MANIFEST_NAME if videos else None


def _load_manifest(path: Path | None, task_id: str) -> dict[str, Any]:
    if path is None or not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if data.get("taskId") == task_id else {}


def _save_manifest(path: Path | None, data: dict[str, Any]) -> None:
    if path is None:
        return
    try:
        write_atomic(path, json.dumps(data, indent=1))
    except OSError as exc:  # a full disk must not turn a good delivery into a failure
        event(log, "cannot write delivery manifest", logging.WARNING, path=str(path),
              error=str(exc))


# ---------------------------------------------------------------- targets


def _to_cos(task: RecordingTask, plans: list[_Plan], settings: DeliverySettings,
            done: dict[str, Any]) -> None:
    cos = task.spec.output.cos
    assert cos is not None and cos.bucket
    try:
        bucket = Bucket.for_output(cos.bucket, cos.region, settings, domain=cos.domain)
    except (ValueError, OSError) as exc:  # unreadable credentials file and the like
        for plan in plans:
            plan.errors.append(DeliveryFailure(ErrorCode.UPLOAD_FAILED, str(exc)))
        return
    prefix = target_dir(task)
    for plan in plans:
        try:
            key = object_key(prefix, f"{plan.stem}{_extension(plan.video)}")
        except DeliveryFailure as failure:
            plan.errors.append(failure)
            continue
        mark = f"cos:{cos.bucket}:{key}"
        try:
            if mark not in done:
                key = _free_key(bucket, task, prefix, plan, key)
                mark = f"cos:{cos.bucket}:{key}"
            if mark not in done:
                if plan.video.muxer == "hls":
                    parts = {object_key(prefix, rel): path
                             for rel, path in hls_files(plan.video.path).items()}
                    bucket.upload_many(parts, last=(key, plan.video.path), owner=task.task_id)
                else:
                    bucket.upload_file(plan.video.path, key, owner=task.task_id)
                done[mark] = bucket.file_url(key)
            plan.file_url = done[mark]
            # Beside the video: the images' names follow the name the video got above.
            images.to_bucket(bucket, lambda name: object_key(prefix, name), plan.stem,
                             plan.video, task.task_id, done, plan.image_urls)
        except DeliveryFailure as failure:
            plan.errors.append(failure)
        except StorageError as exc:
            plan.errors.append(DeliveryFailure(ErrorCode.UPLOAD_FAILED, str(exc)))


def _free_key(bucket: Bucket, task: RecordingTask, prefix: str, plan: _Plan, key: str) -> str:
    """`key`, unless another task's object holds it: then refused for a name the caller chose,
    or made ours with `_<task id>` for a default name. (A check, then the upload: two tasks
    finishing in the same instant with the same explicit name can still race.)"""
    owner = bucket.owner_of(key)
    if owner is None or owner == task.task_id:
        return key
    if named_by_caller(task):
        raise DeliveryFailure(
            ErrorCode.UPLOAD_FAILED,
            f"s3://{bucket.name}/{key} exists and holds another recording (not overwritten; "
            "choose another TargetName)")
    plan.stem = f"{plan.stem}_{task.task_id}"
    return object_key(prefix, f"{plan.stem}{_extension(plan.video)}")


def _to_filesystem(task: RecordingTask, plans: list[_Plan], settings: DeliverySettings,
                   done: dict[str, Any]) -> None:
    assert settings.output_dir is not None
    root = settings.output_dir
    sub = target_dir(task)
    for plan in plans:
        try:
            try:
                final, mark = _copy_to(root, sub, plan, done)
            except FileExistsError:
                if named_by_caller(task):
                    raise
                plan.stem = f"{plan.stem}_{task.task_id}"  # a default name taken: make it ours
                final, mark = _copy_to(root, sub, plan, done)
            plan.file_url = done[mark] = _fs_url(settings, final)
            images.to_dir(final.parent, root, lambda p: _fs_url(settings, p), plan.stem,
                          plan.video, done, plan.image_urls)
        except PathEscape as exc:
            plan.errors.append(DeliveryFailure(
                ErrorCode.UPLOAD_FAILED, f"copy to {root} refused: {exc}"))
            continue
        except DiskFullError as exc:
            plan.errors.append(DeliveryFailure(
                ErrorCode.DISK_FULL, f"copy to {root} failed: {exc.strerror}"))
            continue
        except FileExistsError as exc:
            plan.errors.append(DeliveryFailure(
                ErrorCode.UPLOAD_FAILED,
                f"copy to {root} refused: {exc.filename} exists and holds another recording "
                "(not overwritten; choose another TargetName)"))
            continue
        except OSError as exc:
            plan.errors.append(DeliveryFailure(
                ErrorCode.UPLOAD_FAILED,
                f"copy to {root} failed: {exc.strerror or exc} ({exc.__class__.__name__})"))


def published_url(root: Path, url_base: str | None, final: Path) -> str:
    """The URL of a file published under `root`: under `url_base` (WEBRECORD_OUTPUT_URL_BASE,
    which serves `root`), or its file:// URI."""
    if url_base:
        rel = final.resolve().relative_to(root.resolve()).as_posix()
        return f"{url_base.rstrip('/')}/{rel}"
    return final.resolve().as_uri()


def _fs_url(settings: DeliverySettings, final: Path) -> str:
    assert settings.output_dir is not None
    return published_url(settings.output_dir, settings.output_url_base, final)


def _images_without_target(task: RecordingTask, plans: list[_Plan],
                           settings: DeliverySettings, done: dict[str, Any]) -> None:
    """VOD takes the video, not images: they go where a task without targets puts its files."""
    for plan in plans:
        if not plan.video.images:
            continue
        if settings.output_dir is None:
            images.as_they_are(plan.video, plan.image_urls)
            continue
        root = settings.output_dir
        try:
            images.to_dir(contained(root, target_dir(task)), root,
                          lambda p: _fs_url(settings, p), plan.stem, plan.video, done,
                          plan.image_urls)
        except (PathEscape, OSError) as exc:
            code = ErrorCode.DISK_FULL if isinstance(exc, DiskFullError) else ErrorCode.UPLOAD_FAILED
            plan.errors.append(DeliveryFailure(code, f"copy of snapshots to {root} failed: {exc}"))


def _copy_to(root: Path, sub: str, plan: _Plan, done: dict[str, Any]) -> tuple[Path, str]:
    """Publish one video under root/sub without overwriting another task's files."""
    if plan.video.muxer == "hls":
        final_dir = contained(root, sub, plan.stem)
        playlist = f"{plan.stem}.m3u8"
        files = dict(hls_files(plan.video.path))
        files[playlist] = plan.video.path
        mark = f"fs:{final_dir}"
        if mark not in done:
            atomic_copy_tree(files, final_dir, root=root, replace=False, marker=playlist)
        return final_dir / playlist, mark
    final = contained(root, sub, f"{plan.stem}{_extension(plan.video)}")
    mark = f"fs:{final}"
    if mark not in done:
        atomic_copy(plan.video.path, final, root=root, replace=False)
    return final, mark


def _to_vod(task: RecordingTask, plans: list[_Plan], settings: DeliverySettings,
            done: dict[str, Any]) -> None:
    from webrecord.storage.vod import VodError, upload_to_vod  # noqa: PLC0415 - optional path

    vod = task.spec.output.vod
    assert vod is not None
    for plan in plans:
        mark = f"vod:{plan.video.path.name}"
        if mark in done:
            plan.file_id = done[mark]["fileId"]
            plan.file_url = plan.file_url or done[mark].get("mediaUrl")
            continue
        try:
            media = upload_to_vod(plan.video, vod, settings, media_name=plan.stem)
        except VodError as exc:
            plan.errors.append(DeliveryFailure(ErrorCode.VOD_FAILED, str(exc)))
            continue
        plan.file_id = media.file_id
        plan.file_url = plan.file_url or media.media_url
        done[mark] = {"fileId": media.file_id, "mediaUrl": media.media_url}


def _upload(task: RecordingTask, videos: list[LocalVideo], status: RecorderStatus,
            settings: DeliverySettings, done: dict[str, Any]) -> list[_Plan]:
    """Blocking part (boto3, file copies): runs in a worker thread."""
    name = target_name(task, status)
    plans = [_Plan(v, name if i == 0 else f"{name}_{i}") for i, v in enumerate(videos)]
    missing = [p for p in plans if not p.video.path.is_file()]
    for plan in missing:
        plan.errors.append(DeliveryFailure(
            ErrorCode.UPLOAD_FAILED, f"local file {plan.video.path} is missing"))
    present = [p for p in plans if p not in missing]
    output = task.spec.output
    if output.cos and output.cos.bucket:
        _to_cos(task, present, settings, done)
    if output.vod is not None:
        _to_vod(task, present, settings, done)
        if not (output.cos and output.cos.bucket):
            _images_without_target(task, present, settings, done)
    if not (output.cos and output.cos.bucket) and output.vod is None:
        if settings.output_dir is not None:
            _to_filesystem(task, present, settings, done)
        else:
            for plan in present:  # local use: the file stays where the recorder wrote it
                plan.file_url = plan.video.path.resolve().as_uri()
                images.as_they_are(plan.video, plan.image_urls)
    return plans


# ---------------------------------------------------------------- the stage


def _failure_result(base: Result, plans: list[_Plan]) -> Result:
    videos: list[VideoFile] = []
    failures: list[tuple[_Plan, DeliveryFailure]] = []
    snapshots: list[SnapshotFile] | None = None  # extension: only for a task that asked
    poster_line: SnapshotFile | None = None
    for plan in plans:
        try:
            size = _video_size(plan.video)
        except OSError:
            size = 0
        videos.append(VideoFile(
            filename=plan.stem + _extension(plan.video),
            file_size=size,
            file_duration=max(0.0, plan.video.duration),
            file_id=plan.file_id,
            file_url=plan.file_url,
        ))
        failures.extend((plan, err) for err in plan.errors)
        shots, poster = images.result_lines(plan.stem, plan.video, plan.image_urls)
        if shots is not None:
            snapshots = [*(snapshots or []), *shots]
        poster_line = poster_line or poster
    result = base.model_copy(deep=True)
    result.videos = videos
    if snapshots is not None or poster_line is not None:
        result.snapshots, result.poster = snapshots, poster_line
    if failures and result.error_code is None:
        first = failures[0][1]
        result.error_code = first.code
        kept = ", ".join(sorted({str(p.video.path) for p, _ in failures}))
        detail = "; ".join(dict.fromkeys(err.message for _, err in failures))
        result.error_message = f"{detail}; local file kept at {kept}"
    return result


# Faults a later try can get past (a target down, a full target disk being cleaned up).
_RETRYABLE = {ErrorCode.UPLOAD_FAILED, ErrorCode.VOD_FAILED, ErrorCode.DISK_FULL}


def _retryable(plans: list["_Plan"]) -> bool:
    """A target failed and every failure is one a later try can get past."""
    errors = [err for plan in plans for err in plan.errors]
    return bool(errors) and all(err.code in _RETRYABLE for err in errors)


def _log_retry(task: RecordingTask) -> Callable[[RetryCallState], None]:
    def before_sleep(state: RetryCallState) -> None:
        plans = state.outcome.result() if state.outcome else []
        errors = [err for plan in plans for err in plan.errors]
        event(log, "delivery failed; retrying", logging.WARNING, task=task.task_id,
              tries=state.attempt_number, wait_s=state.upcoming_sleep,
              error=errors[0].message if errors else None)
    return before_sleep


async def _upload_with_retries(task: RecordingTask, videos: list[LocalVideo],
                               status: RecorderStatus, settings: DeliverySettings,
                               done: dict[str, Any]) -> list["_Plan"]:
    """Upload, and while a target fails, try again with a doubling wait (`delivery_backoff_s`,
    at most `delivery_backoff_max_s`) until the next try would start after `delivery_retry_s`
    (targets that succeeded are remembered in `done` and not redone)."""
    retrying = AsyncRetrying(
        retry=retry_if_result(_retryable),
        wait=wait_exponential(multiplier=settings.delivery_backoff_s, min=0,
                              max=settings.delivery_backoff_max_s),
        stop=stop_before_delay(settings.delivery_retry_s),
        before_sleep=_log_retry(task),
        retry_error_callback=lambda state: _gave_up(state, settings),
    )
    try:
        plans = await retrying(asyncio.to_thread, _upload, task, videos, status, settings, done)
    except Exception as exc:  # noqa: BLE001 - a bug must still end in a Result, not a crash
        log.exception("delivery failed unexpectedly")
        return [_Plan(v, v.path.stem, errors=[DeliveryFailure(
            ErrorCode.INTERNAL, f"delivery failed: {exc.__class__.__name__}: {exc}")])
            for v in videos]
    return plans


def _gave_up(state: RetryCallState, settings: DeliverySettings) -> list["_Plan"]:
    """The last try's plans, their messages saying that the retries ran out."""
    plans: list[_Plan] = state.outcome.result() if state.outcome else []
    for plan in plans:
        for err in plan.errors:
            err.message = (f"{err.message} (gave up after {state.attempt_number} tries in "
                           f"{settings.delivery_retry_s:g} s)")
    return plans


async def deliver(
    task: RecordingTask,
    videos: list[LocalVideo],
    status: RecorderStatus,
    on_phase: Callable[[Phase], Awaitable[None]],
    settings: DeliverySettings | None = None,
) -> Result:
    """Upload `videos`, then POST the callback; returns the final Result (never raises for
    storage, VOD or callback faults). `on_phase` gets UPLOAD, then CALLBACK when the task has
    a CallbackURL. An error already in `status.result` (e.g. EncoderFailed) is kept."""
    settings = settings or DeliverySettings()
    await on_phase(Phase.UPLOAD)
    manifest_path = _manifest_path(videos)
    manifest = _load_manifest(manifest_path, task.task_id)
    done: dict[str, Any] = dict(manifest.get("done", {}))
    started = time.monotonic()
    plans = await _upload_with_retries(task, videos, status, settings, done)
    result = _failure_result(status.result, plans)
    if not videos and result.error_code is None:
        result.error_code = ErrorCode.NOTHING_RECORDED
        result.error_message = "no video to deliver"
    event(log, "upload stage done", task=task.task_id, seconds=round(time.monotonic() - started, 3),
          error_code=result.error_code.value if result.error_code else None)

    manifest = {
        "taskId": task.task_id,
        "status": manifest.get("status") or status.wire(),  # as before the first attempt
        "videos": [{"path": str(v.path), "duration": v.duration, "muxer": v.muxer,
                    **images.manifest_entry(v)} for v in videos],
        "done": done,
        "callbackDone": bool(manifest.get("callbackDone")),
        "result": result.wire(),
    }
    _save_manifest(manifest_path, manifest)

    url = task.spec.callback_url
    if url:
        await on_phase(Phase.CALLBACK)
        if settings.callback_key() is None:
            event(log, "callback is not signed: WEBRECORD_CALLBACK_SECRET unset",
                  logging.WARNING, url=url)
        snapshot = status.model_copy(update={"status": Phase.CALLBACK, "result": result})
        outcome = await send_callback(url, describe_body(snapshot), settings)
        if outcome.ok:
            manifest["callbackDone"] = True
        else:
            text = (f"callback to {url} failed after {outcome.attempts} tries: "
                    f"{outcome.error}")
            if result.error_code is None:
                result.error_code = ErrorCode.CALLBACK_FAILED
                result.error_message = text
            else:
                result.error_message = f"{result.error_message}; {text}"
        manifest["result"] = result.wire()
        _save_manifest(manifest_path, manifest)
    return result
