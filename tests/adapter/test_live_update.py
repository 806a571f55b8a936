"""UpdateLive (extension): the live receivers of a running task change through the Action
protocol. Refusals first: every bad list is refused with the field and the rule, by the same
rules as Start's Data.Output.Live (one parser, MAX_LIVE_OUTPUTS, no Url twice, each host judged
by the address policy the recorder's relay applies), and a task that does not record is refused
in the controls' words. A real adapter server; the recorder is a stand-in process that never
opens its control port (nothing here needs a browser)."""

from __future__ import annotations

import json
import re
import sys

import pytest

from webrecord.api.protocol import actions as pm
from webrecord.api.protocol.errors import ApiError

from .conftest import LiveServer
from .helpers import describe, wait_for

pytestmark = pytest.mark.timeout(120)

RTMP = "rtmp://live.test/app/key-1"
SRT = "srt://live.test:9000?streamid=key-2"
# A recorder that never opens its control port: the task runs (state) but stays `normal`.
STAND_IN = [sys.executable, "-c", "import time; time.sleep(300)"]


def update(server: LiveServer, task_id: str, live: object) -> tuple[int, dict]:
    reply = server.call("UpdateLive", {"TaskID": task_id, "Live": live})
    return reply.status, reply.body


@pytest.mark.parametrize(("data", "code", "message"), [
    ({"TaskID": "wr-x"}, "MissingParam", "Data.Live: required"),
    ({"Live": [{"Url": RTMP}]}, "MissingParam", "Data.TaskID: required"),
    ({"TaskID": "wr-x", "Live": None}, "InvalidParam", "Data.Live: must be an array, got null"),
    ({"TaskID": "wr-x", "Live": {"Url": RTMP}}, "InvalidParam",
     "Data.Live: must be an array, got an object"),
    ({"TaskID": "wr-x", "Live": [{"Url": "http://live.test/a/b"}]}, "InvalidParam",
     "Data.Live.0.Url: must be an rtmp://, rtmps:// or srt:// URL"),
    ({"TaskID": "wr-x", "Live": [{"Url": RTMP}, {"Url": "file:///etc/passwd"}]}, "InvalidParam",
     "Data.Live.1.Url: must be an rtmp://, rtmps:// or srt:// URL"),
    ({"TaskID": "wr-x", "Live": [{"Url": "rtmp://user:pw@live.test/a/b"}]}, "InvalidParam",
     "Data.Live.0.Url: must not contain spaces, control characters, quotes, backslashes or "
     "credentials (user@)"),
    ({"TaskID": "wr-x", "Live": [{"Url": "rtmp://2130706433/a/b"}]}, "InvalidParam",
     "Data.Live.0.Url: host is an ambiguous IPv4 form"),
    ({"TaskID": "wr-x", "Live": [{"Url": "srt://[::ffff:127.0.0.1]:9000"}]}, "InvalidParam",
     "Data.Live.0.Url: host embeds the IPv4 address 127.0.0.1"),
    ({"TaskID": "wr-x", "Live": [{"Url": "srt://live.test"}]}, "InvalidParam",
     "Data.Live.0.Url: needs a port"),
    ({"TaskID": "wr-x", "Live": [{"Url": RTMP}, {"Url": RTMP}]}, "InvalidParam",
     "Data.Live: the same Url twice"),
    ({"TaskID": "wr-x", "Live": [{"Url": f"rtmp://live.test/app/k{i}"} for i in range(6)]},
     "InvalidParam", "Data.Live: must have at most 5 items"),
    ({"TaskID": "wr-x", "Live": [{"Url": RTMP, "Key": "k"}]}, "InvalidParam",
     "Data.Live.0.Key: unknown field"),
    ({"TaskID": "wr-x", "Live": [], "Add": [{"Url": RTMP}]}, "InvalidParam",
     "Data.Add: unknown field"),
    ({"TaskID": "../etc", "Live": []}, "InvalidParam", "Data.TaskID: not a task id"),
])
def test_bad_lists_name_the_field_and_the_rule(server: LiveServer, data: dict, code: str,
                                               message: str) -> None:
    reply = server.call("UpdateLive", data)
    assert reply.status == 400, reply.body
    assert reply.body["ErrorCode"] == code, reply.body
    assert reply.body["ErrorMessage"].startswith(message), reply.body
    assert "Traceback" not in reply.raw.decode() and "pydantic" not in reply.raw.decode()


def test_start_and_update_share_one_rule_set() -> None:
    """The same list is refused with the same rule in both places (only the path differs)."""
    bad = [[{"Url": RTMP}] * 2, [{"Url": "rtmp://live.test/app"}],
           [{"Url": f"srt://live.test:{9000 + i}"} for i in range(6)]]
    for live in bad:
        errors = []
        for envelope in ({"Action": "Start", "Data": {"RecordURL": "http://a.test/",
                                                      "Output": {"Live": live}}},
                         {"Action": "UpdateLive", "Data": {"TaskID": "wr-x", "Live": live}}):
            with pytest.raises(ApiError) as err:
                pm.parse_envelope(envelope)
            errors.append(err.value.message.split(": ", 1))
        (start_field, start_rule), (update_field, update_rule) = errors
        assert start_rule == update_rule, errors
        assert start_field.replace("Data.Output.Live", "Data.Live") == update_field, errors


@pytest.mark.parametrize(("url", "why"), [
    ("rtmp://127.0.0.1:1935/app/sk-9f3", r"host '127\.0\.0\.1' .*, a loopback address"),
    ("srt://[::1]:9000?streamid=sk-9f3", r"host '::1' .*, a loopback address"),
    ("rtmp://localhost/app/sk-9f3", r"host 'localhost' resolves to \S+, a loopback address"),
    ("rtmps://169.254.169.254/app/sk-9f3", r"host '169\.254\.169\.254' .*, a cloud metadata"),
    ("rtmp://metadata.google.internal/app/sk-9f3",
     r"host 'metadata\.google\.internal' is a cloud metadata service name"),
    ("srt://10.1.2.3:9000?streamid=sk-9f3", r"host '10\.1\.2\.3' .*, a private address"),
])
def test_receivers_the_egress_policy_refuses_are_refused_at_once(make_server, url: str,
                                                                 why: str) -> None:
    """Judged as the relay judges them before connecting (loopback refused here, private
    ranges denied), so the caller hears it now, at Start and at UpdateLive alike; the
    message names the host, never the stream key."""
    server: LiveServer = make_server(url_allow_loopback=False, url_deny_private=True,
                                     url_allow=["192.0.2.0/24"])
    for action, data, field in (
            ("Start", {"RecordURL": "http://192.0.2.10/", "Output": {"Live": [
                {"Url": "rtmp://192.0.2.20/app/k"}, {"Url": url}]}}, "Data.Output.Live.1.Url"),
            ("UpdateLive", {"TaskID": "wr-x", "Live": [
                {"Url": "rtmp://192.0.2.20/app/k"}, {"Url": url}]}, "Data.Live.1.Url")):
        reply = server.call(action, data)
        assert reply.status == 400, reply.body
        assert reply.body["ErrorCode"] == "UrlNotAllowed", reply.body
        assert re.match(f"{re.escape(field)}: {why}", reply.body["ErrorMessage"]), reply.body
        assert "sk-9f3" not in reply.body["ErrorMessage"]
    assert server.call("List").body["TotalCount"] == 0  # no Start got through


def test_unknown_task_and_other_tenants_task(make_server) -> None:
    server: LiveServer = make_server(auth_enabled=True, recorder_command=STAND_IN)
    reply = server.call("UpdateLive", {"TaskID": "wr-0123456789abcdef01234567", "Live": []},
                        key="AKIDalice")
    assert (reply.status, reply.body["ErrorCode"]) == (404, "TaskNotFound"), reply.body
    started = server.call("Start", {"RecordURL": "http://127.0.0.1:9/"}, key="AKIDalice")
    task_id = started.body["TaskID"]
    reply = server.call("UpdateLive", {"TaskID": task_id, "Live": []}, key="AKIDbob")
    assert (reply.status, reply.body["ErrorCode"]) == (404, "TaskNotFound"), reply.body
    unsigned = server.call("UpdateLive", {"TaskID": task_id, "Live": []})
    assert unsigned.status == 401, unsigned.body


def test_a_task_that_does_not_record_is_refused_like_a_control(make_server, tmp_path) -> None:
    """normal (queued, or its recorder not started yet) and finished: InvalidAction, in the
    words of the controls (Resume while recording); the task's files keep the Start list."""
    server: LiveServer = make_server(recorder_command=STAND_IN, max_concurrent=1)
    first = server.call("Start", {"RecordURL": "http://127.0.0.1:9/",
                                  "Output": {"Live": [{"Url": RTMP}]}}).body["TaskID"]
    queued = server.call("Start", {"RecordURL": "http://127.0.0.1:9/"}).body["TaskID"]
    assert describe(server, queued)["Status"] == "normal"
    for task_id in (first, queued):
        status, body = update(server, task_id, [{"Url": SRT}])
        assert (status, body["ErrorCode"]) == (409, "InvalidAction"), body
        assert body["ErrorMessage"] == ("UpdateLive is not allowed while the task is 'normal' "
                                        "(allowed when: paused, recording)"), body
    task_file = server.backend.task_dir(first) / "task.json"
    assert [o["url"] for o in json.loads(task_file.read_text())["spec"]["output"]["live"]] == [RTMP]

    assert server.call("Stop", {"TaskID": queued}).status == 200  # ends it before it started
    wait_for(lambda: describe(server, queued), lambda d: d["Status"] == "finished", 10, "finished")
    status, body = update(server, queued, [])
    assert (status, body["ErrorCode"]) == (409, "InvalidAction"), body
    assert body["ErrorMessage"] == ("UpdateLive is not allowed while the task is 'finished' "
                                    "(allowed when: paused, recording)"), body


def test_openapi_documents_update_live(server: LiveServer) -> None:
    doc = server.request("GET", "/openapi.json").body
    schemas = doc["components"]["schemas"]
    assert schemas["UpdateLiveRequest"]["properties"]["Action"] == {"const": "UpdateLive"}
    assert schemas["UpdateLiveRequest"]["properties"]["Data"]["$ref"].endswith("/LiveUpdateData")
    data = schemas["LiveUpdateData"]
    assert data["required"] == ["TaskID", "Live"] and data["additionalProperties"] is False
    assert data["properties"]["Live"]["maxItems"] == 5
    assert data["properties"]["Live"]["items"]["$ref"].endswith("/LiveData")
    post = doc["paths"]["/"]["post"]
    assert "UpdateLive" in post["summary"]
    assert {"$ref": "#/components/schemas/UpdateLiveRequest"} in \
        post["requestBody"]["content"]["application/json"]["schema"]["oneOf"]
    # The documented example is a valid body (an unknown task here).
    reply = server.post_raw(json.dumps(pm.EXAMPLES["UpdateLive"]).encode())
    assert reply.body["ErrorCode"] == "TaskNotFound", reply.body


def test_old_callers_bodies_are_unchanged() -> None:
    for name in ("Start", "StartMinimal", "Pause", "Stop", "Describe", "List"):
        action, _ = pm.parse_envelope(pm.EXAMPLES[name])
        assert action.value == pm.EXAMPLES[name]["Action"]
    _, data = pm.parse_envelope({"Action": "Start", "Data": {"RecordURL": "http://a.test/"}})
    assert pm.to_spec(data).output.live is None
