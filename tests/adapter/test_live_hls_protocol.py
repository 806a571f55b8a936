"""Live HLS in the Action protocol (extension): Data.Output.LiveHls is valid with Video.Muxer
hls only (a clear error naming the field otherwise), becomes spec.output.liveHls (also refused
there, and by the CRD, without muxer hls), and Describe shows the live playlist's URL."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from webrecord.adapter.openapi import openapi_document
from webrecord.api.crd import crd
from webrecord.api.models import LiveHlsStatus, RecorderStatus, RecordingSpec
from webrecord.api.protocol.actions import parse_envelope, to_spec
from webrecord.api.protocol.errors import ApiError
from webrecord.api.protocol.replies import describe_body


def start(output: dict) -> dict:
    return {"Action": "Start", "Data": {"RecordURL": "http://page.test/", "Output": output}}


def test_live_hls_with_hls_becomes_the_spec() -> None:
    _, data = parse_envelope(start({"LiveHls": True, "Video": {"Muxer": "hls"}}))
    assert to_spec(data).output.live_hls is True
    _, data = parse_envelope(start({"Video": {"Muxer": "hls"}}))  # optional, off by default
    assert to_spec(data).output.live_hls is None


@pytest.mark.parametrize("output", [
    {"LiveHls": True},  # Muxer defaults to mp4
    {"LiveHls": True, "Video": {"Muxer": "mp4"}},
    {"LiveHls": True, "Video": {}},
])
def test_live_hls_without_the_hls_muxer_is_refused_naming_the_field(output: dict) -> None:
    with pytest.raises(ApiError) as err:
        parse_envelope(start(output))
    assert err.value.code.value == "InvalidParam"
    assert err.value.message == ("Data.Output: LiveHls requires Video.Muxer 'hls' "
                                 "(the live playlist is HLS)"), err.value.message


def test_live_hls_must_be_a_boolean() -> None:
    with pytest.raises(ApiError) as err:
        parse_envelope(start({"LiveHls": "yes", "Video": {"Muxer": "hls"}}))
    assert err.value.message == "Data.Output.LiveHls: must be true or false, got a string"


def test_the_models_and_the_crd_refuse_live_hls_without_hls() -> None:
    with pytest.raises(ValidationError, match="liveHls requires video.muxer 'hls'"):
        RecordingSpec.model_validate({"recordUrl": "http://page.test/",
                                      "output": {"liveHls": True, "video": {"muxer": "mp4"}}})
    spec = RecordingSpec.model_validate({"recordUrl": "http://page.test/", "output": {
        "liveHls": True, "video": {"muxer": "hls"}}})
    assert spec.output.wire()["liveHls"] is True
    schema = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    output = schema["properties"]["spec"]["properties"]["output"]
    assert output["properties"]["liveHls"]["type"] == "boolean"
    assert any("liveHls requires video.muxer 'hls'" in v["message"]
               for v in output["x-kubernetes-validations"])
    assert "liveHls" in schema["properties"]["status"]["properties"]


def test_describe_shows_the_live_playlist_and_openapi_documents_it() -> None:
    status = RecorderStatus(task_id="t", live_hls=LiveHlsStatus(
        url="https://media.test/room_live.m3u8", segments=3, pending=1))
    assert describe_body(status)["LiveHls"] == {
        "Url": "https://media.test/room_live.m3u8", "Segments": 3, "Pending": 1,
        "Ended": False, "Message": ""}
    assert "LiveHls" not in describe_body(RecorderStatus(task_id="t"))
    schemas = openapi_document()["components"]["schemas"]
    assert schemas["Task"]["properties"]["LiveHls"]["$ref"].endswith("/LiveHls")
    assert "LiveHls" in schemas["OutputData"]["properties"]


def test_the_operator_reflects_the_live_playlist_into_the_status() -> None:
    from webrecord.api.resource import WebRecordingStatus
    from webrecord.controller.status import reflect

    rec = RecorderStatus(task_id="t", status="recording", live_hls=LiveHlsStatus(
        url="https://media.test/live.m3u8", segments=2))
    patch = reflect({"phase": "recording"}, rec, 0.0)
    assert patch["liveHls"] == {"url": "https://media.test/live.m3u8", "segments": 2,
                                "pending": 0, "ended": False}
    WebRecordingStatus.model_validate(patch)  # the CRD's status schema takes it
    # ... and the kubernetes backend's Describe reads it back from .status
    from webrecord.api.resource import recorder_status
    assert describe_body(recorder_status("t", patch))["LiveHls"]["Url"] == \
        "https://media.test/live.m3u8"
    assert "liveHls" not in reflect({"phase": "recording", **patch}, rec, 0.0)  # no churn
