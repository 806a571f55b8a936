"""VOD upload: the cloud API's ApplyUpload -> object upload -> CommitUpload flow.

1. `ApplyUpload` (API version 2018-07-17) with MediaType, MediaName, ExpireTime, StorageRegion,
   ClassId, SourceContext, Procedure, SessionContext, SubAppId from the task's Output.Vod.
   The answer names the storage bucket/region, the object path (MediaStoragePath), a session
   key (VodSessionKey) and usually temporary credentials (TempCertificate).
2. The media goes to that bucket through the S3-compatible API (COS), with those temporary
   credentials; HLS segments go beside the playlist, keeping their relative paths.
3. `CommitUpload` with VodSessionKey (and SubAppId) -> FileId, MediaUrl.

The API calls go through Tencent's SDK (`tencentcloud-sdk-python-vod`), which signs them with
TC3-HMAC-SHA256, using WEBRECORD_VOD_SECRET_ID / WEBRECORD_VOD_SECRET_KEY (or a mounted
WEBRECORD_VOD_CREDENTIALS_FILE); WEBRECORD_VOD_ENDPOINT may name another scheme/host/port.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from tencentcloud.common import credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.common.retry import StandardRetryer
from tencentcloud.vod.v20180717 import models, vod_client

from webrecord.api.models import VodOutput
from webrecord.logs import event
from webrecord.storage.s3 import Bucket, StorageError
from webrecord.storage.settings import StorageSettings
from webrecord.storage.video import LocalVideo, hls_files

log = logging.getLogger(__name__)

# The SDK's codes when no API answer came back: no connection / timeout, or a non-200 reply.
NO_ANSWER = {"ClientNetworkError": "cannot reach the service",
             "ServerNetworkError": "not an API answer"}


class VodError(Exception):
    """A VOD step failed; the message names the step, the endpoint and the service's code."""


@dataclass
class VodMedia:
    file_id: str
    media_url: str | None


# ---------------------------------------------------------------- API client


def _profile(settings: StorageSettings) -> tuple[ClientProfile, str]:
    """The SDK's profile for WEBRECORD_VOD_ENDPOINT (scheme and host:port, so a loopback test
    server can stand in) and the endpoint as shown in errors."""
    endpoint = settings.vod_endpoint.rstrip("/")
    parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
    http = HttpProfile(protocol=parts.scheme or "https", endpoint=parts.netloc,
                       reqTimeout=settings.vod_timeout_s)
    # The SDK's retryer retries only when no answer came back (network errors, rate limits):
    # a service error is final. Backoff 0.4, 0.8, then 2 s at most between tries.
    retryer = StandardRetryer(max_attempts=settings.vod_attempts,
                              backoff_fn=lambda n: min(2.0, 0.4 * 2 ** n))
    return ClientProfile(httpProfile=http, retryer=retryer), endpoint


class VodClient:
    """ApplyUpload / CommitUpload through Tencent's SDK (it signs with TC3-HMAC-SHA256)."""

    def __init__(self, settings: StorageSettings) -> None:
        try:
            creds = settings.vod_credentials()
        except (ValueError, OSError) as exc:
            raise VodError(str(exc)) from None
        if creds is None:
            raise VodError("VOD upload needs WEBRECORD_VOD_SECRET_ID and WEBRECORD_VOD_SECRET_KEY"
                           " (or WEBRECORD_VOD_CREDENTIALS_FILE)")
        profile, self.endpoint = _profile(settings)
        self.sdk = vod_client.VodClient(credential.Credential(*creds), settings.vod_region,
                                        profile)

    def call(self, action: str, params: dict[str, Any]) -> Any:
        """One API action with the SDK's request/response models; errors become VodError."""
        request = getattr(models, f"{action}Request")()
        request.from_json_string(json.dumps(params))
        try:
            return getattr(self.sdk, action)(request)
        except TencentCloudSDKException as exc:
            if exc.get_code() in NO_ANSWER:
                raise VodError(f"{action} at {self.endpoint} failed: {NO_ANSWER[exc.get_code()]}"
                               f" ({str(exc.get_message())[:200]})") from None
            raise VodError(f"{action} at {self.endpoint} failed: {exc.get_code()}: "
                           f"{exc.get_message()} (RequestId {exc.get_request_id() or '?'})"
                           ) from None


def _apply_params(vod: VodOutput, media_type: str, media_name: str) -> dict[str, Any]:
    info = vod.media_info
    proc = vod.procedure_info
    params: dict[str, Any] = {"MediaType": media_type,
                              "MediaName": (info.media_name if info else None) or media_name}
    optional = {
        "ExpireTime": info.expire_time if info else None,
        "StorageRegion": info.storage_region if info else None,
        "ClassId": info.class_id if info else None,
        "SourceContext": info.source_context if info else None,
        "Procedure": proc.procedure if proc else None,
        "SessionContext": proc.session_context if proc else None,
        "SubAppId": vod.sub_app_id,
    }
    params.update({k: v for k, v in optional.items() if v not in (None, "")})
    return params


def upload_to_vod(video: LocalVideo, vod: VodOutput, settings: StorageSettings,
                  media_name: str) -> VodMedia:
    """Run the whole flow for one video (blocking; call from a worker thread)."""
    client = VodClient(settings)
    media_type = "m3u8" if video.muxer == "hls" else (video.path.suffix.lstrip(".") or "mp4")
    applied = client.call("ApplyUpload", _apply_params(vod, media_type, media_name))
    bucket_name, region = applied.StorageBucket, applied.StorageRegion
    session_key, media_path = applied.VodSessionKey, (applied.MediaStoragePath or "").lstrip("/")
    for name, value in (("StorageBucket", bucket_name), ("StorageRegion", region),
                        ("VodSessionKey", session_key), ("MediaStoragePath", media_path)):
        if not value:
            raise VodError(f"ApplyUpload at {client.endpoint} answered without {name}")

    temp = applied.TempCertificate
    creds = None
    if temp is not None and temp.SecretId and temp.SecretKey:
        creds = {"aws_access_key_id": temp.SecretId, "aws_secret_access_key": temp.SecretKey}
        if temp.Token:
            creds["aws_session_token"] = temp.Token
    bucket = Bucket.for_output(bucket_name, region, settings,
                               endpoint=settings.vod_storage_endpoint(region),
                               credentials=creds)
    try:
        if video.muxer == "hls":
            base = media_path.rsplit("/", 1)[0] if "/" in media_path else ""
            parts = {f"{base}/{rel}" if base else rel: p for rel, p in hls_files(video.path).items()}
            bucket.upload_many(parts, last=(media_path, video.path))
        else:
            bucket.upload_file(video.path, media_path)
    except StorageError as exc:
        raise VodError(f"VOD media upload: {exc}") from None

    commit: dict[str, Any] = {"VodSessionKey": session_key}
    if vod.sub_app_id is not None:
        commit["SubAppId"] = vod.sub_app_id
    committed = client.call("CommitUpload", commit)
    file_id = committed.FileId
    if not file_id:
        raise VodError(f"CommitUpload at {client.endpoint} answered without FileId")
    event(log, "vod upload committed", file_id=file_id, endpoint=client.endpoint,
          bucket=bucket_name, key=media_path)
    return VodMedia(file_id=file_id, media_url=committed.MediaUrl or None)
