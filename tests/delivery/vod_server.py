"""A loopback stand-in for the VOD API that checks what the real service would check.

It verifies the TC3-HMAC-SHA256 signature with its own implementation (written from the
published algorithm, not imported from webrecord or the SDK), the common headers (X-TC-Action,
X-TC-Timestamp within 5 minutes, X-TC-Version, Content-Type, Host; X-TC-Region is optional, as
VOD's API has no region), the
ApplyUpload parameters, and on CommitUpload that the media really is in the storage bucket
(the moto S3 server) under the path it handed out. Answers have the API's shape:
{"Response": {..., "RequestId"}} or {"Response": {"Error": {"Code", "Message"}, "RequestId"}}.
"""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import boto3
from botocore.config import Config


def _sign(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def expected_signature(secret_key: str, headers: dict[str, str], signed: list[str],
                       body: bytes, timestamp: int, service: str) -> str:
    canonical_headers = "".join(f"{h}:{headers.get(h, '').strip().lower()}\n" for h in signed)
    canonical = (f"POST\n/\n\n{canonical_headers}\n{';'.join(signed)}\n"
                 f"{hashlib.sha256(body).hexdigest()}")
    day = datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%d")
    to_sign = (f"TC3-HMAC-SHA256\n{timestamp}\n{day}/{service}/tc3_request\n"
               f"{hashlib.sha256(canonical.encode()).hexdigest()}")
    k = _sign(_sign(_sign(("TC3" + secret_key).encode(), day), service), "tc3_request")
    return hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()


@dataclass
class VodServer:
    s3_endpoint: str
    bucket: str
    secret_id: str = "AKIDtestvod"
    secret_key: str = "vod-secret-key"
    region: str = "ap-guangzhou"
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)  # as received
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    url: str = ""

    def start(self) -> "VodServer":
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - stdlib name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                answer = owner.handle(self.path, {k.lower(): v for k, v in self.headers.items()},
                                      body)
                raw = json.dumps({"Response": answer}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self._server.server_address[1]}"
        self.url = f"http://{self.host}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _s3(self):
        return boto3.session.Session().client(
            "s3", endpoint_url=self.s3_endpoint, region_name="us-east-1",
            aws_access_key_id="testing", aws_secret_access_key="testing",
            config=Config(s3={"addressing_style": "path"}))

    # -------------------------------------------------------------- checks

    def _error(self, code: str, message: str) -> dict[str, Any]:
        self.rejected.append(code)
        return {"Error": {"Code": code, "Message": message}, "RequestId": str(uuid.uuid4())}

    def _auth(self, headers: dict[str, str], body: bytes) -> str | None:
        """None when the request is authentic, else the error code."""
        if headers.get("content-type") not in ("application/json",
                                               "application/json; charset=utf-8"):
            return "InvalidParameter.ContentType"
        if headers.get("host") != self.host:
            return "AuthFailure.InvalidHost"
        if headers.get("x-tc-version") != "2018-07-17" or not headers.get("x-tc-action"):
            return "MissingParameter"
        try:
            stamp = int(headers.get("x-tc-timestamp", ""))
        except ValueError:
            return "MissingParameter"
        if abs(time.time() - stamp) > 300:
            return "AuthFailure.SignatureExpire"
        auth = headers.get("authorization", "")
        algo, _, rest = auth.partition(" ")
        fields = dict(part.strip().split("=", 1) for part in rest.split(",") if "=" in part)
        if algo != "TC3-HMAC-SHA256" or not {"Credential", "SignedHeaders", "Signature"} <= set(
                fields):
            return "AuthFailure.InvalidAuthorization"
        secret_id, day, service, term = (fields["Credential"].split("/") + ["", "", "", ""])[:4]
        if secret_id != self.secret_id:
            return "AuthFailure.SecretIdNotFound"
        if (day != datetime.fromtimestamp(stamp, timezone.utc).strftime("%Y-%m-%d")
                or service != "vod" or term != "tc3_request"):
            return "AuthFailure.InvalidAuthorization"
        signed = fields["SignedHeaders"].split(";")
        if not {"content-type", "host"} <= set(signed):
            return "AuthFailure.InvalidAuthorization"
        want = expected_signature(self.secret_key, headers, signed, body, stamp, service)
        if not hmac.compare_digest(want, fields["Signature"]):
            return "AuthFailure.SignatureFailure"
        return None

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> dict[str, Any]:
        if path != "/":
            return self._error("InvalidAction", f"path {path}")
        self.requests.append((headers, body))
        code = self._auth(headers, body)
        if code:
            return self._error(code, "request not authenticated")
        params = json.loads(body)
        action = headers["x-tc-action"]
        self.calls.append((action, params))
        if action == "ApplyUpload":
            if not params.get("MediaType"):
                return self._error("MissingParameter", "MediaType")
            key = f"/{params.get('SubAppId', 0)}/{uuid.uuid4().hex[:16]}/f0.{params['MediaType']}"
            session = str(uuid.uuid4())
            self.sessions[session] = {"path": key, "sub": params.get("SubAppId")}
            return {
                "StorageBucket": self.bucket, "StorageRegion": self.region,
                "VodSessionKey": session, "MediaStoragePath": key,
                "TempCertificate": {"SecretId": "testing", "SecretKey": "testing",
                                    "Token": "session-token", "ExpiredTime": int(time.time()) + 600},
                "RequestId": str(uuid.uuid4()),
            }
        if action == "CommitUpload":
            session = self.sessions.get(params.get("VodSessionKey", ""))
            if session is None:
                return self._error("InvalidParameterValue.VodSessionKey", "unknown session")
            if params.get("SubAppId") != session["sub"]:
                return self._error("InvalidParameterValue.SubAppId", "SubAppId differs")
            try:
                self._s3().head_object(Bucket=self.bucket, Key=session["path"].lstrip("/"))
            except Exception:  # noqa: BLE001 - any miss means the media is not there
                return self._error("FailedOperation", "media not uploaded")
            return {"FileId": "528589080000000" + str(len(self.calls)).zfill(4),
                    "MediaUrl": f"http://vod.example.com{session['path']}",
                    "RequestId": str(uuid.uuid4())}
        return self._error("InvalidAction", action)
