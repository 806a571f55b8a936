"""S3-compatible object storage (COS, S3, MinIO) through boto3.

Large files go up as parallel multipart uploads (s3transfer, parts of `s3_part_size_mb`,
`s3_concurrency` at a time); every request is retried by botocore's standard retry mode.
Failures surface as `StorageError` whose message names the endpoint, bucket, key, the service's
error code and the HTTP status, never a stack trace.
"""

from __future__ import annotations

import logging
import mimetypes
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

import boto3
import botocore.exceptions
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

from webrecord.logs import event
from webrecord.storage.settings import MB, StorageSettings

log = logging.getLogger(__name__)

CONTENT_TYPES = {
    ".mp4": "video/mp4",
    ".m4a": "audio/mp4",  # an audio-only recording
    ".m3u8": "application/vnd.apple.mpegurl",
    ".ts": "video/mp2t",
    ".m4s": "video/iso.segment",
    ".key": "application/octet-stream",
    ".json": "application/json",
}


OWNER_METADATA = "webrecord-task"  # x-amz-meta-webrecord-task: the task that wrote the object


class StorageError(Exception):
    """An object-store operation failed; `code` is the service's error code when known."""

    def __init__(self, message: str, code: str | None = None, http_status: int | None = None):
        super().__init__(message)
        self.code = code
        self.http_status = http_status


def content_type(path: Path | str) -> str:
    suffix = Path(path).suffix.lower()
    return CONTENT_TYPES.get(suffix) or mimetypes.guess_type(str(path))[0] or (
        "application/octet-stream"
    )


@dataclass
class Bucket:
    """One bucket on one endpoint, with the client and transfer settings to reach it."""

    name: str
    region: str
    endpoint: str
    settings: StorageSettings
    domain: str | None = None
    credentials: dict[str, str] | None = None  # explicit keys (VOD's temporary certificate)

    def __post_init__(self) -> None:
        s = self.settings
        # Virtual-hosted style for the derived cloud endpoint (COS needs it); path style for an
        # overridden endpoint (MinIO, moto, an IP address), unless configured otherwise.
        derived = self.endpoint == s.s3_endpoint_template.format(region=self.region)
        self.style = s.s3_addressing_style or ("virtual" if derived else "path")
        s3_config: dict = {"addressing_style": self.style}
        if s.s3_payload_signing is not None:
            s3_config["payload_signing_enabled"] = s.s3_payload_signing
        config = Config(
            region_name=self.region,
            retries={"max_attempts": s.s3_max_attempts, "mode": "standard"},
            connect_timeout=s.s3_connect_timeout_s,
            read_timeout=s.s3_read_timeout_s,
            max_pool_connections=max(10, s.s3_concurrency * 2),
            s3=s3_config,
        )
        creds = self.credentials or s.s3_credentials() or {}
        # A session per bucket: boto3's default session is not thread-safe to create clients.
        session = boto3.session.Session()
        self.client = session.client("s3", endpoint_url=self.endpoint, config=config, **creds)
        self.transfer = TransferConfig(
            multipart_threshold=s.s3_multipart_threshold_mb * MB,
            multipart_chunksize=s.s3_part_size_mb * MB,
            max_concurrency=s.s3_concurrency,
            use_threads=True,
        )

    @classmethod
    def for_output(
        cls,
        bucket: str,
        region: str | None,
        settings: StorageSettings,
        domain: str | None = None,
        endpoint: str | None = None,
        credentials: dict[str, str] | None = None,
    ) -> "Bucket":
        region = region or settings.s3_default_region
        return cls(
            name=bucket,
            region=region,
            endpoint=endpoint or settings.s3_endpoint(region),
            settings=settings,
            domain=domain,
            credentials=credentials,
        )

    # --- URLs ---

    def file_url(self, key: str) -> str:
        """Public URL of `key`: from Domain when the task gave one, else the bucket endpoint."""
        path = quote(key, safe="/-_.~")
        if self.domain:
            base = self.domain if "://" in self.domain else f"https://{self.domain}"
            return f"{base.rstrip('/')}/{path}"
        parts = urlsplit(self.endpoint)
        if self.style == "path":
            return f"{self.endpoint}/{self.name}/{path}"
        return f"{parts.scheme}://{self.name}.{parts.netloc}/{path}"

    # --- errors ---

    def _error(self, op: str, key: str | None, exc: Exception) -> StorageError:
        where = f"s3://{self.name}/{key}" if key else f"bucket {self.name}"
        root = exc
        # boto3 wraps transfer failures (S3UploadFailedError); the ClientError is the context.
        while not isinstance(root, (botocore.exceptions.BotoCoreError,
                                    botocore.exceptions.ClientError)):
            nxt = root.__cause__ or root.__context__
            if nxt is None:
                break
            root = nxt
        if isinstance(root, botocore.exceptions.ClientError):
            err = root.response.get("Error", {})
            code = err.get("Code") or "Unknown"
            status = root.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            msg = err.get("Message") or ""
            hint = {
                "NoSuchBucket": "bucket does not exist",
                "InvalidAccessKeyId": "wrong credentials",
                "SignatureDoesNotMatch": "wrong credentials",
                "AccessDenied": "credentials not allowed",
            }.get(code)
            text = f"{op} {where} at {self.endpoint} failed: {code} (HTTP {status})"
            if hint:
                text += f", {hint}"
            if msg:
                text += f": {msg}"
            return StorageError(text, code=code, http_status=status)
        if isinstance(root, botocore.exceptions.NoCredentialsError):
            return StorageError(
                f"{op} {where} at {self.endpoint} failed: no S3 credentials (set "
                "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or WEBRECORD_S3_CREDENTIALS_FILE)",
                code="NoCredentials",
            )
        if isinstance(root, (botocore.exceptions.ConnectionError,
                             botocore.exceptions.HTTPClientError)):
            return StorageError(
                f"{op} {where} failed: cannot reach {self.endpoint} or connection lost "
                f"({root.__class__.__name__}) after {self.settings.s3_max_attempts} attempts",
                code="EndpointUnreachable",
            )
        return StorageError(f"{op} {where} at {self.endpoint} failed: {root}", code=None)

    # --- operations ---

    def upload_file(self, path: Path, key: str, owner: str | None = None,
                    cache_control: str | None = None) -> None:
        """Upload one file; multipart with parallel parts above the threshold. `owner` (a task
        id) is stored as the object's metadata, so `owner_of` can tell whose object it is.
        `cache_control`: for objects rewritten in place (a live playlist), so caches refetch."""
        extra: dict = {"ContentType": content_type(path)}
        if cache_control:
            extra["CacheControl"] = cache_control
        if owner:
            extra["Metadata"] = {OWNER_METADATA: owner}
        try:
            self.client.upload_file(
                str(path), self.name, key,
                ExtraArgs=extra,
                Config=self.transfer,
            )
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError,
                boto3.exceptions.Boto3Error) as exc:
            raise self._error("upload", key, exc) from None
        size = path.stat().st_size
        event(log, "uploaded", bucket=self.name, key=key, endpoint=self.endpoint, bytes=size)
        if size >= self.transfer.multipart_threshold:
            self.abort_stale_uploads(key)

    def abort_stale_uploads(self, key: str) -> int:
        """Abort unfinished multipart uploads of `key` left by an earlier failed attempt (the
        abort itself could not get through then); their parts would be billed forever.
        Best effort: a missing permission only logs."""
        aborted = 0
        try:
            listing = self.client.list_multipart_uploads(Bucket=self.name, Prefix=key)
            for upload in listing.get("Uploads", []):
                if upload.get("Key") == key:
                    self.client.abort_multipart_upload(Bucket=self.name, Key=key,
                                                       UploadId=upload["UploadId"])
                    aborted += 1
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            event(log, "cannot clean up stale multipart uploads", logging.WARNING,
                  bucket=self.name, key=key, error=str(self._error("list uploads", key, exc)))
        if aborted:
            event(log, "aborted stale multipart uploads", bucket=self.name, key=key,
                  count=aborted)
        return aborted

    def upload_many(self, files: dict[str, Path], last: tuple[str, Path] | None = None,
                    owner: str | None = None) -> None:
        """Upload `{key: path}` in parallel, then `last` (e.g. an HLS playlist) once all
        others are stored, so the playlist never names a segment that is not there yet."""
        if files:
            workers = min(self.settings.s3_concurrency, len(files))
            with ThreadPoolExecutor(workers, thread_name_prefix="s3-up") as pool:
                futures = [pool.submit(self.upload_file, p, k, owner) for k, p in files.items()]
                errors = [f.exception() for f in futures if f.exception() is not None]
            if errors:
                raise errors[0]
        if last is not None:
            self.upload_file(last[1], last[0], owner)

    def owner_of(self, key: str) -> str | None:
        """None when `key` does not exist (or cannot be checked: upload-only credentials may
        not read, and the upload then says what is wrong); else the task id it was uploaded
        for ("" when it was not uploaded by a task)."""
        try:
            head = self.client.head_object(Bucket=self.name, Key=key)
        except botocore.exceptions.ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code"))
            if code in ("404", "NoSuchKey", "NotFound"):
                return None
            if code in ("403", "AccessDenied", "Forbidden"):
                event(log, "cannot check whether the key exists: it may be overwritten",
                      logging.WARNING, bucket=self.name, key=key)
                return None
            raise self._error("check", key, exc) from None
        except botocore.exceptions.BotoCoreError as exc:
            raise self._error("check", key, exc) from None
        return (head.get("Metadata") or {}).get(OWNER_METADATA, "")

    def list_keys(self, prefix: str) -> list[dict]:
        """Objects under `prefix`: dicts with Key and Size, sorted by key."""
        items: list[dict] = []
        try:
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.name, Prefix=prefix):
                items.extend(page.get("Contents", []))
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self._error("list", prefix, exc) from None
        return sorted(items, key=lambda i: i["Key"])

    def delete_keys(self, keys: list[str]) -> None:
        """Delete objects (1000 per request, the API's limit)."""
        try:
            for start in range(0, len(keys), 1000):
                chunk = [{"Key": k} for k in keys[start:start + 1000]]
                self.client.delete_objects(Bucket=self.name, Delete={"Objects": chunk,
                                                                     "Quiet": True})
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self._error("delete", keys[0] if keys else None, exc) from None

    def download_file(self, key: str, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.partial")
        try:
            self.client.download_file(self.name, key, str(tmp), Config=self.transfer)
            tmp.replace(dest)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError,
                boto3.exceptions.Boto3Error) as exc:
            tmp.unlink(missing_ok=True)
            raise self._error("download", key, exc) from None

