"""The protocol's ErrorCode catalogue and the one exception type that carries it to the caller.

Every reply that is not a success is `{"ErrorCode", "ErrorMessage", "RequestID"}`. The message
names the field and the rule; it never contains a stack trace. Unexpected exceptions become
`InternalError` with a generic message while the trace is logged with the RequestID.
"""

from __future__ import annotations

import enum
from typing import Any


class AdapterErrorCode(str, enum.Enum):
    # (code, HTTP status). The body is authoritative; the HTTP status helps proxies and humans.
    MALFORMED_REQUEST = "MalformedRequest"  # not valid HTTP (bad request line or header)
    MALFORMED_BODY = "MalformedBody"  # not JSON, not an object, not UTF-8
    MISSING_PARAM = "MissingParam"  # a required field is absent
    INVALID_PARAM = "InvalidParam"  # wrong type, out of range, bad format, unknown field
    UNSUPPORTED_ACTION = "UnsupportedAction"  # Action is not one we know
    URL_NOT_ALLOWED = "UrlNotAllowed"  # RecordURL/CallbackURL aimed at link-local/metadata
    TASK_NOT_FOUND = "TaskNotFound"  # unknown TaskID, or one created by another key
    INVALID_ACTION = "InvalidAction"  # control does not fit the status (Resume while recording)
    AUTH_MISSING = "AuthFailure.SignatureMissing"
    AUTH_MALFORMED = "AuthFailure.MalformedAuthorization"
    AUTH_ALGORITHM = "AuthFailure.UnsupportedAlgorithm"
    AUTH_SIGNATURE = "AuthFailure.SignatureFailure"
    AUTH_DATE_MISSING = "AuthFailure.DateMissing"
    AUTH_DATE_EXPIRED = "AuthFailure.DateExpired"
    AUTH_REPLAYED = "AuthFailure.RequestReplayed"
    AUTH_CONTENT_MD5 = "AuthFailure.ContentMD5Mismatch"
    REQUEST_TOO_LARGE = "RequestTooLarge"
    REQUEST_TIMEOUT = "RequestTimeout"
    LIMIT_EXCEEDED = "LimitExceeded"  # queue full
    NOT_FOUND = "ResourceNotFound"  # unknown HTTP path
    METHOD_NOT_ALLOWED = "MethodNotAllowed"
    BACKEND_UNAVAILABLE = "BackendUnavailable"
    INTERNAL_ERROR = "InternalError"


_HTTP_STATUS: dict[AdapterErrorCode, int] = {
    AdapterErrorCode.MALFORMED_REQUEST: 400,
    AdapterErrorCode.MALFORMED_BODY: 400,
    AdapterErrorCode.MISSING_PARAM: 400,
    AdapterErrorCode.INVALID_PARAM: 400,
    AdapterErrorCode.UNSUPPORTED_ACTION: 400,
    AdapterErrorCode.URL_NOT_ALLOWED: 400,
    AdapterErrorCode.TASK_NOT_FOUND: 404,
    AdapterErrorCode.INVALID_ACTION: 409,
    AdapterErrorCode.REQUEST_TOO_LARGE: 413,
    AdapterErrorCode.REQUEST_TIMEOUT: 408,
    AdapterErrorCode.LIMIT_EXCEEDED: 429,
    AdapterErrorCode.NOT_FOUND: 404,
    AdapterErrorCode.METHOD_NOT_ALLOWED: 405,
    AdapterErrorCode.BACKEND_UNAVAILABLE: 503,
    AdapterErrorCode.INTERNAL_ERROR: 500,
}


def http_status(code: AdapterErrorCode) -> int:
    if code.value.startswith("AuthFailure."):
        return 401
    return _HTTP_STATUS[code]


class ApiError(Exception):
    """Raised anywhere in request handling; the server turns it into the error reply."""

    def __init__(self, code: AdapterErrorCode, message: str) -> None:
        super().__init__(f"{code.value}: {message}")
        self.code = code
        self.message = message

    @property
    def status(self) -> int:
        return http_status(self.code)

    def body(self, request_id: str) -> dict[str, Any]:
        return {"ErrorCode": self.code.value, "ErrorMessage": self.message, "RequestID": request_id}


INTERNAL_MESSAGE = "internal error; quote the RequestID when reporting it"
