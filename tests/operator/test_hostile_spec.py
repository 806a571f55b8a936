"""Hostile WebRecordings against the real API server and the operator: what the CRD's rules
refuse at create, what the operator refuses with an InvalidParam status, and where an HLS key
lives (a Secret, never the spec, kopf's annotations or the pod)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import yaml

from opkit import Kube, recording, wait_for
from webrecord.adapter.backends import kubernetes as kbackend
from webrecord.adapter.settings import AdapterSettings
from webrecord.api.models import RecordingSpec, RecordingTask

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]

KEY = "00112233445566778899aabbccddeeff"


def _create(kube: Kube, manifest: dict[str, Any]) -> tuple[int, str]:
    result = kube.kubectl("create", "-f", "-", input=yaml.safe_dump(manifest), check=False)
    return result.returncode, result.stderr


@pytest.mark.parametrize(("cos", "message"), [
    ({"targetDir": "../x"}, "targetDir must not contain '.' or '..' path segments"),
    ({"targetDir": "a/../../x"}, "targetDir must not contain '.' or '..' path segments"),
    ({"targetDir": "/etc"}, "targetDir must be a relative path (no leading '/')"),
    ({"targetDir": "..\\x"}, "targetDir must not contain a backslash"),
    ({"targetDir": "a\u0000b"}, "targetDir must not contain control characters or NUL"),
    ({"targetName": "a/b"}, "targetName must be a file name without '/'"),
    ({"targetName": ".."}, "targetName must not contain '.' or '..' path segments"),
    ({"targetName": "x\ny"}, "targetName must not contain control characters or NUL"),
])
def test_api_server_refuses_traversal(kube: Kube, cos: dict[str, str], message: str) -> None:
    code, err = _create(kube, recording("trav", output={"cos": cos}))
    assert code != 0 and message in err, err
    assert kube.get("webrecording", "trav") is None


@pytest.mark.parametrize(("spec", "message"), [
    ({"recordUrl": "http://127.0.0.1:9\\@example.com/"},
     "recordUrl must not contain backslashes, spaces or control characters"),
    ({"callbackUrl": "http://cb.test/\r\nX: y"},
     "callbackUrl must not contain backslashes, spaces or control characters"),
    ({"output": {"video": {"muxer": "hls", "authUrl": "https://k.test/k\n/etc/hostname"}}},
     "authUrl must not contain backslashes, spaces or control characters"),
])
def test_api_server_refuses_url_characters(kube: Kube, spec: dict[str, Any], message: str) -> None:
    code, err = _create(kube, recording("bad-url", **spec))
    assert code != 0 and message in err, err


@pytest.mark.parametrize(("video", "message"), [
    ({"frameRate": 4}, "should be greater than or equal to 5"),
    ({"frameRate": 61}, "should be less than or equal to 60"),
    ({"videoBitrate": 50}, "should be greater than or equal to 100"),
    ({"quality": 52}, "should be less than or equal to 51"),
    ({"keyframeInterval": 0.1}, "should be greater than or equal to 0.5"),
    ({"audioBitrate": 400}, "should be less than or equal to 320"),
    ({"videoBitrate": 800, "quality": 20}, "give videoBitrate or quality, not both"),
    ({"audioOnly": True, "muxer": "hls"}, "audioOnly requires muxer 'mp4'"),
    ({"audioOnly": True, "frameRate": 30}, "audioOnly records no video"),
])
def test_api_server_refuses_bad_encoding(kube: Kube, video: dict[str, Any], message: str) -> None:
    code, err = _create(kube, recording("bad-enc", output={"video": video}))
    assert code != 0 and message in err, err
    assert kube.get("webrecording", "bad-enc") is None


@pytest.mark.parametrize(("idle", "message"), [
    ({"seconds": 4}, "should be greater than or equal to 5"),
    ({"action": "cancel"}, 'supported values: "stop", "pause"'),
    ({"blankSeconds": 4000}, "should be less than or equal to 3600"),
])
def test_api_server_refuses_bad_idle(kube: Kube, idle: dict[str, Any], message: str) -> None:
    code, err = _create(kube, recording("bad-idle", idle=idle))
    assert code != 0 and message in err, err


@pytest.mark.parametrize(("page", "message"), [
    ({"headers": [{"name": "Host", "value": "evil.test"}]}, "header name may not be set"),
    ({"headers": [{"name": "Proxy-Authorization", "value": "x"}]}, "header name may not be set"),
    ({"headers": [{"name": "Transfer-Encoding", "value": "chunked"}]}, "header name may not be set"),
    ({"headers": [{"name": "X-A", "value": "1\r\nX-B: 2"}]}, "header value must not contain"),
    ({"headers": [{"name": "X A", "value": "1"}]}, "header name must be an HTTP token"),
    ({"deviceScaleFactor": 9}, "should be less than or equal to 4"),
    ({"scripts": ["x"] * 9}, "must have at most 8 items"),
])
def test_api_server_refuses_bad_page_control(kube: Kube, page: dict[str, Any], message: str) -> None:
    code, err = _create(kube, recording("bad-page", page=page))
    assert code != 0 and message in err, err
    assert kube.get("webrecording", "bad-page") is None


def test_api_server_accepts_encoding_settings(kube: Kube) -> None:
    video = {"frameRate": 15, "videoBitrate": 800, "keyframeInterval": 1, "audioBitrate": 96}
    code, err = _create(kube, recording("good-enc", output={"video": video}))
    assert code == 0, err
    stored = kube.get("webrecording", "good-enc")
    assert stored["spec"]["output"]["video"] == {"muxer": "mp4", **video}, stored["spec"]
    kube.kubectl("delete", "webrecording", "good-enc", "--wait=false")


def test_api_server_refuses_an_inline_encrypt_key(kube: Kube) -> None:
    code, err = _create(kube, recording("inline-key", output={
        "video": {"muxer": "hls", "encryptKey": KEY}}))
    assert code != 0 and "encryptKey is not accepted in a WebRecording" in err, err


def test_operator_refuses_what_only_the_models_know(kube: Kube, start_operator: Any) -> None:
    """Ambiguous URL forms, a bucket outside the install's list and a cookie for another site
    end with InvalidParam."""
    start_operator(WEBRECORD_OPERATOR_ALLOWED_BUCKETS="records-ok")
    cases = {
        "decimal-host": ({"recordUrl": "http://2130706433/"},
                         "spec.recordUrl: host is an ambiguous form of 127.0.0.1"),
        "userinfo": ({"recordUrl": "http://u:p@example.test/"},
                     "spec.recordUrl: must not contain credentials"),
        "bad-bucket": ({"recordUrl": "https://example.test/",
                        "output": {"cos": {"bucket": "someone-elses"}}},
                       "spec.output.cos.bucket: 'someone-elses' is not among this install's"),
        "key-injection": ({"recordUrl": "https://example.test/",
                           "output": {"video": {"muxer": "hls", "authUrl": "/etc/passwd"}}},
                          "spec.output.video.authUrl: must be an http:// or https:// URL"),
        # Page control: a cookie for another site (CEL cannot compare it with recordUrl).
        "cookie-elsewhere": ({"recordUrl": "https://example.test/", "page": {"cookies": [
                                 {"name": "sid", "value": "1", "domain": "evil.test"}]}},
                             "page.cookies[0].domain: 'evil.test' is not the RecordURL's host"),
    }
    for name, (spec, _) in cases.items():
        manifest = recording(name, **spec)
        kube.apply(manifest)
    for name, (_, message) in cases.items():
        status = kube.wait_phase(name, "finished", 60)
        assert status["result"]["errorCode"] == "InvalidParam", status
        assert message in status["result"]["errorMessage"], status
        assert not status.get("podName"), status


async def test_encrypt_key_lives_in_a_secret(kube: Kube, start_operator: Any) -> None:
    """Start with an inline EncryptKey: the WebRecording names a Secret it owns; the key reaches
    the recorder's task file and appears nowhere in the WebRecording or the pod."""
    start_operator()
    backend = kbackend.create(AdapterSettings(backend="kubernetes", namespace=kube.ns,
                                              kubeconfig=kube.cp.kubeconfig))
    await backend.open()
    try:
        spec = RecordingSpec.model_validate({
            "recordUrl": "https://example.test/", "maxDurationLimit": 30,
            "output": {"cos": {"bucket": "records"},  # a storage target: Kubernetes needs one
                       "video": {"muxer": "hls", "encryptKey": KEY,
                                 "authUrl": "https://keys.example.test/k"}}})
        await backend.start(RecordingTask(task_id="wr-enc", spec=spec), "key-1")
    finally:
        await backend.close()
    wait_for(lambda: kube.status("wr-enc").get("podName"), 60, "the recorder pod")
    obj = kube.get("webrecording", "wr-enc")
    assert obj["spec"]["output"]["video"]["encryptKeySecretRef"] == {
        "name": "wr-enc-encrypt-key", "key": "encryptKey"}
    assert KEY not in json.dumps(obj), "the key is in the WebRecording (spec or annotations)"
    secret = kube.get("secret", "wr-enc-encrypt-key")
    assert secret["metadata"]["ownerReferences"][0]["uid"] == obj["metadata"]["uid"]
    pod = kube.get("pod", "wr-enc-recorder")
    assert KEY not in json.dumps(pod)
    task_json = base64.b64decode(kube.get("secret", "wr-enc-recorder")["data"]["task.json"])
    video = json.loads(task_json)["spec"]["output"]["video"]
    assert video["encryptKey"] == KEY and "encryptKeySecretRef" not in video
