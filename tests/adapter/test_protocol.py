"""Protocol validation through real HTTP: field names, types, ranges, error codes and messages."""

from __future__ import annotations

import json
import uuid

import pytest

from webrecord.api.protocol import actions as pm

from .conftest import LiveServer

pytestmark = pytest.mark.timeout(120)


def _is_uuid(text: str) -> bool:
    return str(uuid.UUID(text)) == text


@pytest.mark.parametrize(
    ("data", "code", "message"),
    [
        ({}, "MissingParam", "Data.RecordURL: required"),
        (
            {"Width": 9999, "Height": -1},
            "MissingParam",
            "Data.RecordURL: required; Data.Width: must be between 0 and 2560; "
            "Data.Height: must be between 0 and 2560",
        ),
        (
            {"Width": 9999, "Height": -1, "MaxDurationLimit": -5, "StorageType": "s3"},
            "MissingParam",
            "Data.RecordURL: required; Data.Width: must be between 0 and 2560; "
            "Data.Height: must be between 0 and 2560 (and 2 more problems)",
        ),
        ({"RecordURL": ""}, "MissingParam", "Data.RecordURL: required (got an empty string)"),
        ({"RecordURL": 5}, "InvalidParam", "Data.RecordURL: must be a string, got an integer"),
        ({"RecordURL": "ftp://x"}, "InvalidParam", "Data.RecordURL: must be an http:// or https:// URL"),
        ({"RecordURL": "http://a", "Width": 2561}, "InvalidParam", "Data.Width: must be between 0 and 2560"),
        ({"RecordURL": "http://a", "Height": -1}, "InvalidParam", "Data.Height: must be between 0 and 2560"),
        ({"RecordURL": "http://a", "Width": "1280"}, "InvalidParam", "Data.Width: must be an integer, got a string"),
        ({"RecordURL": "http://a", "Width": 1280.5}, "InvalidParam", "Data.Width: must be an integer, got a number"),
        ({"RecordURL": "http://a", "ManualStart": 1}, "InvalidParam", "Data.ManualStart: must be true or false, got an integer"),
        ({"RecordURL": "http://a", "MaxDurationLimit": 36001}, "InvalidParam", "Data.MaxDurationLimit: must be between 0 and 36000"),
        ({"RecordURL": "http://a", "StorageType": "s3"}, "InvalidParam", "Data.StorageType: must be one of 'cos' or 'cfs', got 's3'"),
        ({"RecordURL": "http://a", "CallbackURL": "mailto:x"}, "InvalidParam", "Data.CallbackURL: must be an http:// or https:// URL"),
        ({"RecordURL": "http://a", "Recordurl": "x"}, "InvalidParam", "Data.Recordurl: unknown field"),
        ({"RecordURL": "http://a", "Output": []}, "InvalidParam", "Data.Output: must be a JSON object, got an array"),
        ({"RecordURL": "http://a", "Output": {"Video": {"Muxer": "webm"}}}, "InvalidParam", "Data.Output.Video.Muxer: must be one of 'mp4' or 'hls', got 'webm'"),
        ({"RecordURL": "http://a", "Output": {"Video": {"EncryptKey": "xyz"}}}, "InvalidParam", "Data.Output.Video.EncryptKey: must be 32 hexadecimal digits (a 128-bit AES key)"),
        ({"RecordURL": "http://a", "Output": {"Video": {"EncryptKey": "00112233445566778899aabbccddeeff"}}}, "InvalidParam", "Data.Output.Video: EncryptKey requires Muxer 'hls'"),
        ({"RecordURL": "http://a", "Output": {"Cos": {"Bucket": "b" * 256}}}, "InvalidParam", "Data.Output.Cos.Bucket: must have at most 255 characters"),
        ({"RecordURL": "http://a", "Output": {"Vod": {"SubAppId": -5}}}, "InvalidParam", "Data.Output.Vod.SubAppId: must be between 0 and 2147483647"),
        ({"RecordURL": "http://a", "Output": {"Vod": {"MediaInfo": {"ClassId": "1"}}}}, "InvalidParam", "Data.Output.Vod.MediaInfo.ClassId: must be an integer, got a string"),
        # Encoding extension (Output.Video): each field's range and the rules between them.
        ({"RecordURL": "http://a", "Output": {"Video": {"FrameRate": 4}}}, "InvalidParam", "Data.Output.Video.FrameRate: must be between 5 and 60"),
        ({"RecordURL": "http://a", "Output": {"Video": {"FrameRate": 61}}}, "InvalidParam", "Data.Output.Video.FrameRate: must be between 5 and 60"),
        ({"RecordURL": "http://a", "Output": {"Video": {"VideoBitrate": 50}}}, "InvalidParam", "Data.Output.Video.VideoBitrate: must be between 100 and 20000"),
        ({"RecordURL": "http://a", "Output": {"Video": {"Quality": 52}}}, "InvalidParam", "Data.Output.Video.Quality: must be between 0 and 51"),
        ({"RecordURL": "http://a", "Output": {"Video": {"KeyframeInterval": 0.1}}}, "InvalidParam", "Data.Output.Video.KeyframeInterval: must be between 0.5 and 10.0"),
        ({"RecordURL": "http://a", "Output": {"Video": {"AudioBitrate": "128k"}}}, "InvalidParam", "Data.Output.Video.AudioBitrate: must be an integer, got a string"),
        ({"RecordURL": "http://a", "Output": {"Video": {"VideoBitrate": 800, "Quality": 20}}}, "InvalidParam", "Data.Output.Video: give VideoBitrate or Quality, not both"),
        ({"RecordURL": "http://a", "Output": {"Video": {"AudioOnly": True, "Muxer": "hls"}}}, "InvalidParam", "Data.Output.Video: AudioOnly requires Muxer 'mp4' (the file is an .m4a)"),
        ({"RecordURL": "http://a", "Output": {"Video": {"AudioOnly": True, "FrameRate": 30}}}, "InvalidParam", "Data.Output.Video: AudioOnly records no video: FrameRate, VideoBitrate, Quality and KeyframeInterval do not apply"),
        ({"RecordURL": "http://169.254.169.254/latest/meta-data"}, "UrlNotAllowed", "Data.RecordURL: host '169.254.169.254' resolves to 169.254.169.254, a cloud metadata address"),
        ({"RecordURL": "http://127.0.0.1/", "CallbackURL": "http://[fe80::1]/cb"}, "UrlNotAllowed", "Data.CallbackURL: host 'fe80::1' resolves to fe80::1, a link-local address"),
        ({"RecordURL": "http://metadata.google.internal/"}, "UrlNotAllowed", "Data.RecordURL: host 'metadata.google.internal' is a cloud metadata service name"),
    ],
)
def test_start_field_errors(server: LiveServer, data: dict, code: str, message: str) -> None:
    reply = server.call("Start", data)
    assert reply.body["ErrorCode"] == code
    assert reply.body["ErrorMessage"] == message
    assert _is_uuid(reply.body["RequestID"])
    assert set(reply.body) == {"ErrorCode", "ErrorMessage", "RequestID"}
    assert reply.status in (400, 404, 409)
    assert reply.headers["x-request-id"] == reply.body["RequestID"]


@pytest.mark.parametrize(
    ("raw", "code", "message"),
    [
        (b"", "MalformedBody", "body: empty; expected a JSON object"),
        (b"{", "MalformedBody", "body: not valid JSON (Expecting property name enclosed in double quotes at line 1 column 2)"),
        (b"\xff\xfe", "MalformedBody", "body: not UTF-8 (byte 0)"),
        (b"[1, 2]", "MalformedBody", "body: must be a JSON object with Action and Data, got an array"),
        (b'{"Action": NaN}', "MalformedBody", "body: not valid JSON (NaN is not valid JSON)"),
        (b"[" * 20000 + b"]" * 20000, "MalformedBody", "body: JSON nested too deeply"),
        (b"{}", "MissingParam", "Action: required"),
        (b'{"Action": null}', "MissingParam", "Action: required"),
        (b'{"Action": ["Start"]}', "InvalidParam", "Action: must be a string, got an array"),
        (b'{"Action": "start", "Data": {}}', "UnsupportedAction", "Action: 'start' is not supported (one of: Start, Pause, Resume, Refresh, Stop, Cancel, UpdateLive, Describe, List)"),
        (b'{"Action": "Delete", "Data": {}}', "UnsupportedAction", "Action: 'Delete' is not supported (one of: Start, Pause, Resume, Refresh, Stop, Cancel, UpdateLive, Describe, List)"),
        (b'{"Action": "Start"}', "MissingParam", "Data: required"),
        (b'{"Action": "Start", "Data": "x"}', "InvalidParam", "Data: must be a JSON object, got a string"),
        (b'{"Action": "Start", "Data": {}, "Version": 1}', "InvalidParam", "Version: unknown field (the envelope has only Action and Data)"),
        (b'{"Action": "Describe", "Data": {}}', "MissingParam", "Data.TaskID: required"),
        (b'{"Action": "Describe", "Data": {"TaskID": 12}}', "InvalidParam", "Data.TaskID: must be a string, got an integer"),
        (b'{"Action": "Pause", "Data": {"TaskID": "../../etc"}}', "InvalidParam", "Data.TaskID: not a task id (lowercase letters, digits and '-')"),
        (b'{"Action": "Stop", "Data": {"TaskID": ""}}', "MissingParam", "Data.TaskID: required (got an empty string)"),
        (b'{"Action": "List", "Data": {"Limit": 101}}', "InvalidParam", "Data.Limit: must be between 1 and 100"),
        (b'{"Action": "List", "Data": {"Offset": -1}}', "InvalidParam", "Data.Offset: must be between 0 and 1000000000"),
    ],
)
def test_envelope_errors(server: LiveServer, raw: bytes, code: str, message: str) -> None:
    reply = server.post_raw(raw)
    assert (reply.body["ErrorCode"], reply.body["ErrorMessage"]) == (code, message)
    assert reply.status == 400
    assert _is_uuid(reply.body["RequestID"])


@pytest.mark.parametrize("action", ["Pause", "Resume", "Refresh", "Stop", "Cancel", "Describe"])
def test_unknown_task(server: LiveServer, action: str) -> None:
    reply = server.call(action, {"TaskID": "wr-000000000000000000000000"})
    assert reply.status == 404
    assert reply.body["ErrorCode"] == "TaskNotFound"
    assert reply.body["ErrorMessage"] == (
        "Data.TaskID: no task 'wr-000000000000000000000000' for this ApiAppKey"
    )


def test_every_reply_has_a_fresh_request_id(server: LiveServer) -> None:
    ids = {server.call("List").body["RequestID"] for _ in range(5)}
    ids |= {server.call("Describe", {"TaskID": "wr-1"}).body["RequestID"] for _ in range(5)}
    ids.add(server.request("GET", "/healthz").body["RequestID"])
    assert len(ids) == 11
    assert all(_is_uuid(i) for i in ids)


def test_unknown_path_and_method(server: LiveServer) -> None:
    reply = server.request("GET", "/nope")
    assert (reply.status, reply.body["ErrorCode"]) == (404, "ResourceNotFound")
    reply = server.request("PUT", "/", b"{}")
    assert (reply.status, reply.body["ErrorCode"]) == (405, "MethodNotAllowed")


def test_health_and_openapi(server: LiveServer) -> None:
    health = server.request("GET", "/healthz")
    assert health.status == 200
    assert health.body["ok"] is True and health.body["backend"] == "local"
    doc = server.request("GET", "/openapi.json").body
    assert doc["openapi"] == "3.1.0"
    schemas = doc["components"]["schemas"]
    start = schemas["StartData"]
    assert start["required"] == ["RecordURL"]
    assert start["properties"]["Width"]["anyOf"][0] == {"maximum": 2560, "minimum": 0, "type": "integer"}
    assert set(schemas["OutputData"]["properties"]) == {"Cos", "Vod", "Video", "Live",
                                                        "Snapshots", "LiveHls"}  # extensions
    assert set(schemas["VodData"]["properties"]) == {"MediaInfo", "ProcedureInfo", "SubAppId"}
    assert set(schemas["Task"]["properties"]) == {
        "TaskID", "Status", "CreateTime", "StartTime", "CancelTime", "StopTime", "FinishTime", "Result",
        "Message",  # extension: why a `normal` task waits, progress notes
        "Live",  # extension: each live output (URL redacted)
        "LiveHls",  # extension: the live HLS playlist of Output.LiveHls
    }
    assert "Message" not in schemas["Task"]["required"]
    examples = doc["paths"]["/"]["post"]["requestBody"]["content"]["application/json"]["examples"]
    assert {name: e["value"] for name, e in examples.items()} == pm.EXAMPLES


@pytest.mark.parametrize("name", ["Pause", "Resume", "Refresh", "Stop", "Cancel", "Describe"])
def test_documentation_control_examples_are_valid(server: LiveServer, name: str) -> None:
    # The example TaskID is well-formed but unknown here: validation passes, the lookup does not.
    reply = server.post_raw(json.dumps(pm.EXAMPLES[name]).encode())
    assert reply.body["ErrorCode"] == "TaskNotFound"


def test_documentation_list_example(server: LiveServer) -> None:
    reply = server.post_raw(json.dumps(pm.EXAMPLES["List"]).encode())
    assert reply.status == 200
    assert reply.body["TotalCount"] == 0 and reply.body["Tasks"] == []
    assert (reply.body["Offset"], reply.body["Limit"]) == (0, 20)


@pytest.mark.parametrize("name", ["Start", "StartMinimal"])
def test_documentation_start_examples_translate(name: str) -> None:
    action, data = pm.parse_envelope(pm.EXAMPLES[name])
    spec = pm.to_spec(data)
    sent = pm.EXAMPLES[name]["Data"]
    assert spec.record_url == sent["RecordURL"]
    assert spec.width == sent.get("Width", 1280) and spec.height == sent.get("Height", 720)
    assert spec.max_duration_limit == sent.get("MaxDurationLimit", 21600)
    if name == "Start":
        wire = spec.wire()
        assert wire["callbackUrl"] == sent["CallbackURL"]
        assert wire["storageType"] == "cos"
        assert wire["output"]["cos"] == {
            "domain": "https://media.example.com", "bucket": "records-1250000000",
            "region": "ap-guangzhou", "targetDir": "class/2026-11-25", "targetName": "room-1",
        }
        assert wire["output"]["vod"]["mediaInfo"]["classId"] == 0
        assert wire["output"]["vod"]["procedureInfo"] == {"procedure": "transcode-720p", "sessionContext": "abc"}
        assert wire["output"]["vod"]["subAppId"] == 1500000000
        assert wire["output"]["video"] == {
            "muxer": "hls", "encryptKey": "00112233445566778899aabbccddeeff",
            "authUrl": "https://example.com/hls-key",
        }


def test_zero_and_empty_mean_default() -> None:
    _, data = pm.parse_envelope({"Action": "Start", "Data": {
        "RecordURL": "http://a/", "Width": 0, "Height": 0, "MaxDurationLimit": 0,
        "CallbackURL": "", "Output": {"Cos": {"Bucket": ""}}}})
    spec = pm.to_spec(data)
    assert (spec.width, spec.height, spec.max_duration_limit) == (1280, 720, 21600)
    assert spec.callback_url is None and spec.output.cos is not None and spec.output.cos.bucket is None


def test_openapi_references_resolve(server: LiveServer) -> None:
    doc = server.request("GET", "/openapi.json").body
    refs: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "$ref":
                    refs.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(doc)
    assert refs
    for ref in refs:
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.rsplit("/", 1)[1] in doc["components"]["schemas"], ref
    request_schema = doc["paths"]["/"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert len(request_schema["oneOf"]) == 9
    error = doc["components"]["schemas"]["Error"]
    assert "UrlNotAllowed" in error["properties"]["ErrorCode"]["enum"]


@pytest.mark.parametrize(("page", "message"), [
    ({"Headers": [{"Name": "Host", "Value": "evil.test"}]}, "Data.Page.Headers.0.Name: 'Host' may not be set"),
    ({"Headers": [{"Name": "Proxy-Authorization", "Value": "Basic x"}]}, "Data.Page.Headers.0.Name: 'Proxy-Authorization' may not be set"),
    ({"Headers": [{"Name": "Connection", "Value": "close"}]}, "Data.Page.Headers.0.Name: 'Connection' may not be set"),
    ({"Headers": [{"Name": "Cookie", "Value": "a=b"}]}, "Data.Page.Headers.0.Name: 'Cookie' may not be set"),
    ({"Headers": [{"Name": "X-A", "Value": "1\r\nX-B: 2"}]}, "Data.Page.Headers.0.Value: must not contain line breaks or control characters"),
    ({"Cookies": [{"Name": "sid", "Value": "1", "Domain": "evil.test"}]}, "Page.Cookies[0].Domain: 'evil.test' is not the RecordURL's host (a.example.com) or a parent domain of it"),
    ({"Cookies": [{"Name": "sid", "Value": "1", "Domain": "com"}]}, "Page.Cookies[0].Domain: 'com' is not the RecordURL's host"),
    ({"Cookies": [{"Name": "sid", "Value": "a;b"}]}, "Data.Page.Cookies.0.Value: must not contain ';' or control characters"),
    ({"UserAgent": "x\ny"}, "Data.Page.UserAgent: must not contain line breaks or control characters"),
    ({"DeviceScaleFactor": 5}, "Data.Page.DeviceScaleFactor: must be between 0.5 and 4.0"),
    ({"Scripts": ["x"] * 9}, "Data.Page.Scripts: must have at most 8 items"),
    ({"Headers": [{"Name": "X", "Value": "v"}] * 33}, "Data.Page.Headers: must have at most 32 items"),
])
def test_page_control_errors(server: LiveServer, page: dict, message: str) -> None:
    """Untrusted page control: refused with the field and the rule, nothing started."""
    reply = server.call("Start", {"RecordURL": "http://a.example.com/", "Page": page})
    assert reply.body["ErrorCode"] == "InvalidParam", reply.body
    assert message in reply.body["ErrorMessage"], reply.body


@pytest.mark.parametrize(("idle", "message"), [
    ({"Seconds": 4}, "Data.Idle.Seconds: must be between 5 and 36000"),
    ({"Action": "cancel"}, "Data.Idle.Action: must be one of 'stop' or 'pause', got 'cancel'"),
    ({"BlankSeconds": 3601}, "Data.Idle.BlankSeconds: must be between 0 and 3600"),
])
def test_idle_errors(server: LiveServer, idle: dict, message: str) -> None:
    reply = server.call("Start", {"RecordURL": "http://a.example.com/", "Idle": idle})
    assert (reply.body["ErrorCode"], reply.body["ErrorMessage"]) == ("InvalidParam", message)


def test_extension_fields_translate() -> None:
    _, data = pm.parse_envelope({"Action": "Start", "Data": {
        "RecordURL": "https://a.example.com/", "Idle": {"Seconds": 60, "Action": "pause"},
        "Output": {"Video": {"FrameRate": 15, "KeyframeInterval": 1, "AudioBitrate": 96}},
        "Page": {"Cookies": [{"Name": "s", "Value": "1", "Domain": "example.com"}]}}})
    spec = pm.to_spec(data)
    assert (spec.idle.seconds, spec.idle.action, spec.idle.blank_seconds) == (60, "pause", None)
    assert (spec.output.video.frame_rate, spec.output.video.keyframe_interval) == (15, 1.0)
    assert spec.page.cookies[0].domain == "example.com" and spec.page.console_signals


def test_extensions_are_in_openapi(server: LiveServer) -> None:
    schemas = server.request("GET", "/openapi.json").body["components"]["schemas"]
    assert {"FrameRate", "VideoBitrate", "Quality", "KeyframeInterval", "AudioBitrate",
            "AudioOnly"} <= set(schemas["VideoData"]["properties"])
    assert {"UserAgent", "DeviceScaleFactor", "Headers", "Cookies", "Scripts", "Styles",
            "ConsoleSignals"} <= set(schemas["PageData"]["properties"])
    assert set(schemas["IdleData"]["properties"]) == {"Seconds", "Action", "BlankSeconds"}
    assert "PageBlank" in schemas["Result"]["properties"]["ErrorCode"]["enum"]
