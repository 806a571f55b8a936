"""Storage configuration (S3-compatible stores, segment store, filesystem target, VOD): one
pydantic-settings class, env prefix WEBRECORD_. The delivery stage extends it with its retry and
callback settings (`webrecord.delivery.settings.DeliverySettings`).

Secrets (S3 keys, VOD keys) come from the environment or from files mounted from Kubernetes
secrets; a task never carries credentials.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

MB = 1024 * 1024


class StorageSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WEBRECORD_", extra="ignore")

    # --- object storage (S3-compatible: COS, S3, MinIO) ---
    s3_endpoint_url: str | None = Field(
        None, description="Endpoint override (MinIO, moto, a private COS endpoint)"
    )
    s3_endpoint_template: str = Field(
        "https://cos.{region}.myqcloud.com",
        description="Endpoint derived from Output.Cos.Region when no override is set",
    )
    s3_default_region: str = Field("ap-guangzhou", description="When the task names no region")
    s3_addressing_style: Literal["auto", "path", "virtual"] | None = Field(
        None, description="Default: virtual with the derived endpoint (COS), path with an override"
    )
    s3_credentials_file: Path | None = Field(
        None,
        description=(
            "Mounted secret: a directory with files AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY "
            "(optional AWS_SESSION_TOKEN), or one file of KEY=VALUE / ini lines. "
            "Without it boto3's own chain applies (env AWS_ACCESS_KEY_ID ...)."
        ),
    )
    s3_part_size_mb: int = Field(16, ge=5, le=5120, description="Multipart part size")
    s3_multipart_threshold_mb: int = Field(16, ge=5, description="Files above go multipart")
    s3_concurrency: int = Field(8, ge=1, le=64, description="Parallel parts per upload")
    s3_max_attempts: int = Field(5, ge=1, le=20, description="botocore retry attempts")
    s3_connect_timeout_s: float = Field(5.0, gt=0)
    s3_read_timeout_s: float = Field(60.0, gt=0)
    s3_payload_signing: bool | None = Field(
        None,
        description=(
            "SigV4 payload signing; None = botocore's choice. False skips a SHA-256 pass over "
            "every part (integrity still checked through the CRC32 checksum header)"
        ),
    )

    # --- intermediate segments (StorageType) ---
    segment_prefix: str = Field(
        "webrecord-segments", description="Key prefix of segments in the object store"
    )
    segment_bucket: str | None = Field(
        None, description="Bucket for StorageType cos when the task has no Output.Cos.Bucket"
    )
    segment_dir: Path | None = Field(
        None, description="StorageType cfs: mounted directory for segments (default: work dir)"
    )

    # --- filesystem target (the cfs case) ---
    output_dir: Path | None = Field(None, description="Mounted directory for final videos")
    output_url_base: str | None = Field(
        None, description="Public URL of output_dir; FileURL = base/task/name (default file://)"
    )

    # --- secrets from files (Kubernetes: the storage Secret mounted as a volume) ---
    secrets_dir: Path | None = Field(
        None, description="Mounted directory (one file per key): AWS_ACCESS_KEY_ID / "
        "AWS_SECRET_ACCESS_KEY (/ AWS_SESSION_TOKEN), SecretId / SecretKey (VOD), "
        "WEBRECORD_CALLBACK_SECRET (read by DeliverySettings); each used when present and its own "
        "setting is unset. Files, not env: Chromium and ffmpeg never inherit them, and only "
        "delivery reads them")

    # --- VOD ---
    vod_endpoint: str = Field("https://vod.tencentcloudapi.com")
    vod_region: str = Field("", description="X-TC-Region; VOD accepts it empty")
    vod_secret_id: SecretStr | None = None
    vod_secret_key: SecretStr | None = None
    vod_credentials_file: Path | None = Field(
        None, description="Mounted secret: directory with SecretId/SecretKey files or KEY=VALUE"
    )
    vod_storage_endpoint_url: str | None = Field(
        None, description="Endpoint of the bucket ApplyUpload names (default: the S3 endpoint "
        "rule: WEBRECORD_S3_ENDPOINT_URL, else the template with StorageRegion)")
    vod_timeout_s: float = Field(10.0, gt=0)
    vod_attempts: int = Field(3, ge=1, le=10)

    def s3_endpoint(self, region: str | None) -> str:
        if self.s3_endpoint_url:
            return self.s3_endpoint_url.rstrip("/")
        return self.s3_endpoint_template.format(region=region or self.s3_default_region)

    def vod_storage_endpoint(self, region: str | None) -> str:
        if self.vod_storage_endpoint_url:
            return self.vod_storage_endpoint_url.rstrip("/")
        return self.s3_endpoint(region)

    def _mounted(self) -> dict[str, str]:
        """The secrets_dir's files (keys lower-cased); empty when unset or absent."""
        if self.secrets_dir is None or not self.secrets_dir.is_dir():
            return {}
        return read_secret(self.secrets_dir)

    def s3_credentials(self) -> dict[str, str] | None:
        """boto3 client kwargs from the mounted secret, or None for boto3's default chain."""
        if self.s3_credentials_file is None:
            mounted = self._mounted()
            # The shared storage Secret may hold only the callback key (pods with a cloud role):
            # then boto3's own chain applies.
            if not _pick(mounted, "aws_access_key_id", "aws_secret_access_key"):
                return None
            values, source = mounted, f"WEBRECORD_SECRETS_DIR {self.secrets_dir}"
        else:
            values = read_secret(self.s3_credentials_file)
            source = f"WEBRECORD_S3_CREDENTIALS_FILE {self.s3_credentials_file}"
        key_id = _pick(values, "aws_access_key_id", "access_key_id", "accesskeyid", "secretid")
        secret = _pick(
            values, "aws_secret_access_key", "secret_access_key", "secretaccesskey", "secretkey"
        )
        if not key_id or not secret:
            raise ValueError(f"{source}: needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
        creds = {"aws_access_key_id": key_id, "aws_secret_access_key": secret}
        token = _pick(values, "aws_session_token", "session_token", "token")
        if token:
            creds["aws_session_token"] = token
        return creds

    def vod_credentials(self) -> tuple[str, str] | None:
        if self.vod_secret_id and self.vod_secret_key:
            return self.vod_secret_id.get_secret_value(), self.vod_secret_key.get_secret_value()
        if self.vod_credentials_file is not None:
            values = read_secret(self.vod_credentials_file)
            sid = _pick(values, "secretid", "secret_id", "tencentcloud_secret_id")
            skey = _pick(values, "secretkey", "secret_key", "tencentcloud_secret_key")
            if sid and skey:
                return sid, skey
            raise ValueError(
                f"WEBRECORD_VOD_CREDENTIALS_FILE {self.vod_credentials_file}: needs SecretId "
                "and SecretKey"
            )
        mounted = self._mounted()
        sid = _pick(mounted, "secretid", "tencentcloud_secret_id")
        skey = _pick(mounted, "secretkey", "tencentcloud_secret_key")
        return (sid, skey) if sid and skey else None


def read_secret(path: Path) -> dict[str, str]:
    """Keys lower-cased. A directory (Kubernetes secret volume): one file per key.
    A file: `KEY=VALUE` or ini `key = value` lines (sections and comments ignored)."""
    values: dict[str, str] = {}
    if path.is_dir():
        for item in sorted(path.iterdir()):
            if item.is_file() and not item.name.startswith("."):
                values[item.name.lower()] = item.read_text().strip()
        return values
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")) or "=" not in line:
            continue
        key, _, value = line.partition("=")
        key = key.strip().removeprefix("export ").strip().lower()
        values.setdefault(key, value.strip().strip("'\""))
    return values


def _pick(values: dict[str, str], *names: str) -> str | None:
    for name in names:
        if values.get(name):
            return values[name]
    return None
