"""DeliverySettings: env names, endpoint derivation, mounted secret formats."""

from __future__ import annotations

from pathlib import Path

import pytest

from webrecord.delivery.settings import DeliverySettings


def test_env_names(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("WEBRECORD_S3_ENDPOINT_URL", "http://minio:9000/")
    monkeypatch.setenv("WEBRECORD_S3_PART_SIZE_MB", "32")
    monkeypatch.setenv("WEBRECORD_S3_CONCURRENCY", "4")
    monkeypatch.setenv("WEBRECORD_OUTPUT_DIR", str(tmp_path))
    monkeypatch.setenv("WEBRECORD_CALLBACK_SECRET", "abc")
    s = DeliverySettings()
    assert s.s3_endpoint("ap-beijing") == "http://minio:9000"
    assert (s.s3_part_size_mb, s.s3_concurrency, s.output_dir) == (32, 4, tmp_path)
    assert s.callback_key() == b"abc"
    assert "abc" not in repr(s)  # secrets stay out of logs


def test_endpoint_from_region_template() -> None:
    s = DeliverySettings()
    assert s.s3_endpoint("ap-beijing") == "https://cos.ap-beijing.myqcloud.com"
    assert s.s3_endpoint(None) == "https://cos.ap-guangzhou.myqcloud.com"
    s = DeliverySettings(s3_endpoint_template="https://s3.{region}.amazonaws.com")
    assert s.s3_endpoint("eu-west-1") == "https://s3.eu-west-1.amazonaws.com"


@pytest.mark.parametrize("text", [
    "AWS_ACCESS_KEY_ID=AK\nAWS_SECRET_ACCESS_KEY='SK'\n# comment\n",
    "export AWS_ACCESS_KEY_ID=AK\nexport AWS_SECRET_ACCESS_KEY=SK\n",
    "[default]\naws_access_key_id = AK\naws_secret_access_key = SK\n",
])
def test_credentials_file_formats(tmp_path: Path, text: str) -> None:
    secret = tmp_path / "creds"
    secret.write_text(text)
    assert DeliverySettings(s3_credentials_file=secret).s3_credentials() == {
        "aws_access_key_id": "AK", "aws_secret_access_key": "SK"}


def test_credentials_dir_with_token_and_errors(tmp_path: Path) -> None:
    d = tmp_path / "secret"
    d.mkdir()
    (d / "AWS_ACCESS_KEY_ID").write_text("AK\n")
    (d / "..data").write_text("ignored")  # Kubernetes' own bookkeeping entries
    with pytest.raises(ValueError, match="needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"):
        DeliverySettings(s3_credentials_file=d).s3_credentials()
    (d / "AWS_SECRET_ACCESS_KEY").write_text("SK")
    (d / "AWS_SESSION_TOKEN").write_text("T")
    assert DeliverySettings(s3_credentials_file=d).s3_credentials() == {
        "aws_access_key_id": "AK", "aws_secret_access_key": "SK", "aws_session_token": "T"}
    assert DeliverySettings().s3_credentials() is None  # boto3's own chain (env) applies


def test_vod_credentials_and_callback_secret_file(tmp_path: Path) -> None:
    d = tmp_path / "vod"
    d.mkdir()
    (d / "SecretId").write_text("AKID")
    (d / "SecretKey").write_text("KEY")
    assert DeliverySettings(vod_credentials_file=d).vod_credentials() == ("AKID", "KEY")
    assert DeliverySettings(vod_secret_id="a", vod_secret_key="b").vod_credentials() == ("a", "b")
    (tmp_path / "cb").write_text("s3cret\n")
    assert DeliverySettings(callback_secret_file=tmp_path / "cb").callback_key() == b"s3cret"


def test_secrets_dir_is_the_mounted_storage_secret(tmp_path: Path) -> None:
    """A recorder pod gets its storage Secret as files: each credential is read when present;
    a Secret with only the callback key leaves S3 to boto3's own chain."""
    mounted = tmp_path / "storage"
    mounted.mkdir()
    (mounted / "WEBRECORD_CALLBACK_SECRET").write_text("cb-key\n")
    s = DeliverySettings(secrets_dir=mounted)
    assert s.callback_key() == b"cb-key"
    assert s.s3_credentials() is None and s.vod_credentials() is None
    (mounted / "AWS_ACCESS_KEY_ID").write_text("AKIA")
    with pytest.raises(ValueError, match="WEBRECORD_SECRETS_DIR .*needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"):
        s.s3_credentials()
    (mounted / "AWS_SECRET_ACCESS_KEY").write_text("s3cr3t")
    (mounted / "SecretId").write_text("sid")
    (mounted / "SecretKey").write_text("skey")
    assert s.s3_credentials() == {"aws_access_key_id": "AKIA", "aws_secret_access_key": "s3cr3t"}
    assert s.vod_credentials() == ("sid", "skey")
    # Explicit settings win over the mounted files.
    assert DeliverySettings(secrets_dir=mounted, callback_secret="env-key").callback_key() == b"env-key"
    assert DeliverySettings(secrets_dir=tmp_path / "absent").callback_key() is None
