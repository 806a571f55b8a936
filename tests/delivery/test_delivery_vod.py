"""VOD: ApplyUpload -> upload to the bucket it names (moto) -> CommitUpload, signed TC3 by
Tencent's SDK and verified by the loopback server's own implementation."""

from __future__ import annotations

import json
import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from webrecord.api.models import CosOutput, ErrorCode, OutputSpec, VodOutput
from webrecord.delivery.pipeline import LocalVideo, deliver, hls_files
from webrecord.storage.vod import VodClient, VodError

from .conftest import free_port, fast_settings, s3_client
from .test_delivery_pipeline import Phases, copy_video, make_status, make_task
from .vod_server import VodServer, expected_signature

VOD = VodOutput.model_validate({
    "mediaInfo": {"mediaName": "Lesson", "expireTime": "2030-01-01T00:00:00Z",
                  "storageRegion": "ap-chongqing", "classId": 7,
                  "sourceContext": "src-ctx"},
    "procedureInfo": {"procedure": "LongVideoPreset", "sessionContext": "sess-ctx"},
    "subAppId": 1500001,
})


@pytest.fixture
def vod_server(moto_endpoint: str, bucket: str) -> Iterator[VodServer]:
    server = VodServer(s3_endpoint=moto_endpoint, bucket=bucket).start()
    try:
        yield server
    finally:
        server.stop()


def vod_settings(server: VodServer, **overrides):
    values = dict(vod_endpoint=server.url, vod_secret_id=server.secret_id,
                  vod_secret_key=server.secret_key, vod_storage_endpoint_url=server.s3_endpoint)
    values.update(overrides)
    return fast_settings(**values)


def _post(server: VodServer, headers: dict[str, str], body: bytes) -> dict:
    """Replays a request as received (hop-by-hop headers left to urllib)."""
    keep = {k: v for k, v in headers.items() if k not in ("content-length", "connection",
                                                           "accept-encoding")}
    request = urllib.request.Request(server.url + "/", data=body, headers=keep, method="POST")
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.loads(resp.read())["Response"]


@pytest.mark.timeout(30)
def test_sdk_signature_is_verified_by_an_independent_implementation(
        vod_server: VodServer) -> None:
    """The SDK's request passes the server's own TC3 check; the same headers over another
    body, or another key, do not (so the check really runs)."""
    client = VodClient(vod_settings(vod_server))
    applied = client.call("ApplyUpload", {"MediaType": "mp4", "SubAppId": 9})
    assert applied.VodSessionKey in vod_server.sessions and vod_server.rejected == []
    [(headers, body)] = vod_server.requests
    fields = dict(part.strip().split("=", 1)
                  for part in headers["authorization"].partition(" ")[2].split(","))
    assert headers["authorization"].startswith(
        f"TC3-HMAC-SHA256 Credential={vod_server.secret_id}/")
    want = expected_signature(vod_server.secret_key, headers, fields["SignedHeaders"].split(";"),
                              body, int(headers["x-tc-timestamp"]), "vod")
    assert fields["Signature"] == want

    assert "Error" not in _post(vod_server, headers, body)  # a replay of it still verifies
    tampered = body.replace(b'"mp4"', b'"avi"')
    assert _post(vod_server, headers, tampered)["Error"]["Code"] == "AuthFailure.SignatureFailure"

    wrong = VodClient(vod_settings(vod_server, vod_secret_key="not-the-key"))
    with pytest.raises(VodError, match="AuthFailure.SignatureFailure"):
        wrong.call("ApplyUpload", {"MediaType": "mp4"})
    other_id = VodClient(vod_settings(vod_server, vod_secret_id="AKIDother"))
    with pytest.raises(VodError, match="AuthFailure.SecretIdNotFound"):
        other_id.call("CommitUpload", {"VodSessionKey": applied.VodSessionKey})
    assert vod_server.rejected == ["AuthFailure.SignatureFailure"] * 2 + [
        "AuthFailure.SecretIdNotFound"]


@pytest.mark.timeout(60)
async def test_mp4_to_vod_passes_everything_through(
    tmp_path: Path, sample_mp4: Path, vod_server: VodServer, moto_endpoint: str
) -> None:
    video = copy_video(sample_mp4, tmp_path / "work")
    task = make_task(output=OutputSpec(vod=VOD))
    result = await deliver(task, [video], make_status(), Phases(), vod_settings(vod_server))

    assert result.error_code is None, result.error_message
    assert vod_server.rejected == []
    (apply_action, apply), (commit_action, commit) = vod_server.calls
    assert apply_action == "ApplyUpload" and apply == {
        "MediaType": "mp4", "MediaName": "Lesson", "ExpireTime": "2030-01-01T00:00:00Z",
        "StorageRegion": "ap-chongqing", "ClassId": 7, "SourceContext": "src-ctx",
        "Procedure": "LongVideoPreset", "SessionContext": "sess-ctx", "SubAppId": 1500001}
    assert commit_action == "CommitUpload" and commit["SubAppId"] == 1500001
    [v] = result.videos
    assert v.file_id and v.file_id.startswith("528589080000000")
    path = next(iter(vod_server.sessions.values()))["path"]
    assert v.file_url == f"http://vod.example.com{path}"
    body = s3_client(moto_endpoint).get_object(Bucket=vod_server.bucket, Key=path.lstrip("/"))
    assert body["Body"].read() == sample_mp4.read_bytes()


@pytest.mark.timeout(60)
async def test_hls_to_vod_and_cos_together(
    tmp_path: Path, sample_hls: Path, vod_server: VodServer, moto_endpoint: str
) -> None:
    work = tmp_path / "work"
    shutil.copytree(sample_hls.parent, work)
    playlist = work / sample_hls.name
    task = make_task(output=OutputSpec(
        vod=VodOutput(sub_app_id=3), video={"muxer": "hls"},
        cos=CosOutput(bucket=vod_server.bucket, region="us-east-1", target_dir="copy")))
    result = await deliver(task, [LocalVideo(playlist, 4.0, "hls")], make_status(), Phases(),
                           vod_settings(vod_server, s3_endpoint_url=moto_endpoint))
    assert result.error_code is None, result.error_message
    apply = vod_server.calls[0][1]
    assert apply["MediaType"] == "m3u8" and apply["SubAppId"] == 3
    path = next(iter(vod_server.sessions.values()))["path"].lstrip("/")
    base = path.rsplit("/", 1)[0]
    keys = {o["Key"] for o in s3_client(moto_endpoint).list_objects_v2(
        Bucket=vod_server.bucket)["Contents"]}
    assert {path, *(f"{base}/{rel}" for rel in hls_files(playlist))} <= keys
    [v] = result.videos
    assert v.file_id  # from VOD
    assert v.file_url.startswith(f"{moto_endpoint}/{vod_server.bucket}/copy/")  # from Cos


@pytest.mark.timeout(60)
async def test_wrong_vod_key_is_rejected_by_signature(
    tmp_path: Path, sample_mp4: Path, vod_server: VodServer
) -> None:
    video = copy_video(sample_mp4, tmp_path / "work")
    result = await deliver(make_task(output=OutputSpec(vod=VOD)), [video], make_status(),
                           Phases(), vod_settings(vod_server, vod_secret_key="not-the-key"))
    assert vod_server.rejected == ["AuthFailure.SignatureFailure"]
    assert result.error_code is ErrorCode.VOD_FAILED
    assert "ApplyUpload" in result.error_message
    assert "AuthFailure.SignatureFailure" in result.error_message
    assert f"local file kept at {video.path}" in result.error_message


@pytest.mark.timeout(60)
async def test_vod_unreachable_or_unconfigured(tmp_path: Path, sample_mp4: Path) -> None:
    video = copy_video(sample_mp4, tmp_path / "work")
    task = make_task(output=OutputSpec(vod=VOD))
    down = f"http://127.0.0.1:{free_port()}"
    result = await deliver(task, [video], make_status(), Phases(), fast_settings(
        vod_endpoint=down, vod_secret_id="a", vod_secret_key="b", vod_attempts=2))
    assert result.error_code is ErrorCode.VOD_FAILED
    assert f"ApplyUpload at {down} failed: cannot reach the service" in result.error_message
    result = await deliver(task, [video], make_status(), Phases(), fast_settings())
    assert result.error_code is ErrorCode.VOD_FAILED
    assert "WEBRECORD_VOD_SECRET_ID" in result.error_message
