"""The legacy JSON "Action" protocol, in one place: `actions` (request envelopes and their
Data, the translation of a Start to `RecordingSpec`, validation messages that name the field),
`replies` (the PascalCase Describe/Result shapes, also the callback body) and `errors` (the
ErrorCode catalogue, its HTTP statuses and `ApiError`).

The adapter serves it; the delivery stage and the operator build callback bodies with
`describe_body`, so a caller sees the same document either way.
"""

from webrecord.api.protocol.errors import INTERNAL_MESSAGE, AdapterErrorCode, ApiError, http_status
from webrecord.api.protocol.replies import describe_body, result_body, video_body

__all__ = ["INTERNAL_MESSAGE", "AdapterErrorCode", "ApiError", "describe_body", "http_status",
           "result_body", "video_body"]
