"""Snapshots in the Action protocol (extension): Data.Output.Snapshots is validated through
real HTTP with errors naming the field and the rule, becomes spec.output.snapshots (and the
WebRecording's CRD refuses what the protocol refuses); a Start without it gives exactly the
Result it always gave; Describe and /openapi.json show Snapshots and Poster."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from webrecord.api.crd import crd
from webrecord.api.models import RecorderStatus, RecordingSpec, Result, SnapshotFile, VideoFile
from webrecord.api.protocol.actions import parse_envelope, to_spec
from webrecord.api.protocol.replies import describe_body

from .conftest import LiveServer


def start(**output: object) -> dict:
    return {"Action": "Start", "Data": {"RecordURL": "http://page.test/", "Output": output}}


def test_snapshots_become_the_spec_and_old_starts_are_unchanged() -> None:
    _, data = parse_envelope(start(Snapshots={"IntervalSeconds": 5, "MaxCount": 20}))
    snapshots = to_spec(data).output.snapshots
    assert (snapshots.interval_seconds, snapshots.poster, snapshots.max_count) == (5, True, 20)
    _, data = parse_envelope(start(Snapshots={}))  # the poster alone
    snapshots = to_spec(data).output.snapshots
    assert (snapshots.interval_seconds, snapshots.poster, snapshots.max_count) == (None, True, 100)
    _, data = parse_envelope({"Action": "Start", "Data": {"RecordURL": "http://page.test/"}})
    spec = to_spec(data)
    assert spec.output.snapshots is None and "snapshots" not in spec.wire()["output"]


@pytest.mark.parametrize(("snapshots", "message"), [
    ({"IntervalSeconds": 0}, "Data.Output.Snapshots.IntervalSeconds: must be between 1 and 3600"),
    ({"IntervalSeconds": 3601}, "Data.Output.Snapshots.IntervalSeconds: must be between 1 and 3600"),
    ({"IntervalSeconds": 1.5}, "Data.Output.Snapshots.IntervalSeconds: must be an integer, got a number"),
    ({"MaxCount": 501}, "Data.Output.Snapshots.MaxCount: must be between 1 and 500"),
    ({"Poster": "yes"}, "Data.Output.Snapshots.Poster: must be true or false, got a string"),
    ({"Poster": False}, "Data.Output.Snapshots: give IntervalSeconds or Poster: true (nothing to take)"),
    ({"Every": 5}, "Data.Output.Snapshots.Every: unknown field"),
])
def test_snapshot_errors_name_the_field_and_rule(server: LiveServer, snapshots: dict,
                                                 message: str) -> None:
    reply = server.call("Start", start(Snapshots=snapshots)["Data"])
    assert (reply.body["ErrorCode"], reply.body["ErrorMessage"]) == ("InvalidParam", message)


def test_snapshots_need_video(server: LiveServer) -> None:
    reply = server.call("Start", start(Snapshots={"IntervalSeconds": 5},
                                       Video={"AudioOnly": True})["Data"])
    assert (reply.body["ErrorCode"], reply.body["ErrorMessage"]) == (
        "InvalidParam", "Data.Output: snapshots require video: Video.AudioOnly records none")


@pytest.mark.parametrize(("output", "message"), [
    ({"snapshots": {"intervalSeconds": 0}}, "greater than or equal to 1"),
    ({"snapshots": {"poster": False}}, "give intervalSeconds or poster: true"),
    ({"snapshots": {}, "video": {"audioOnly": True}}, "snapshots require video"),
])
def test_the_models_refuse_the_same(output: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        RecordingSpec.model_validate({"recordUrl": "http://page.test/", "output": output})


def test_the_crd_carries_the_rules() -> None:
    spec = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    output = spec["properties"]["output"]
    snap = output["properties"]["snapshots"]
    assert (snap["properties"]["intervalSeconds"]["minimum"],
            snap["properties"]["intervalSeconds"]["maximum"]) == (1, 3600)
    assert snap["properties"]["maxCount"]["maximum"] == 500
    messages = [r["message"] for r in snap["x-kubernetes-validations"] +
                output["x-kubernetes-validations"]]
    assert "give intervalSeconds or poster: true (nothing to take)" in messages
    assert "snapshots require video: video.audioOnly records none" in messages


def test_describe_lists_snapshots_only_when_asked() -> None:
    video = VideoFile(filename="a.mp4", file_size=10, file_duration=3.0, file_url="http://x/a.mp4")
    old = describe_body(RecorderStatus(task_id="t", result=Result(videos=[video])))
    assert set(old["Result"]) == {"ErrorCode", "ErrorMessage", "Videos"}  # as it always was
    shot = SnapshotFile(filename="a_snapshot_00001.jpg", time=0.0, file_size=5,
                        file_url="http://x/a_snapshot_00001.jpg")
    poster = SnapshotFile(filename="a_poster.jpg", time=2.967, file_size=6)
    new = describe_body(RecorderStatus(task_id="t", result=Result(
        videos=[video], snapshots=[shot], poster=poster)))["Result"]
    assert new["Snapshots"] == [{"Filename": "a_snapshot_00001.jpg", "Time": 0.0, "FileSize": 5,
                                 "FileURL": "http://x/a_snapshot_00001.jpg"}]
    assert new["Poster"] == {"Filename": "a_poster.jpg", "Time": 2.967, "FileSize": 6}


def test_snapshots_are_in_openapi(server: LiveServer) -> None:
    schemas = server.request("GET", "/openapi.json").body["components"]["schemas"]
    assert set(schemas["SnapshotsData"]["properties"]) == {"IntervalSeconds", "Poster", "MaxCount"}
    assert "Snapshots" in schemas["OutputData"]["properties"]
    assert {"Snapshots", "Poster"} <= set(schemas["Result"]["properties"])
    assert schemas["Result"]["required"] == ["ErrorCode", "ErrorMessage", "Videos"]
    assert set(schemas["Snapshot"]["properties"]) == {"Filename", "Time", "FileSize", "FileURL"}
