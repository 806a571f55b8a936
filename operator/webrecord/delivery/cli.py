"""`webrecord deliver`: retry the delivery of a finished recording whose files were kept.

    webrecord deliver --task FILE --work-dir DIR [--status-file FILE] [--video PATH[:SECONDS]]
                      [--from-segments]

The videos come from the delivery manifest (`delivery.json`, written by the first attempt
beside the videos somewhere under DIR) unless given with --video; with --from-segments they are
joined anew from the task's segment store (StorageType cos: the segment bucket; cfs:
WEBRECORD_SEGMENT_DIR), for a recorder whose local files are gone with its pod. Targets that already
succeeded are not redone; the callback is sent again with the new result. The recorder's status
file (default DIR/status.json, when present) is updated to `finished` with the new Result.
Exit code 0 when the delivery (and callback) succeeded, 1 when the Result carries an error,
2 for bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

from pydantic import ValidationError

from webrecord.api.models import Phase, RecorderStatus, RecordingTask, Result
from webrecord.api.protocol import result_body
from webrecord.delivery import images
from webrecord.delivery.pipeline import DELIVERY_CODES, MANIFEST_NAME, LocalVideo, deliver
from webrecord.files import write_atomic


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "deliver", help="retry the upload and callback of a finished recording",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", required=True, help="the task file (RecordingTask JSON)")
    parser.add_argument("--work-dir", required=True, help="the recorder's work directory")
    parser.add_argument("--status-file", help="recorder status file (default DIR/status.json)")
    parser.add_argument("--video", action="append", default=[], metavar="PATH[:SECONDS]",
                        help="a video to deliver (repeatable); default: from the manifest")
    parser.add_argument("--from-segments", action="store_true",
                        help="package the task's stored segments into DIR, then deliver")
    parser.set_defaults(func=run)


def _fail(message: str) -> int:
    print(json.dumps({"error": message}), file=sys.stderr)
    return 2


def _find_manifest(work_dir: Path, task_id: str) -> dict | None:
    for path in sorted(work_dir.rglob(MANIFEST_NAME)):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if data.get("taskId") == task_id:
            return data
    return None


def _parse_video(spec: str) -> LocalVideo:
    path, _, seconds = spec.rpartition(":") if ":" in spec else (spec, "", "0")
    path_obj = Path(path or spec)
    muxer = "hls" if path_obj.suffix.lower() == ".m3u8" else "mp4"
    return LocalVideo(path=path_obj.resolve(), duration=float(seconds or 0), muxer=muxer)


async def _package_stored(task: RecordingTask, work_dir: Path) -> list[LocalVideo]:
    """The task's stored segments joined into one video under `work_dir`."""
    from webrecord.recorder.package import package_hls, package_mp4
    from webrecord.recorder.snapshots import take_snapshots
    from webrecord.recorder.resume import fetch_stored_segments
    from webrecord.recorder.settings import RecorderSettings
    from webrecord.storage.segments import SegmentStore

    settings = RecorderSettings()
    store = SegmentStore.for_task(task, work_dir)
    try:
        stored = await fetch_stored_segments(store, work_dir / "segments", settings,
                                             audio_only=bool(task.spec.output.video.audio_only))
    finally:
        await asyncio.to_thread(store.close)
    if not stored.segments:
        raise ValueError(f"no stored segments of task {task.task_id} in {store.location}")
    video = task.spec.output.video
    if video.muxer == "hls":
        out = await package_hls(stored.segments, work_dir / "output" / "hls" /
                                f"{task.task_id}.m3u8", work_dir, settings,
                                video.encrypt_key, video.auth_url)
    else:
        suffix = ".m4a" if video.audio_only else ".mp4"
        out = await package_mp4(stored.segments, work_dir / "output" / f"{task.task_id}{suffix}",
                                work_dir, settings)
    out = await take_snapshots(out, task.spec.output.snapshots, settings)
    return [LocalVideo(out.path, out.duration, out.muxer, out.snapshots, out.poster)]


def run(args: argparse.Namespace) -> int:
    try:
        task = RecordingTask.model_validate_json(Path(args.task).read_text())
    except OSError as exc:
        return _fail(f"--task {args.task}: {exc.strerror}")
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return _fail(f"--task {args.task}: {where}: {first['msg']}")
    work_dir = Path(args.work_dir)
    if not work_dir.is_dir():
        return _fail(f"--work-dir {work_dir}: not a directory")
    manifest = _find_manifest(work_dir, task.task_id) or {}
    try:
        videos = [_parse_video(v) for v in args.video]
    except ValueError:
        return _fail("--video: expected PATH or PATH:SECONDS")
    if not videos and args.from_segments:
        try:
            videos = asyncio.run(_package_stored(task, work_dir))
        except Exception as exc:  # noqa: BLE001 - StorageError, OSError, RecorderError: say it
            return _fail(f"--from-segments: {exc}")
    if not videos:
        videos = [LocalVideo(Path(v["path"]), float(v["duration"]), v["muxer"],
                             **images.from_manifest(v)) for v in manifest.get("videos", [])]
    if not videos:
        return _fail(f"no videos: no {MANIFEST_NAME} for task {task.task_id} under {work_dir} "
                     "and no --video")

    status_file = Path(args.status_file) if args.status_file else work_dir / "status.json"
    status = RecorderStatus(task_id=task.task_id)
    if "status" in manifest:
        status = RecorderStatus.model_validate(manifest["status"])
    elif status_file.is_file():
        status = RecorderStatus.model_validate_json(status_file.read_text())
    if status.result.error_code in DELIVERY_CODES:  # judge this attempt on its own
        status.result = Result(videos=status.result.videos)

    async def on_phase(phase: Phase) -> None:
        if status_file.is_file():
            current = status.model_copy(update={"status": phase})
            write_atomic(status_file, json.dumps(current.wire()))

    result = asyncio.run(deliver(task, videos, status, on_phase))
    if status_file.is_file() or args.status_file:
        final = status.model_copy(update={"status": Phase.FINISHED, "result": result,
                                          "finish_time": int(time.time())})
        write_atomic(status_file, json.dumps(final.wire()))
    print(json.dumps(result_body(result)))
    return 0 if result.error_code is None else 1
