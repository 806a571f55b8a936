"""The API gateway application signature: known vectors, and the server refusing wrong secrets,
stale X-Date, replays, tampered bodies; tasks visible only to the key that created them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from webrecord.adapter import auth
from webrecord.api.protocol.errors import ApiError
from webrecord.api.models import RecorderStatus, RecordingSpec

from .conftest import KEYS, LiveServer

pytestmark = pytest.mark.timeout(120)

# ---------------------------------------------------------------- known vectors
#
# Request: POST / with body {"Action":"Describe","Data":{"TaskID":"wr-1"}}
#   Accept: application/json, Content-Type: application/json,
#   X-Date: Wed, 25 Nov 2026 13:00:00 GMT, ApiAppKey AKIDalice / alice-secret-0123456789
# Content-MD5 = base64(hex(md5(body))) = base64("c99cae6ff7c397693956f8c2ede4eb8b")
# Signing string (lines joined by "\n", no trailing newline):
#   x-date: Wed, 25 Nov 2026 13:00:00 GMT
#   POST
#   application/json
#   application/json
#   Yzk5Y2FlNmZmN2MzOTc2OTM5NTZmOGMyZWRlNGViOGI=
#   /
# Expected signatures computed independently with
#   openssl dgst -sha1|-sha256 -hmac 'alice-secret-0123456789' -binary sts.txt | base64
VECTOR_BODY = b'{"Action":"Describe","Data":{"TaskID":"wr-1"}}'
VECTOR_DATE = "Wed, 25 Nov 2026 13:00:00 GMT"
VECTOR_AT = 1795611600.0  # that date as unix seconds
VECTOR_MD5 = "Yzk5Y2FlNmZmN2MzOTc2OTM5NTZmOGMyZWRlNGViOGI="
VECTOR_STS = (
    "x-date: Wed, 25 Nov 2026 13:00:00 GMT\nPOST\napplication/json\napplication/json\n"
    "Yzk5Y2FlNmZmN2MzOTc2OTM5NTZmOGMyZWRlNGViOGI=\n/"
)
VECTOR_SHA1 = "HQGPA8PTO2WwDGsfNM5JrkRTUP4="
VECTOR_SHA256 = "CDyZNEfqymbr28Wabd0v50KUPezbMe43tKndRs4c/k8="
# GET /healthz?b=x y&a=1, two signed headers, no body/Accept/Content-Type (empty lines).
VECTOR2_STS = (
    "x-date: Wed, 25 Nov 2026 13:00:00 GMT\nsource: webrecord-test\nGET\n\n\n\n/healthz?a=1&b=x y"
)
VECTOR2_SHA1 = "LB8SauSFPCdhYylVOpgu6F8JFtg="


def _vector_request(signature: str, algorithm: str = "hmac-sha1") -> auth.SignedRequest:
    headers = {
        "accept": "application/json",
        "content-type": "application/json",
        "content-md5": VECTOR_MD5,
        "x-date": VECTOR_DATE,
        "authorization": f'hmac id="AKIDalice", algorithm="{algorithm}", headers="x-date", '
        f'signature="{signature}"',
    }
    return auth.SignedRequest("POST", "/", {}, headers, VECTOR_BODY)


def test_known_vector_pieces() -> None:
    assert auth.content_md5(VECTOR_BODY) == VECTOR_MD5
    assert auth.http_date(VECTOR_AT) == VECTOR_DATE
    req = _vector_request("")
    assert auth.signing_string(req, ["x-date"]) == VECTOR_STS
    # by hand, with the standard library only
    digest = hmac.new(b"alice-secret-0123456789", VECTOR_STS.encode(), hashlib.sha1).digest()
    assert base64.b64encode(digest).decode() == VECTOR_SHA1
    assert auth.sign(KEYS["AKIDalice"], VECTOR_STS) == VECTOR_SHA1
    assert auth.sign(KEYS["AKIDalice"], VECTOR_STS, "hmac-sha256") == VECTOR_SHA256


def test_known_vector_client_signer() -> None:
    headers = auth.sign_headers("AKIDalice", KEYS["AKIDalice"], VECTOR_BODY, at=VECTOR_AT)
    assert headers["x-date"] == VECTOR_DATE
    assert headers["content-md5"] == VECTOR_MD5
    assert headers["authorization"] == (
        f'hmac id="AKIDalice", algorithm="hmac-sha1", headers="x-date", signature="{VECTOR_SHA1}"'
    )


def test_known_vector_with_query_and_two_headers() -> None:
    req = auth.SignedRequest(
        "GET", "/healthz", {"b": "x y", "a": "1"},
        {"x-date": VECTOR_DATE, "source": "webrecord-test"}, b"",
    )
    assert auth.signing_string(req, ["x-date", "source"]) == VECTOR2_STS
    assert auth.sign(KEYS["AKIDalice"], VECTOR2_STS) == VECTOR2_SHA1


@pytest.mark.parametrize(("algorithm", "signature"), [("hmac-sha1", VECTOR_SHA1), ("hmac-sha256", VECTOR_SHA256)])
def test_verify_known_vector(algorithm: str, signature: str) -> None:
    verifier = auth.Authenticator(KEYS)
    assert verifier.verify(_vector_request(signature, algorithm), now=VECTOR_AT + 60).key == "AKIDalice"


def _code(verifier: auth.Authenticator, req: auth.SignedRequest, now: float) -> str:
    with pytest.raises(ApiError) as info:
        verifier.verify(req, now=now)
    return info.value.code.value


def test_verify_refusals_on_the_vector() -> None:
    verifier = auth.Authenticator(KEYS)
    good = _vector_request(VECTOR_SHA1)
    assert _code(verifier, good, VECTOR_AT + 16 * 60) == "AuthFailure.DateExpired"
    assert _code(verifier, good, VECTOR_AT - 16 * 60) == "AuthFailure.DateExpired"
    wrong_secret = auth.sign("not-the-secret", VECTOR_STS)
    assert _code(verifier, _vector_request(wrong_secret), VECTOR_AT) == "AuthFailure.SignatureFailure"
    assert _code(verifier, _vector_request(VECTOR_SHA1, "hmac-md5"), VECTOR_AT) == "AuthFailure.UnsupportedAlgorithm"
    tampered = auth.SignedRequest("POST", "/", {}, dict(good.headers), VECTOR_BODY.replace(b"wr-1", b"wr-2"))
    assert _code(verifier, tampered, VECTOR_AT) == "AuthFailure.ContentMD5Mismatch"
    # 14 minutes off is inside the window; the second use of the same signature is a replay.
    verified = verifier.verify(good, now=VECTOR_AT + 14 * 60)
    assert verified.key == "AKIDalice"
    verifier.remember(verified, now=VECTOR_AT + 14 * 60)
    with pytest.raises(ApiError) as info:
        verifier.remember(verifier.verify(good, now=VECTOR_AT + 14 * 60), now=VECTOR_AT + 14 * 60)
    assert info.value.code.value == "AuthFailure.RequestReplayed"


def test_replay_cache_forgets_each_signature_at_the_end_of_its_own_window() -> None:
    cache = auth.ReplayCache(max_entries=1000)
    assert cache.check_and_add("a", expires=100.0, now=10.0)
    assert cache.check_and_add("b", expires=200.0, now=20.0)
    assert not cache.check_and_add("a", expires=100.0, now=99.0)  # a replay inside its window
    assert len(cache) == 2
    assert cache.check_and_add("a", expires=300.0, now=100.0)  # its window is over: new again
    assert not cache.check_and_add("b", expires=200.0, now=150.0)
    assert len(cache) == 2 and cache.check_and_add("c", expires=400.0, now=250.0)
    assert len(cache) == 2  # b expired at 200: only a and c are kept


def test_replay_cache_is_bounded_and_drops_the_oldest() -> None:
    cache = auth.ReplayCache(max_entries=1000)
    for i in range(1500):
        assert cache.check_and_add(f"sig-{i}", expires=1e9, now=1.0)
    assert len(cache) == 1000
    assert cache.check_and_add("sig-0", expires=1e9, now=2.0)  # evicted: the oldest
    assert not cache.check_and_add("sig-1499", expires=1e9, now=2.0)  # the newest is kept


@pytest.mark.parametrize(
    ("header", "code"),
    [
        ("Bearer abc", "AuthFailure.MalformedAuthorization"),
        ('hmac id="AKIDalice", algorithm="hmac-sha1"', "AuthFailure.MalformedAuthorization"),
        ('hmac id="AKIDalice" algorithm', "AuthFailure.MalformedAuthorization"),
        ('hmac id="AKIDalice", algorithm="hmac-sha1", headers="source", signature="x"', "AuthFailure.DateMissing"),
        ('hmac id="nobody", algorithm="hmac-sha1", headers="x-date", signature="x"', "AuthFailure.SignatureFailure"),
    ],
)
def test_malformed_authorization(header: str, code: str) -> None:
    req = _vector_request(VECTOR_SHA1)
    headers = dict(req.headers, authorization=header)
    verifier = auth.Authenticator(KEYS)
    assert _code(verifier, auth.SignedRequest("POST", "/", {}, headers, VECTOR_BODY), VECTOR_AT) == code


# ---------------------------------------------------------------- through real HTTP


def _signed(server: LiveServer, body: bytes, key: str = "AKIDalice", secret: str | None = None,
            at: float | None = None) -> dict:
    return auth.sign_headers(key, secret or KEYS[key], body, at=at)


def test_http_signed_request_accepted(signed_server: LiveServer) -> None:
    body = json.dumps({"Action": "List", "Data": {}}).encode()
    reply = signed_server.post_raw(body, _signed(signed_server, body))
    assert reply.status == 200, reply.body
    assert reply.body["TotalCount"] == 0


def test_http_refusals(signed_server: LiveServer) -> None:
    body = json.dumps({"Action": "List", "Data": {}}).encode()
    cases = {
        "missing": ({}, "AuthFailure.SignatureMissing"),
        "wrong secret": (_signed(signed_server, body, secret="wrong"), "AuthFailure.SignatureFailure"),
        "stale": (_signed(signed_server, body, at=time.time() - 16 * 60), "AuthFailure.DateExpired"),
        "future": (_signed(signed_server, body, at=time.time() + 16 * 60), "AuthFailure.DateExpired"),
        "unknown key": (auth.sign_headers("AKIDmallory", "x", body), "AuthFailure.SignatureFailure"),
    }
    for name, (headers, code) in cases.items():
        reply = signed_server.post_raw(body, headers)
        assert (reply.status, reply.body["ErrorCode"]) == (401, code), name
        assert "Traceback" not in reply.raw.decode()


def test_http_replay_refused(signed_server: LiveServer) -> None:
    _insert_task(signed_server, "wr-replay-1", "AKIDalice")
    body = json.dumps({"Action": "Cancel", "Data": {"TaskID": "wr-replay-1"}}).encode()
    headers = _signed(signed_server, body)
    first = signed_server.post_raw(body, headers)
    again = signed_server.post_raw(body, headers)
    assert first.status == 200, first.body
    assert (again.status, again.body["ErrorCode"]) == (401, "AuthFailure.RequestReplayed")
    assert again.body["ErrorMessage"] == "Authorization.signature: already used; sign every request anew"
    # A Start replayed is refused the same way (before it could create a second task).
    start = json.dumps({"Action": "Start", "Data": {"RecordURL": "http://169.254.169.254/"}}).encode()
    headers = _signed(signed_server, start)
    assert signed_server.post_raw(start, headers).body["ErrorCode"] == "UrlNotAllowed"
    assert signed_server.post_raw(start, headers).body["ErrorCode"] == "AuthFailure.RequestReplayed"


def test_http_identical_reads_are_not_replays(signed_server: LiveServer) -> None:
    # Pollers send byte-identical Describes within one X-Date second; reads change nothing.
    body = json.dumps({"Action": "List", "Data": {"Limit": 5}}).encode()
    headers = _signed(signed_server, body)
    assert [signed_server.post_raw(body, headers).status for _ in range(3)] == [200, 200, 200]


def test_http_body_swapped_under_a_signature(signed_server: LiveServer) -> None:
    body = json.dumps({"Action": "List", "Data": {}}).encode()
    headers = _signed(signed_server, body)
    other = json.dumps({"Action": "List", "Data": {"Limit": 1}}).encode()
    reply = signed_server.post_raw(other, headers)
    assert reply.body["ErrorCode"] == "AuthFailure.ContentMD5Mismatch"
    headers["content-md5"] = auth.content_md5(other)
    reply = signed_server.post_raw(other, headers)
    assert reply.body["ErrorCode"] == "AuthFailure.SignatureFailure"


def _insert_task(server: LiveServer, task_id: str, owner: str) -> None:
    async def insert() -> None:
        spec = RecordingSpec(record_url="http://127.0.0.1/")
        status = RecorderStatus(task_id=task_id, create_time=int(time.time()), message="queued")
        server.backend.store.insert(task_id, owner, spec, status, int(time.time()))

    server.run(insert())


def test_tasks_are_visible_only_to_their_key(signed_server: LiveServer) -> None:
    # Tasks written straight into the real store as queued (no recorder needed to test ownership).
    _insert_task(signed_server, "wr-alice-1", "AKIDalice")
    _insert_task(signed_server, "wr-bob-1", "AKIDbob")
    alice = signed_server.call("Describe", {"TaskID": "wr-alice-1"}, key="AKIDalice")
    assert alice.status == 200 and alice.body["Status"] == "normal"
    for action in ("Describe", "Pause", "Stop", "Cancel"):
        foreign = signed_server.call(action, {"TaskID": "wr-alice-1"}, key="AKIDbob")
        assert (foreign.status, foreign.body["ErrorCode"]) == (404, "TaskNotFound"), action
        assert foreign.body["ErrorMessage"] == "Data.TaskID: no task 'wr-alice-1' for this ApiAppKey"
    listed = signed_server.call("List", {}, key="AKIDbob").body
    assert [t["TaskID"] for t in listed["Tasks"]] == ["wr-bob-1"] and listed["TotalCount"] == 1
    # The owner can control it: Cancel of a queued task finishes it without a video.
    assert signed_server.call("Cancel", {"TaskID": "wr-alice-1"}, key="AKIDalice").status == 200
    done = signed_server.call("Describe", {"TaskID": "wr-alice-1"}, key="AKIDalice").body
    assert done["Status"] == "finished" and done["Result"]["ErrorCode"] == "Canceled"
    assert "CancelTime" in done and "FinishTime" in done and "StartTime" not in done


def test_load_keys_file_and_secret_dir(tmp_path: Path) -> None:
    yaml_file = tmp_path / "keys.yaml"
    yaml_file.write_text("AKIDone: secret-one\nAKIDtwo: secret-two\n")
    json_file = tmp_path / "keys.json"
    json_file.write_text(json.dumps({"keys": [{"key": "AKIDthree", "secret": "secret-three"}]}))
    secret_dir = tmp_path / "secret"
    (secret_dir / "..data").mkdir(parents=True)
    (secret_dir / "AKIDfour").write_text("secret-four\n")
    assert auth.load_keys(yaml_file) == {"AKIDone": "secret-one", "AKIDtwo": "secret-two"}
    assert auth.load_keys(json_file, secret_dir) == {"AKIDthree": "secret-three", "AKIDfour": "secret-four"}
    (tmp_path / "empty.yaml").write_text("AKIDfive: ''\n")
    with pytest.raises(ValueError, match="empty"):
        auth.load_keys(tmp_path / "empty.yaml")


def _serve(tmp_path: Path, *args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, "-m", "webrecord.adapter", "serve", "--port", "0",
         "--port-file", str(tmp_path / "port"), "--state-dir", str(tmp_path / "state"), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )


def _wait_port(proc: subprocess.Popen, port_file: Path) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if port_file.exists():
            return int(port_file.read_text())
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        time.sleep(0.05)
    raise AssertionError("serve did not write its port")


@pytest.mark.timeout(60)
def test_serve_command_with_key_file(tmp_path: Path) -> None:
    import http.client

    keys = tmp_path / "keys.yaml"
    keys.write_text("AKIDcli: cli-secret\n")
    proc = _serve(tmp_path, "--auth-keys", str(keys))
    try:
        port = _wait_port(proc, tmp_path / "port")
        body = b'{"Action": "List"}'
        for headers, status in ((auth.sign_headers("AKIDcli", "cli-secret", body), 200), ({}, 401)):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("POST", "/", body=body, headers=headers)
            assert conn.getresponse().status == status
            conn.close()
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert b"application keys loaded" in err


@pytest.mark.timeout(60)
def test_serve_refuses_to_start_without_keys_and_warns_without_auth(tmp_path: Path) -> None:
    proc = _serve(tmp_path)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert b"no keys are configured" in err
    proc = _serve(tmp_path, "--no-auth")
    try:
        _wait_port(proc, tmp_path / "port")
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert b"AUTHENTICATION IS OFF" in err and b'"level": "warning"' in err
