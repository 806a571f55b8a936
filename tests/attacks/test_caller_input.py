"""Hostile Start requests through real HTTP (the adapter on loopback): names that climb out of
the output area, URLs that parse differently in the browser than in a naive check, key-info
injection through AuthUrl, buckets outside the caller's list, key enumeration. Every case is
refused with a clear error naming the field and the rule, and nothing reaches the "forbidden"
loopback server (loopback is refused on these servers). See README.md for the table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from adapter.conftest import KEYS, LiveServer
from webrecord.adapter import auth
from webrecord.api.models import VideoOutput
from webrecord.recorder.errors import RecorderError
from webrecord.recorder.package import package_hls
from webrecord.recorder.settings import RecorderSettings

from .egress_servers import HitServer

pytestmark = pytest.mark.timeout(120)


def _start(server: LiveServer, data: dict, key: str | None = None) -> dict:
    reply = server.call("Start", {"RecordURL": "https://example.test/", **data}, key=key)
    assert reply.status < 500 and "Traceback" not in reply.raw.decode(), reply.raw
    return {"status": reply.status, **reply.body}


def _no_task_started(server: LiveServer) -> None:
    tasks = Path(server.settings.state_dir) / "tasks"
    assert not tasks.exists() or not any(tasks.iterdir())


# ---------------------------------------------------------------- traversal


TRAVERSAL = [
    ("TargetDir", "../x", "must not contain '.' or '..' path segments"),
    ("TargetDir", "a/../../x", "must not contain '.' or '..' path segments"),
    ("TargetDir", "..", "must not contain '.' or '..' path segments"),
    ("TargetDir", "/etc/x", "must be a relative path (no leading '/')"),
    ("TargetDir", "..\\x", "must not contain a backslash"),
    ("TargetDir", "a\\..\\..\\x", "must not contain a backslash"),
    ("TargetDir", "a\x00b", "must not contain control characters or NUL"),
    ("TargetDir", "a\nb", "must not contain control characters or NUL"),
    ("TargetName", "../x", "must be a file name without '/'"),
    ("TargetName", "/etc/x", "must be a relative path (no leading '/')"),
    ("TargetName", "..", "must not contain '.' or '..' path segments"),
    ("TargetName", ".", "must not contain '.' or '..' path segments"),
    ("TargetName", "..\\x", "must not contain a backslash"),
    ("TargetName", "x\x00.mp4", "must not contain control characters or NUL"),
]


@pytest.mark.parametrize(("field", "value", "rule"), TRAVERSAL)
def test_traversal_names_refused(server: LiveServer, field: str, value: str, rule: str) -> None:
    body = _start(server, {"Output": {"Cos": {field: value}}})
    assert body["ErrorCode"] == "InvalidParam", body
    assert body["ErrorMessage"] == f"Data.Output.Cos.{field}: {rule}"
    _no_task_started(server)


# ---------------------------------------------------------------- URL parser differentials


def _differentials(port: int) -> list[tuple[str, str, str]]:
    """(RecordURL, ErrorCode, message fragment): each aims at the forbidden 127.0.0.1:port."""
    return [
        # urlsplit: host example.com; the browser: 127.0.0.1, path /@example.com/
        (f"http://127.0.0.1:{port}\\@example.com/", "InvalidParam", "must not contain backslashes"),
        (f"http://example.com@127.0.0.1:{port}/", "InvalidParam", "must not contain credentials"),
        (f"http://user:pw@127.0.0.1:{port}/", "InvalidParam", "must not contain credentials"),
        (f"http://2130706433:{port}/", "InvalidParam", "ambiguous form of 127.0.0.1"),
        (f"http://0177.0.0.1:{port}/", "InvalidParam", "ambiguous form of 127.0.0.1"),
        (f"http://0x7f.1:{port}/", "InvalidParam", "ambiguous form of 127.0.0.1"),
        (f"http://127.1:{port}/", "InvalidParam", "ambiguous form of 127.0.0.1"),
        (f"http://127.0.0.1.:{port}/", "InvalidParam", "ambiguous form of 127.0.0.1"),
        (f"http://%31%32%37.0.0.1:{port}/", "InvalidParam", "ambiguous form of 127.0.0.1"),
        (f"http://\uff11\uff12\uff17.0.0.1:{port}/", "InvalidParam", "ambiguous form of 127.0.0.1"),
        (f"http://[::ffff:127.0.0.1]:{port}/", "InvalidParam", "embeds the IPv4 address 127.0.0.1"),
        (f"http://[::127.0.0.1]:{port}/", "InvalidParam", "embeds the IPv4 address 127.0.0.1"),
        # IDN: the browser maps these to "localhost" (IDNA), which resolves to loopback.
        (f"http://\u24db\u24de\u24d2\u24d0\u24db\u24d7\u24de\u24e2\u24e3:{port}/", "UrlNotAllowed",
         "host 'localhost' resolves to"),
        (f"http://LOCALHOST.:{port}/", "UrlNotAllowed", "host 'localhost' resolves to"),
        (f"http://127.0.0.1:{port}/", "UrlNotAllowed", "a loopback address"),
        (f"http://[::1]:{port}/", "UrlNotAllowed", "a loopback address"),
        (f"file:///etc/passwd", "InvalidParam", "must be an http:// or https:// URL"),
        (f"javascript:fetch('http://127.0.0.1:{port}/')", "InvalidParam",
         "must be an http:// or https:// URL"),
        (f"http://127.0.0.1:{port}/\r\nHost: x", "InvalidParam", "control characters"),
    ]


def test_url_parser_differentials_refused(make_server, forbidden: HitServer) -> None:
    server = make_server(url_allow_loopback=False)
    for field in ("RecordURL", "CallbackURL"):
        for url, code, fragment in _differentials(forbidden.port):
            body = _start(server, {field: url})
            assert body["ErrorCode"] == code, (field, url, body)
            assert body["ErrorMessage"].startswith(f"Data.{field}: "), body
            assert fragment in body["ErrorMessage"], (url, body)
    _no_task_started(server)
    assert forbidden.hits == []


# ---------------------------------------------------------------- AuthUrl injection


def test_auth_url_key_info_injection_refused(server: LiveServer) -> None:
    # ffmpeg's key-info file is "URI\nkey path\nIV": a line break picks the key file and IV.
    evil = "https://keys.example.test/k\n/etc/hostname\n00000000000000000000000000000000"
    for url in (evil, "https://keys.example.test/k\r/etc/hostname", "/etc/hostname"):
        body = _start(server, {"Output": {"Video": {
            "Muxer": "hls", "EncryptKey": "00112233445566778899aabbccddeeff", "AuthUrl": url}}})
        assert body["ErrorCode"] == "InvalidParam", (url, body)
        assert body["ErrorMessage"].startswith("Data.Output.Video.AuthUrl: must"), body
    _no_task_started(server)


def test_auth_url_cannot_break_the_playlist_attribute() -> None:
    # URI="..." in #EXT-X-KEY: a quote would end the attribute; the browser's serialisation
    # (what is stored and written) percent-encodes it.
    video = VideoOutput(muxer="hls", auth_url='https://keys.example.test/k",IV=0x00')
    assert video.auth_url == "https://keys.example.test/k%22,IV=0x00"


async def test_key_info_file_guarded_below_the_models(tmp_path: Path) -> None:
    """Even a task that skipped validation cannot write a second line into the key-info file."""
    with pytest.raises(RecorderError) as caught:
        await package_hls([], tmp_path / "out" / "v.m3u8", tmp_path, RecorderSettings(),
                          encrypt_key="00112233445566778899aabbccddeeff",
                          auth_url="https://k.test/\n/etc/hostname")
    assert caught.value.code.value == "InvalidParam"
    assert not (tmp_path / "hls.keyinfo").exists()


# ---------------------------------------------------------------- buckets, keys


def test_bucket_outside_the_key_allow_list(make_server, tmp_path: Path) -> None:
    keys = tmp_path / "keys.yaml"
    keys.write_text(json.dumps([
        {"key": "AKIDalice", "secret": KEYS["AKIDalice"], "buckets": ["alice-videos"]},
        {"key": "AKIDbob", "secret": KEYS["AKIDbob"]},
    ]))
    server = make_server(auth_enabled=True, auth_keys_file=keys, allowed_buckets="shared")
    cases = [
        ("AKIDalice", "bob-videos", "InvalidParam"),
        ("AKIDalice", "shared", "InvalidParam"),  # her own list replaces the default
        ("AKIDbob", "alice-videos", "InvalidParam"),
        # Allowed buckets pass this check; the metadata RecordURL then stops the Start.
        ("AKIDalice", "alice-videos", "UrlNotAllowed"),
        ("AKIDbob", "shared", "UrlNotAllowed"),
    ]
    for key, bucket, code in cases:
        body = _start(server, {"RecordURL": "http://169.254.169.254/",
                               "Output": {"Cos": {"Bucket": bucket}}}, key=key)
        assert body["ErrorCode"] == code, (key, bucket, body)
        if code == "InvalidParam":
            assert body["ErrorMessage"] == (
                f"Data.Output.Cos.Bucket: {bucket!r} is not among the buckets allowed for "
                "this ApiAppKey")
    _no_task_started(server)


def test_bucket_lists_for_keys_from_a_directory(make_server, tmp_path: Path) -> None:
    """Keys mounted as a Secret directory carry no bucket lists: a separate file names them."""
    lists = tmp_path / "buckets.yaml"
    lists.write_text("AKIDbob: [bob-videos]\n")
    server = make_server(auth_enabled=True, key_buckets_file=lists)
    for bucket, code in (("alice-videos", "InvalidParam"), ("bob-videos", "UrlNotAllowed")):
        body = _start(server, {"RecordURL": "http://169.254.169.254/",
                               "Output": {"Cos": {"Bucket": bucket}}}, key="AKIDbob")
        assert body["ErrorCode"] == code, (bucket, body)
    _no_task_started(server)


def test_unknown_key_and_bad_signature_are_indistinguishable(signed_server: LiveServer) -> None:
    body = json.dumps({"Action": "List", "Data": {}}).encode()
    unknown = signed_server.post_raw(body, auth.sign_headers("AKIDmallory", "guess", body))
    wrong = signed_server.post_raw(body, auth.sign_headers("AKIDalice", "guess", body))
    assert unknown.status == wrong.status == 401
    assert unknown.body["ErrorCode"] == wrong.body["ErrorCode"] == "AuthFailure.SignatureFailure"
    assert unknown.body["ErrorMessage"] == wrong.body["ErrorMessage"]
    assert set(unknown.body) == set(wrong.body) == {"ErrorCode", "ErrorMessage", "RequestID"}
