"""Live outputs in the Action protocol (extension): Start's Data.Output.Live is validated with
errors naming the field and the rule, becomes spec.output.live, and Describe shows each output
with its stream key redacted; /openapi.json documents both."""

from __future__ import annotations

import pytest

from webrecord.adapter.openapi import openapi_document
from webrecord.api.models import LiveOutputStatus, LiveState, RecorderStatus
from webrecord.api.protocol.actions import parse_envelope, to_spec
from webrecord.api.protocol.errors import ApiError
from webrecord.api.protocol.replies import describe_body


def start(live: object) -> dict:
    return {"Action": "Start", "Data": {"RecordURL": "http://page.test/",
                                        "Output": {"Live": live}}}


def test_live_urls_become_the_spec() -> None:
    urls = ["rtmp://live.test/app/key", "rtmps://live.test:8443/app/key",
            "srt://[2001:db8::1]:9000?streamid=k&passphrase=0123456789"]
    _, data = parse_envelope(start([{"Url": u} for u in urls]))
    assert [o.url for o in to_spec(data).output.live] == urls
    _, data = parse_envelope(start(None))  # optional: old callers' Starts are unchanged
    assert to_spec(data).output.live is None


@pytest.mark.parametrize(("live", "message"), [
    ([{"Url": "http://live.test/a/b"}], "Data.Output.Live.0.Url: must be an rtmp://, rtmps:// or srt:// URL"),
    ([{"Url": "file:///etc/passwd"}], "Data.Output.Live.0.Url: must be an rtmp://, rtmps:// or srt:// URL"),
    ([{"Url": "rtmp://user@live.test/a/b"}], "Data.Output.Live.0.Url: must not contain spaces"),
    ([{"Url": "rtmp://0x7f000001/a/b"}], "Data.Output.Live.0.Url: host is an ambiguous IPv4 form"),
    ([{"Url": "srt://live.test"}], "Data.Output.Live.0.Url: needs a port"),
    ([{"Url": "rtmp://live.test/app"}], "Data.Output.Live.0.Url: needs an application and a stream name"),
    ([{"Url": "rtmp://live.test/a/b"}] * 2, "Data.Output.Live: the same Url twice"),
    ([{"Url": f"rtmp://live.test/a/{i}"} for i in range(6)], "Data.Output.Live: must have at most 5 items"),
    ([{"Url": "srt://live.test:1", "Key": "x"}], "Data.Output.Live.0.Key: unknown field"),
])
def test_bad_live_outputs_name_the_field_and_the_rule(live: object, message: str) -> None:
    with pytest.raises(ApiError) as err:
        parse_envelope(start(live))
    assert err.value.code.value == "InvalidParam"
    assert str(err.value.message).startswith(message), err.value.message


def test_describe_shows_live_outputs_redacted_and_openapi_documents_them() -> None:
    status = RecorderStatus(task_id="t", live=[LiveOutputStatus(
        url="rtmp://live.test:1935/app/***", state=LiveState.RETRYING, message="refused",
        reconnects=2, sent_bytes=10)])
    assert describe_body(status)["Live"] == [{
        "Url": "rtmp://live.test:1935/app/***", "State": "retrying", "Message": "refused",
        "Reconnects": 2, "SentBytes": 10, "DroppedBytes": 0}]
    assert "Live" not in describe_body(RecorderStatus(task_id="t"))
    schemas = openapi_document()["components"]["schemas"]
    assert schemas["Task"]["properties"]["Live"]["items"]["$ref"].endswith("/LiveOutput")
    assert set(schemas["LiveOutput"]["properties"]["State"]["enum"]) == {s.value for s in LiveState}
    assert "Live" in schemas["OutputData"]["properties"]
