"""Property: no input produces a 5xx or a stack trace; every reply is the protocol's JSON.

Bodies are built from strategies: random bytes, random JSON, envelopes with known and unknown
Actions, Data objects with every protocol field given random types and out-of-range values, and
random Authorization headers against a server with authentication on. RecordURLs are drawn so that
no generated Start is both valid and allowed (those would start real recorders; the full flow
test covers them): they are invalid, or aimed at link-local/metadata addresses.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from webrecord.adapter import auth
from webrecord.adapter.settings import AdapterSettings

from .conftest import KEYS, LiveServer, start_live_server

pytestmark = pytest.mark.timeout(280)

FUZZ = settings(
    max_examples=int(os.environ.get("WEBRECORD_FUZZ_EXAMPLES", "250")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

ERROR_KEYS = {"ErrorCode", "ErrorMessage", "RequestID"}


@pytest.fixture(scope="module")
def fuzz_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, LiveServer]]:
    base = tmp_path_factory.mktemp("fuzz")
    open_server, stop_open = start_live_server(
        AdapterSettings(state_dir=base / "open", auth_enabled=False, url_allow_loopback=False,
                        max_body_bytes=16384)
    )
    signed_server, stop_signed = start_live_server(
        AdapterSettings(state_dir=base / "signed", auth_enabled=True)
    )
    try:
        yield open_server, signed_server
    finally:
        stop_open()
        stop_signed()
    # Nothing generated may have created a task (no generated Start was valid and allowed).
    assert not any((base / "open" / "tasks").glob("*"))


def check_reply(server: LiveServer, body: bytes, headers: dict | None = None) -> dict:
    reply = server.post_raw(body, headers)
    text = reply.raw.decode("utf-8", "replace")
    assert reply.status < 500, text
    assert "Traceback" not in text and 'File "' not in text, text
    assert isinstance(reply.body, dict), text
    assert str(uuid.UUID(reply.body["RequestID"])) == reply.body["RequestID"]
    if reply.status != 200:
        assert set(reply.body) == ERROR_KEYS, text
        assert isinstance(reply.body["ErrorCode"], str) and reply.body["ErrorCode"]
        assert isinstance(reply.body["ErrorMessage"], str) and reply.body["ErrorMessage"]
    else:
        assert "ErrorCode" not in reply.body
    return reply.body


json_scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(
    allow_nan=False, allow_infinity=False
) | st.text(max_size=40)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=25,
)
odd_numbers = st.sampled_from([-1, 0, 1, 2560, 2561, 36000, 36001, 2**31, -(2**63), 10**30, 1.5, -0.0])
any_value = json_values | odd_numbers

refused_urls = st.one_of(
    st.text(max_size=30).filter(lambda s: not s.lower().startswith(("http://", "https://"))),
    st.builds(lambda p: "http://169.254.169.254/" + p, st.text(max_size=20)),
    st.sampled_from([
        "http://[fe80::1]/", "http://metadata.google.internal/", "http://2852039166/",
        "http://100.100.100.200/", "http://[::ffff:169.254.169.254]/", "http://127.0.0.1:8080/",
        "https://", "http://", "http://:80/", "http://a:99999/", "http://[zz]/",
    ]),
)

START_FIELDS = ["RecordURL", "ManualStart", "Width", "Height", "CallbackURL", "MaxDurationLimit",
                "StorageType", "Output"]


@st.composite
def start_data(draw: st.DrawFn) -> dict:
    data: dict = {"RecordURL": draw(refused_urls | any_value.filter(lambda v: not isinstance(v, str)))}
    for name in draw(st.lists(st.sampled_from(START_FIELDS[1:]), unique=True)):
        data[name] = draw(any_value)
    if draw(st.booleans()):
        data["Output"] = draw(st.fixed_dictionaries({}, optional={
            "Cos": st.dictionaries(st.sampled_from(["Domain", "Bucket", "Region", "TargetDir", "TargetName", "X"]), any_value),
            "Vod": st.fixed_dictionaries({}, optional={
                "MediaInfo": st.dictionaries(st.sampled_from(["MediaName", "ExpireTime", "StorageRegion", "ClassId", "SourceContext"]), any_value),
                "ProcedureInfo": st.dictionaries(st.sampled_from(["Procedure", "SessionContext"]), any_value),
                "SubAppId": any_value,
            }),
            "Video": st.dictionaries(st.sampled_from(["Muxer", "EncryptKey", "AuthUrl"]),
                                     any_value | st.sampled_from(["mp4", "hls", "00112233445566778899aabbccddeeff"])),
        }))
    return data


actions = st.sampled_from(["Start", "Pause", "Resume", "Refresh", "Stop", "Cancel", "Describe", "List"]) | st.text(max_size=12)
task_ids = st.text(max_size=70) | st.from_regex(r"wr-[0-9a-f]{24}", fullmatch=True) | any_value


@st.composite
def envelopes(draw: st.DrawFn) -> object:
    action = draw(actions | any_value)
    kind = draw(st.sampled_from(["start", "task", "list", "random", "missing"]))
    env: dict = {"Action": action}
    if kind == "start":
        env["Data"] = draw(start_data())
    elif kind == "task":
        env["Data"] = {"TaskID": draw(task_ids)}
    elif kind == "list":
        env["Data"] = draw(st.fixed_dictionaries({}, optional={"Offset": any_value, "Limit": any_value}))
    elif kind == "random":
        env["Data"] = draw(any_value)
    if draw(st.integers(0, 9)) == 0:
        env[draw(st.text(max_size=8))] = draw(any_value)
    return env


@FUZZ
@given(body=st.binary(max_size=300))
def test_random_bytes(fuzz_servers: tuple[LiveServer, LiveServer], body: bytes) -> None:
    check_reply(fuzz_servers[0], body)


@FUZZ
@given(value=json_values)
def test_random_json(fuzz_servers: tuple[LiveServer, LiveServer], value: object) -> None:
    check_reply(fuzz_servers[0], json.dumps(value).encode())


@FUZZ
@given(envelope=envelopes())
def test_envelopes(fuzz_servers: tuple[LiveServer, LiveServer], envelope: object) -> None:
    body = check_reply(fuzz_servers[0], json.dumps(envelope).encode())
    if body.get("ErrorCode") == "UnsupportedAction":
        assert body["ErrorMessage"].startswith("Action: ")


@FUZZ
@given(data=start_data())
def test_start_fields(fuzz_servers: tuple[LiveServer, LiveServer], data: dict) -> None:
    body = check_reply(fuzz_servers[0], json.dumps({"Action": "Start", "Data": data}).encode())
    assert body["ErrorCode"] in {"InvalidParam", "MissingParam", "UrlNotAllowed"}
    assert body["ErrorMessage"].startswith("Data")


@FUZZ
@given(
    authorization=st.text(max_size=120) | st.builds(
        lambda i, a, h, s: f'hmac id="{i}", algorithm="{a}", headers="{h}", signature="{s}"',
        st.sampled_from(list(KEYS)) | st.text(max_size=10).filter(lambda t: '"' not in t),
        st.sampled_from(["hmac-sha1", "hmac-sha256", "hmac-md5", ""]),
        st.sampled_from(["x-date", "x-date source", "date", ""]),
        st.text(max_size=30).filter(lambda t: '"' not in t),
    ),
    x_date=st.none() | st.text(max_size=40) | st.sampled_from([auth.http_date(), "Mon, 01 Jan 1900 00:00:00 GMT"]),
    md5=st.none() | st.text(max_size=30),
)
def test_random_authorization(fuzz_servers: tuple[LiveServer, LiveServer], authorization: str,
                              x_date: str | None, md5: str | None) -> None:
    headers = {"authorization": authorization.replace("\r", " ").replace("\n", " ")}
    if x_date is not None:
        headers["x-date"] = x_date.replace("\r", " ").replace("\n", " ")
    if md5 is not None:
        headers["content-md5"] = md5.replace("\r", " ").replace("\n", " ")
    headers = {k: v.encode("latin-1", "replace").decode("latin-1") for k, v in headers.items()}
    body = check_reply(fuzz_servers[1], b'{"Action": "List"}', headers)
    # Control characters in a header make the request invalid HTTP: MalformedRequest.
    assert body["ErrorCode"].startswith("AuthFailure.") or body["ErrorCode"] == "MalformedRequest"
