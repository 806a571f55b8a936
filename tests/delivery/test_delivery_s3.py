"""Object storage through boto3 against a real moto S3 server on loopback."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from webrecord.api.models import CosOutput, ErrorCode, OutputSpec
from webrecord.delivery.pipeline import LocalVideo, deliver, hls_files
from webrecord.storage.s3 import Bucket

from .conftest import (
    CallbackServer,
    CuttingProxy,
    fast_settings,
    free_port,
    s3_client,
    start_moto,
    stop_process,
    write_random,
)
from .test_delivery_pipeline import Phases, copy_video, make_status, make_task

MB = 1024 * 1024


def cos_task(bucket: str, callback: str | None = None, muxer: str = "mp4", **cos):
    return make_task(callback=callback, output=OutputSpec(
        cos=CosOutput(bucket=bucket, region="us-east-1", **cos), video={"muxer": muxer}))


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.mark.timeout(60)
async def test_mp4_to_bucket_defaults_and_url(
    tmp_path: Path, sample_mp4: Path, moto_endpoint: str, bucket: str,
    callback_server: CallbackServer,
) -> None:
    video = copy_video(sample_mp4, tmp_path / "work")
    status = make_status()
    settings = fast_settings(s3_endpoint_url=moto_endpoint)
    result = await deliver(cos_task(bucket, callback_server.url), [video], status, Phases(),
                           settings)
    assert result.error_code is None, result.error_message
    key = f"task-1/{status.stop_time}.mp4"
    obj = s3_client(moto_endpoint).get_object(Bucket=bucket, Key=key)
    assert obj["Body"].read() == sample_mp4.read_bytes()
    assert obj["ContentType"] == "video/mp4"
    assert result.videos[0].file_url == f"{moto_endpoint}/{bucket}/{key}"
    assert callback_server.received  # and the caller was told


@pytest.mark.timeout(60)
async def test_domain_target_dir_name_and_hls(
    tmp_path: Path, sample_hls: Path, moto_endpoint: str, bucket: str
) -> None:
    work = tmp_path / "work"
    shutil.copytree(sample_hls.parent, work)
    playlist = work / sample_hls.name
    task = cos_task(bucket, muxer="hls", domain="cdn.example.com", target_dir="rec/2026",
                    target_name="lesson 1")
    result = await deliver(task, [LocalVideo(playlist, 4.0, "hls")], make_status(), Phases(),
                           fast_settings(s3_endpoint_url=moto_endpoint))
    assert result.error_code is None, result.error_message
    client = s3_client(moto_endpoint)
    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"])
    segments = sorted(f"rec/2026/{rel}" for rel in hls_files(playlist))
    assert keys == sorted(["rec/2026/lesson 1.m3u8", *segments])
    for rel, path in hls_files(playlist).items():
        body = client.get_object(Bucket=bucket, Key=f"rec/2026/{rel}")["Body"].read()
        assert body == path.read_bytes()
    assert result.videos[0].file_url == "https://cdn.example.com/rec/2026/lesson%201.m3u8"


def test_url_and_endpoint_derivation() -> None:
    settings = fast_settings()
    b = Bucket.for_output("media-125", "ap-shanghai", settings)
    assert b.endpoint == "https://cos.ap-shanghai.myqcloud.com"
    assert b.file_url("t/1.mp4") == "https://media-125.cos.ap-shanghai.myqcloud.com/t/1.mp4"
    override = fast_settings(s3_endpoint_url="http://minio:9000/")
    b = Bucket.for_output("m", "x", override)
    assert b.endpoint == "http://minio:9000"
    assert b.file_url("a b.mp4") == "http://minio:9000/m/a%20b.mp4"


@pytest.mark.timeout(120)
async def test_large_file_multipart_and_cut_mid_upload_then_retry(
    tmp_path: Path, moto_endpoint: str, bucket: str, cutting_proxy: CuttingProxy
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    big = write_random(work / "big.mp4", 48 * MB)
    video = LocalVideo(big, 60.0, "mp4")
    settings = fast_settings(s3_endpoint_url=cutting_proxy.endpoint, s3_part_size_mb=8,
                             s3_multipart_threshold_mb=8, s3_concurrency=4)
    task = cos_task(bucket)
    status = make_status()

    # The network dies after ~20 MB and stays down: every retry fails too.
    cutting_proxy.broken, cutting_proxy.budget = True, 20 * MB
    failed = await deliver(task, [video], status, Phases(), settings)
    assert failed.error_code is ErrorCode.UPLOAD_FAILED
    assert f"s3://{bucket}/task-1/{status.stop_time}.mp4" in failed.error_message
    assert cutting_proxy.endpoint in failed.error_message
    assert f"local file kept at {big}" in failed.error_message
    assert cutting_proxy.cuts >= 1 and big.stat().st_size == 48 * MB
    client = s3_client(moto_endpoint)
    assert client.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0  # nothing half-there
    # the network was gone, so the client's abort of its multipart upload could not get through
    assert len(client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])) == 1

    # The network is back: the same call (what `webrecord deliver` does) succeeds.
    cutting_proxy.broken = False
    result = await deliver(task, [video], status, Phases(), settings)
    assert result.error_code is None, result.error_message
    key = f"task-1/{status.stop_time}.mp4"
    head = client.head_object(Bucket=bucket, Key=key)
    assert head["ContentLength"] == 48 * MB
    assert head["ETag"].strip('"').endswith("-6")  # 6 parts of 8 MB: the multipart path
    got = tmp_path / "got.mp4"
    client.download_file(bucket, key, str(got))
    assert md5(got) == md5(big)
    # the first attempt's unfinished multipart upload (its abort could not get through) is gone
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


@pytest.mark.timeout(60)
async def test_bucket_missing(tmp_path: Path, sample_mp4: Path, moto_endpoint: str,
                              aws_env: None) -> None:
    video = copy_video(sample_mp4, tmp_path / "work")
    result = await deliver(cos_task("no-such-bucket"), [video], make_status(), Phases(),
                           fast_settings(s3_endpoint_url=moto_endpoint))
    assert result.error_code is ErrorCode.UPLOAD_FAILED
    assert "NoSuchBucket (HTTP 404), bucket does not exist" in result.error_message
    assert moto_endpoint in result.error_message
    assert video.path.exists()


@pytest.mark.timeout(60)
async def test_storage_unreachable(tmp_path: Path, sample_mp4: Path, aws_env: None) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    video = copy_video(sample_mp4, tmp_path / "work")
    result = await deliver(cos_task("b"), [video], make_status(), Phases(),
                           fast_settings(s3_endpoint_url=endpoint))
    assert result.error_code is ErrorCode.UPLOAD_FAILED
    assert f"cannot reach {endpoint}" in result.error_message
    assert f"local file kept at {video.path}" in result.error_message


@pytest.mark.timeout(90)
async def test_wrong_credentials_and_secret_file(
    tmp_path: Path, sample_mp4: Path, aws_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A moto server that checks signatures against IAM keys (the first 3 calls set them up).
    proc, endpoint = start_moto({"INITIAL_NO_AUTH_ACTION_COUNT": "3"})
    try:
        import boto3

        iam = boto3.session.Session().client(
            "iam", endpoint_url=endpoint, region_name="us-east-1",
            aws_access_key_id="x", aws_secret_access_key="x")
        iam.create_user(UserName="rec")
        iam.put_user_policy(UserName="rec", PolicyName="s3", PolicyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
        key = iam.create_access_key(UserName="rec")["AccessKey"]
        good = {"aws_access_key_id": key["AccessKeyId"],
                "aws_secret_access_key": key["SecretAccessKey"]}
        boto3.session.Session().client("s3", endpoint_url=endpoint, region_name="us-east-1",
                                       **good).create_bucket(Bucket="secure")
        video = copy_video(sample_mp4, tmp_path / "work")
        task = cos_task("secure")

        # env credentials (AWS_ACCESS_KEY_ID=testing) are not valid on this server
        wrong = await deliver(task, [video], make_status(), Phases(),
                              fast_settings(s3_endpoint_url=endpoint))
        assert wrong.error_code is ErrorCode.UPLOAD_FAILED
        assert "InvalidAccessKeyId (HTTP 403), wrong credentials" in wrong.error_message

        # a mounted secret directory (one file per key, as Kubernetes mounts it) wins
        secret = tmp_path / "secret"
        secret.mkdir()
        (secret / "AWS_ACCESS_KEY_ID").write_text(good["aws_access_key_id"] + "\n")
        (secret / "AWS_SECRET_ACCESS_KEY").write_text(good["aws_secret_access_key"])
        monkeypatch.setenv("WEBRECORD_S3_CREDENTIALS_FILE", str(secret))
        monkeypatch.setenv("WEBRECORD_S3_ENDPOINT_URL", endpoint)
        ok = await deliver(task, [video], make_status(), Phases(), fast_settings())
        assert ok.error_code is None, ok.error_message
    finally:
        stop_process(proc)


@pytest.mark.timeout(90)
async def test_retry_redoes_only_what_failed(
    tmp_path: Path, sample_mp4: Path, moto_endpoint: str, bucket: str,
    cutting_proxy: CuttingProxy, callback_server: CallbackServer,
) -> None:
    video = copy_video(sample_mp4, tmp_path / "work")
    task = cos_task(bucket, callback_server.url)
    status = make_status()
    settings = fast_settings(s3_endpoint_url=cutting_proxy.endpoint)
    callback_server.script = [500] * 5  # the receiver is down for the whole first attempt

    first = await deliver(task, [video], status, Phases(), settings)
    assert first.error_code is ErrorCode.CALLBACK_FAILED
    url = first.videos[0].file_url
    assert url == f"{cutting_proxy.endpoint}/{bucket}/task-1/{status.stop_time}.mp4"

    # Now the storage is unreachable but the upload is already done: the retry must not need
    # it, and the receiver (back up) gets the same FileURL.
    cutting_proxy.broken, cutting_proxy.budget = True, 0
    second = await deliver(task, [video], status, Phases(), settings)
    assert second.error_code is None, second.error_message
    assert second.videos[0].file_url == url
    assert cutting_proxy.cuts == 0  # no request was even attempted
    body = json.loads(callback_server.received[-1].body)
    assert body["Result"]["Videos"][0]["FileURL"] == url
