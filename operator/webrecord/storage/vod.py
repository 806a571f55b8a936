"""VOD upload: the cloud API's ApplyUpload -> object upload -> CommitUpload flow.

1. `ApplyUpload` (API version 2018-07-17) with MediaType, MediaName, ExpireTime, StorageRegion,
   ClassId, SourceContext, Procedure, SessionContext, SubAppId from the task's Output.Vod.
   The answer names the storage bucket/region, the object path (MediaStoragePath), a session
   key (VodSessionKey) and usually temporary credentials (TempCertificate).
2. The media goes to that bucket through the S3-compatible API (COS), with those temporary
   credentials; HLS segments go beside the playlist, keeping their relative paths.
3. `CommitUpload` with VodSessionKey (and SubAppId) -> FileId, MediaUrl.

Every API call is signed with TC3-HMAC-SHA256 (`tc3_headers`), using WEBRECORD_VOD_SECRET_ID /
WEBRECORD_VOD_SECRET_KEY (or a mounted WEBRECORD_VOD_CREDENTIALS_FILE).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from webrecord.api.models import VodOutput
from webrecord.logs import event
from webrecord.storage.s3 import Bucket, StorageError
from webrecord.storage.settings import DeliverySettings

if TYPE_CHECKING:
    from webrecord.delivery.pipeline import LocalVideo

log = logging.getLogger(__name__)

SERVICE = "vod"
API_VERSION = "2018-07-17"
ALGORITHM = "TC3-HMAC-SHA256"
CONTENT_TYPE = "application/json; charset=utf-8"


class VodError(Exception):
    """A VOD step failed; the message names the step, the endpoint and the service's code."""


@dataclass
class VodMedia:
    file_id: str
    media_url: str | None


# ---------------------------------------------------------------- TC3-HMAC-SHA256


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def tc3_signature(secret_key: str, service: str, timestamp: int, canonical_request: str) -> str:
    """Signature over a canonical request: StringToSign with the UTC-date credential scope,
    signed with the key derived as HMAC chain TC3<key> -> date -> service -> tc3_request."""
    date = datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%d")
    scope = f"{date}/{service}/tc3_request"
    string_to_sign = "\n".join([
        ALGORITHM, str(timestamp), scope,
        hashlib.sha256(canonical_request.encode()).hexdigest(),
    ])
    key = _hmac(("TC3" + secret_key).encode(), date)
    key = _hmac(key, service)
    key = _hmac(key, "tc3_request")
    return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()


def canonical_request(method: str, path: str, query: str, headers: dict[str, str],
                      signed: list[str], payload: bytes) -> str:
    """CanonicalRequest of signature v3: header names lower-case, values trimmed and
    lower-cased (as the service does), in the order of SignedHeaders."""
    lowered = {k.lower(): v.strip().lower() for k, v in headers.items()}
    canonical_headers = "".join(f"{name}:{lowered.get(name, '')}\n" for name in signed)
    return "\n".join([method, path, query, canonical_headers, ";".join(signed),
                      hashlib.sha256(payload).hexdigest()])


def tc3_headers(*, secret_id: str, secret_key: str, host: str, action: str, payload: bytes,
                region: str = "", timestamp: int | None = None,
                version: str = API_VERSION, service: str = SERVICE) -> dict[str, str]:
    """All headers of a signed POST of `payload` (JSON) to the API at `host`."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    headers = {
        "Content-Type": CONTENT_TYPE,
        "Host": host,
        "X-TC-Action": action,
        "X-TC-Timestamp": str(timestamp),
        "X-TC-Version": version,
        "X-TC-Region": region,
    }
    signed = ["content-type", "host", "x-tc-action"]
    request = canonical_request("POST", "/", "", headers, signed, payload)
    signature = tc3_signature(secret_key, service, timestamp, request)
    date = datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%d")
    headers["Authorization"] = (
        f"{ALGORITHM} Credential={secret_id}/{date}/{service}/tc3_request, "
        f"SignedHeaders={';'.join(signed)}, Signature={signature}"
    )
    return headers


# ---------------------------------------------------------------- API client


class VodClient:
    def __init__(self, settings: DeliverySettings) -> None:
        try:
            creds = settings.vod_credentials()
        except (ValueError, OSError) as exc:
            raise VodError(str(exc)) from None
        if creds is None:
            raise VodError("VOD upload needs WEBRECORD_VOD_SECRET_ID and WEBRECORD_VOD_SECRET_KEY"
                           " (or WEBRECORD_VOD_CREDENTIALS_FILE)")
        self.secret_id, self.secret_key = creds
        self.settings = settings
        self.endpoint = settings.vod_endpoint.rstrip("/")
        self.host = urlsplit(self.endpoint).netloc

    def call(self, action: str, params: dict[str, Any]) -> dict[str, Any]:
        """One API action; returns Response without RequestId. Retries only when no answer
        came back at all (like the official SDK): a service error is final."""
        payload = json.dumps(params, ensure_ascii=False, separators=(",", ":")).encode()
        last = ""
        for attempt in range(1, self.settings.vod_attempts + 1):
            headers = tc3_headers(secret_id=self.secret_id, secret_key=self.secret_key,
                                  host=self.host, action=action, payload=payload,
                                  region=self.settings.vod_region)
            request = urllib.request.Request(self.endpoint + "/", data=payload, headers=headers,
                                             method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.settings.vod_timeout_s) as resp:
                    body = resp.read()
            except urllib.error.HTTPError as exc:
                body = exc.read()
                if not body:
                    raise VodError(f"{action} at {self.endpoint} failed: HTTP {exc.code}") from None
            except (urllib.error.URLError, socket.timeout, ConnectionError) as exc:
                reason = getattr(exc, "reason", exc)
                last = f"{action} at {self.endpoint} failed: cannot reach the service ({reason})"
                if attempt < self.settings.vod_attempts:
                    time.sleep(min(2.0, 0.2 * 2 ** attempt))
                continue
            try:
                response = json.loads(body)["Response"]
            except (ValueError, KeyError, TypeError):
                raise VodError(f"{action} at {self.endpoint} failed: not an API answer") from None
            if "Error" in response:
                err = response["Error"]
                raise VodError(
                    f"{action} at {self.endpoint} failed: {err.get('Code')}: "
                    f"{err.get('Message')} (RequestId {response.get('RequestId', '?')})")
            return response
        raise VodError(last)


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


def upload_to_vod(video: "LocalVideo", vod: VodOutput, settings: DeliverySettings,
                  media_name: str) -> VodMedia:
    """Run the whole flow for one video (blocking; call from a worker thread)."""
    from webrecord.delivery.pipeline import hls_files  # noqa: PLC0415 - avoids an import cycle

    client = VodClient(settings)
    media_type = "m3u8" if video.muxer == "hls" else (video.path.suffix.lstrip(".") or "mp4")
    applied = client.call("ApplyUpload", _apply_params(vod, media_type, media_name))
    try:
        bucket_name = applied["StorageBucket"]
        region = applied["StorageRegion"]
        session_key = applied["VodSessionKey"]
        media_path = applied["MediaStoragePath"].lstrip("/")
    except KeyError as exc:
        raise VodError(f"ApplyUpload at {client.endpoint} answered without {exc}") from None

    temp = applied.get("TempCertificate") or {}
    creds = None
    if temp.get("SecretId") and temp.get("SecretKey"):
        creds = {"aws_access_key_id": temp["SecretId"],
                 "aws_secret_access_key": temp["SecretKey"]}
        if temp.get("Token"):
            creds["aws_session_token"] = temp["Token"]
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
    file_id = committed.get("FileId")
    if not file_id:
        raise VodError(f"CommitUpload at {client.endpoint} answered without FileId")
    event(log, "vod upload committed", file_id=file_id, endpoint=client.endpoint,
          bucket=bucket_name, key=media_path)
    return VodMedia(file_id=file_id, media_url=committed.get("MediaUrl"))
