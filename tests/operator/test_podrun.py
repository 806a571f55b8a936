"""The pod entrypoint's termination message (what the kubelet hands to the operator)."""

from __future__ import annotations

import json
from pathlib import Path

from webrecord.api.models import Phase, RecorderStatus, Result, VideoFile
from webrecord.controller import podrun


def test_status_file_from_args() -> None:
    assert podrun.status_file(["--task", "t", "--work-dir", "/d"]) == Path("/d/status.json")
    assert podrun.status_file(["--work-dir", "/d", "--status-file", "/s.json"]) == Path("/s.json")
    assert podrun.status_file(["--task", "t"]) is None


def test_compact_keeps_within_the_kubelet_limit() -> None:
    videos = [VideoFile(filename=f"video-{i:04d}.mp4", file_size=i, file_duration=1.0,
                        file_url="https://bucket.example.test/" + "x" * 100) for i in range(100)]
    status = RecorderStatus(task_id="t", status=Phase.FINISHED, result=Result(videos=videos),
                            message="m" * 500)
    raw = status.model_dump_json(by_alias=True)
    assert len(raw) > podrun.MESSAGE_LIMIT
    text = podrun.compact(raw)
    assert len(text.encode()) <= podrun.MESSAGE_LIMIT
    back = RecorderStatus.model_validate(json.loads(text))
    assert back.status == Phase.FINISHED
    assert 0 < len(back.result.videos) < 100
    assert back.result.videos[0].filename == "video-0000.mp4"
    small = RecorderStatus(task_id="t").model_dump_json(by_alias=True)
    assert podrun.compact(small) == small


def test_write_termination_message(tmp_path: Path) -> None:
    source = tmp_path / "status.json"
    source.write_text('{"taskId": "t", "status": "finished"}')
    target = tmp_path / "termination-log"
    podrun.write_termination_message(source, target)
    assert json.loads(target.read_text())["status"] == "finished"
    podrun.write_termination_message(tmp_path / "missing.json", tmp_path / "other")
    assert not (tmp_path / "other").exists()


def test_cli_passes_the_recorder_options_through() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    podrun.register(parser.add_subparsers())
    args = parser.parse_args(["recorder-pod", "--task", "/t.json", "--work-dir", "/data",
                              "--control-host", "0.0.0.0", "--control-port", "8090",
                              "--token-file", "/tok"])
    assert args.task == "/t.json" and args.control_port == "8090" and args.status_file is None
