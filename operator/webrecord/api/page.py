"""Page control (issue 15, an optional `spec.page`): what the caller prepares before the page
loads. Caller input, so every value is bounded and checked here, once, for the models, the
protocol's shapes and the CRD:

- headers go only to requests for the RecordURL's host (never to third parties) and may not
  be hop-by-hop, Host, Cookie, proxy or content-framing headers (the proxy and the browser own
  those);
- cookies are set for the RecordURL's host or a parent domain of it, never another site;
- scripts and styles run in the page itself: they get nothing the caller did not write.
"""

from __future__ import annotations

import re

from typing import Annotated

from pydantic import AfterValidator, Field

from webrecord.api.urls import parse_http_url

MAX_HEADERS = 32
MAX_COOKIES = 64
MAX_INJECTED = 8  # scripts, and styles
MAX_INJECTED_CHARS = 65536
MAX_VALUE_CHARS = 4096
MIN_SCALE, MAX_SCALE = 0.5, 4.0

TOKEN = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"  # RFC 9110 field-name / cookie-name token
_TOKEN = re.compile(TOKEN)
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # CR, LF, NUL, other controls (tab ok)
_BAD_COOKIE_VALUE = re.compile(r"[\x00-\x1f\x7f;]")

# Connection management belongs to the browser and the egress proxy; Host picks the site;
# Cookie has its own field (checked against the site); framing headers would desync requests.
FORBIDDEN_HEADERS = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
    "te", "trailer", "transfer-encoding", "upgrade", "host", "content-length", "cookie",
    "expect", "forwarded", "via",
})
FORBIDDEN_PREFIXES = ("proxy-", "sec-", ":")


def header_name_problem(name: str) -> str | None:
    if not _TOKEN.match(name):
        return "must be an HTTP header name (letters, digits and !#$%&'*+.^_`|~-)"
    low = name.lower()
    if low in FORBIDDEN_HEADERS or low.startswith(FORBIDDEN_PREFIXES):
        return (f"{name!r} may not be set: hop-by-hop, Host, Cookie, proxy and framing "
                "headers belong to the browser (use cookies for Cookie)")
    return None


def header_value_problem(value: str) -> str | None:
    return "must not contain line breaks or control characters" if _BAD_VALUE.search(value) \
        else None


def cookie_value_problem(value: str) -> str | None:
    return "must not contain ';' or control characters" if _BAD_COOKIE_VALUE.search(value) \
        else None


def cookie_domain_problem(domain: str, record_url: str) -> str | None:
    """A cookie may be set for the RecordURL's host or a parent domain of it (not a bare TLD),
    never for another site."""
    host = parse_http_url(record_url).host
    want = domain.lower().lstrip(".")
    if want == host:
        return None
    if host.endswith("." + want) and "." in want:
        return None
    return f"{domain!r} is not the RecordURL's host ({host}) or a parent domain of it"


def check_header_name(value: str) -> str:
    if problem := header_name_problem(value):
        raise ValueError(problem)
    return value


def check_header_value(value: str) -> str:
    if problem := header_value_problem(value):
        raise ValueError(problem)
    return value


def check_cookie_value(value: str) -> str:
    if problem := cookie_value_problem(value):
        raise ValueError(problem)
    return value


def check_user_agent(value: str | None) -> str | None:
    if value is not None and _BAD_VALUE.search(value):
        raise ValueError("must not contain line breaks or control characters")
    return value


MIN_IDLE_S, MAX_IDLE_S = 5, 36000
MAX_BLANK_S = 3600
IDLE_DOC = {
    "seconds": f"Stop (or pause) after this many seconds of an unchanged page and silence "
               f"({MIN_IDLE_S}-{MAX_IDLE_S}). Unset: never",
    "action": "What an idle page does to the task: stop (deliver the video) or pause",
    "blank_seconds": f"Fail with PageBlank when the page still shows one flat colour and no "
                     f"sound this many seconds after recording began (0 off, at most "
                     f"{MAX_BLANK_S}). Unset: the recorder's WEBRECORD_BLANK_PAGE_SECONDS",
}


# The descriptions, shared by the models and the protocol's shapes.
DOC = {
    "user_agent": "navigator.userAgent and the User-Agent header of the page's requests",
    "device_scale_factor": f"devicePixelRatio the page sees and draws at ({MIN_SCALE}-"
                           f"{MAX_SCALE}); the layout keeps width x height CSS pixels and "
                           "the video width x height pixels",
    "headers": f"Extra request headers (at most {MAX_HEADERS}), sent only to the RecordURL's "
               "host; hop-by-hop, Host, Cookie, Sec-*, proxy and framing headers are refused",
    "cookies": f"Cookies set before the page loads (at most {MAX_COOKIES}); the domain must be "
               "the RecordURL's host or a parent domain of it (default: the host)",
    "scripts": f"JavaScript run in every document before the page's own scripts (at most "
               f"{MAX_INJECTED}, {MAX_INJECTED_CHARS} characters each)",
    "styles": f"CSS added to every document before it renders (at most {MAX_INJECTED})",
    "console_signals": "console lines START_RECORDING / END_RECORDING act as "
                       "window.startRecord() / window.stopRecord() (default true)",
}


def scale_field() -> Field:  # type: ignore[valid-type]
    return Field(None, ge=MIN_SCALE, le=MAX_SCALE, description=DOC["device_scale_factor"])


def injected_field(what: str) -> Field:  # type: ignore[valid-type]
    return Field(None, max_length=MAX_INJECTED, description=DOC[what])


InjectedText = Field(max_length=MAX_INJECTED_CHARS)

# The header rules as CEL for the CRD (the cookie-domain rule is checked by the operator with
# the models: the task ends InvalidParam).
CEL_HEADER_RULES = [
    ("!(self.name.lowerAscii() in " + str(sorted(FORBIDDEN_HEADERS)).replace("'", '"') + ") && "
     + " && ".join(f"!self.name.lowerAscii().startsWith('{p}')" for p in FORBIDDEN_PREFIXES),
     "header name may not be set: hop-by-hop, Host, Cookie, Sec-*, proxy and framing headers "
     "belong to the browser"),
    ("self.name.matches('" + TOKEN.replace("\\", "\\\\").replace("'", "\\'") + "')",
     "header name must be an HTTP token"),
    ("!self.value.matches('[\\\\x00-\\\\x08\\\\x0a-\\\\x1f\\\\x7f]')",
     "header value must not contain line breaks or control characters"),
]


# Field types shared by the CRD shape (api/models.py) and the protocol shape (api/protocol/):
# one rule, two spellings of the field names.
HeaderName = Annotated[str, Field(min_length=1, max_length=128), AfterValidator(check_header_name)]
HeaderValue = Annotated[str, Field(max_length=MAX_VALUE_CHARS), AfterValidator(check_header_value)]
CookieName = Annotated[str, Field(min_length=1, max_length=256, pattern=TOKEN)]
CookieValue = Annotated[str, Field(max_length=MAX_VALUE_CHARS), AfterValidator(check_cookie_value)]
CookieDomain = Annotated[str, Field(max_length=253, pattern=r"^\.?[A-Za-z0-9.-]+$")]
CookiePath = Annotated[str, Field(max_length=1024, pattern=r"^/[!-:<-~]*$")]
