"""API gateway application authentication (ApiAppKey / ApiAppSecret), server and client side.

The scheme (as the cloud API gateways document it for "application authentication"):

    X-Date: Wed, 25 Nov 2026 13:00:00 GMT
    Content-MD5: base64(hex(md5(body)))          # JSON bodies; "" when absent
    Authorization: hmac id="<ApiAppKey>", algorithm="hmac-sha1", headers="x-date",
                   signature="<base64(hmac(ApiAppSecret, signing_string))>"

    signing_string = "\n".join([
        *[f"{name}: {value}" for name in headers],   # lowercase names, in the listed order
        HTTPMethod,                                  # "POST"
        Accept,                                      # header value or ""
        Content-Type,                                # header value or ""
        Content-MD5,                                 # header value or ""
        PathAndParameters,                           # "/path" + ("?" + sorted "k=v" joined by "&")
    ])

What this server adds on top: `x-date` must be among the signed headers and within
`auth_max_skew_seconds` (15 minutes) of our clock; Content-MD5, when sent, must match the body
(both the gateway's base64-of-hex form and the RFC 1864 base64-of-digest form are accepted) and is
required for non-empty bodies unless `auth_require_content_md5` is off; the signature of a request
that changes something (Start and the controls) is accepted once: a replay inside the window is
refused. Two byte-identical controls signed within the same X-Date second (two quick Refreshes)
have the same signature, so a client that sends such pairs signs an extra header with a random
value, e.g. `headers="x-date source"` with `Source: <uuid>` (the gateway's signature watermark).
Describe and List are reads whose replay changes nothing, and legitimate pollers send
byte-identical Describes within one X-Date second, so they are not replay-checked. The replay
cache is per process: behind several adapter replicas, route by ApiAppKey or accept that a replay
may reach another replica. Algorithms: hmac-sha1, hmac-sha256, hmac-sha512.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml
from cachetools import TLRUCache

from webrecord.api.protocol.errors import AdapterErrorCode, ApiError

log = logging.getLogger(__name__)

ALGORITHMS = {"hmac-sha1": hashlib.sha1, "hmac-sha256": hashlib.sha256, "hmac-sha512": hashlib.sha512}
_PARAM = re.compile(r'\s*([A-Za-z]+)\s*=\s*"([^"]*)"\s*(?:,|$)')


@dataclass(frozen=True)
class SignedRequest:
    """What the signature covers; built by the server from the request, by clients from theirs."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]  # case-insensitive lookups are done by the caller: lowercase keys
    body: bytes


def content_md5(body: bytes) -> str:
    """The gateway's Content-MD5: base64 of the hex MD5 digest."""
    return base64.b64encode(hashlib.md5(body).hexdigest().encode()).decode()


def path_and_parameters(path: str, query: Mapping[str, str]) -> str:
    if not query:
        return path
    return path + "?" + "&".join(f"{k}={query[k]}" for k in sorted(query))


def signing_string(req: SignedRequest, signed_headers: list[str]) -> str:
    lines = [f"{name}: {req.headers.get(name, '')}" for name in signed_headers]
    lines += [
        req.method.upper(),
        req.headers.get("accept", ""),
        req.headers.get("content-type", ""),
        req.headers.get("content-md5", ""),
        path_and_parameters(req.path, req.query),
    ]
    return "\n".join(lines)


def sign(secret: str, text: str, algorithm: str = "hmac-sha1") -> str:
    # aiohttp decodes header bytes that are not UTF-8 as surrogates; surrogateescape restores
    # the bytes the client sent, which is what it signed.
    digest = hmac.new(_raw(secret), _raw(text), ALGORITHMS[algorithm]).digest()
    return base64.b64encode(digest).decode()


def _raw(text: str) -> bytes:
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that did not come from undecodable bytes
        return text.encode("utf-8", "surrogatepass")


def http_date(at: float | None = None) -> str:
    return email.utils.formatdate(time.time() if at is None else at, usegmt=True)


def sign_headers(
    key: str,
    secret: str,
    body: bytes,
    *,
    method: str = "POST",
    path: str = "/",
    query: Mapping[str, str] | None = None,
    accept: str = "application/json",
    content_type: str = "application/json",
    algorithm: str = "hmac-sha1",
    at: float | None = None,
    extra_signed: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Client side: the headers that authenticate one request (tests, bench, callers in Python)."""
    headers = {"accept": accept, "content-type": content_type, "x-date": http_date(at)}
    if body:
        headers["content-md5"] = content_md5(body)
    names = ["x-date"]
    for name, value in (extra_signed or {}).items():
        headers[name.lower()] = value
        names.append(name.lower())
    req = SignedRequest(method, path, query or {}, headers, body)
    signature = sign(secret, signing_string(req, names), algorithm)
    headers["authorization"] = (
        f'hmac id="{key}", algorithm="{algorithm}", headers="{" ".join(names)}", '
        f'signature="{signature}"'
    )
    return headers


# ---------------------------------------------------------------- keys


def load_keys(file: Path | None = None, directory: Path | None = None) -> dict[str, str]:
    """ApiAppKey -> ApiAppSecret from a YAML/JSON file and/or a mounted secret directory.

    File forms: `{"KEY": "SECRET", ...}`, `{"keys": [{"key": K, "secret": S}]}` or a list of
    `{"key", "secret"}` (each entry may also name its `buckets`: see `load_key_buckets`).
    Directory: one file per key (file name = key, content = secret), as a Kubernetes Secret
    mounted as a volume looks; dotfiles (`..data`) are skipped.
    """
    keys: dict[str, str] = {}
    if file is not None:
        for entry in _key_entries(file):
            keys[str(entry["key"])] = str(entry["secret"])
    if directory is not None:
        for path in sorted(Path(directory).iterdir()):
            if path.name.startswith(".") or not path.is_file():
                continue
            keys[path.name] = path.read_text().strip()
    for key, secret in keys.items():
        if not key or not secret:
            raise ValueError("an ApiAppKey or ApiAppSecret is empty")
    return keys


def load_key_buckets(keys_file: Path | None,
                     buckets_file: Path | None = None) -> dict[str, frozenset[str]]:
    """ApiAppKey -> the buckets its Starts may name in Output.Cos.Bucket: from the keys file's
    entries that list `buckets` (`[{key, secret, buckets: [b1, b2]}]`) and from `buckets_file`
    (`{key: [b1, b2]}`, which wins). Other keys get the adapter-wide `allowed_buckets`."""
    pairs: list[tuple[object, object]] = []
    for entry in _key_entries(keys_file) if keys_file is not None else []:
        if entry.get("buckets") is not None:
            pairs.append((entry["key"], entry["buckets"]))
    if buckets_file is not None:
        data = _load_yaml_or_json(buckets_file)
        if not isinstance(data, dict):
            raise ValueError(f"{buckets_file}: expected a mapping of ApiAppKey to bucket names")
        pairs += list(data.items())
    rules: dict[str, frozenset[str]] = {}
    for key, buckets in pairs:
        if not isinstance(buckets, list) or not all(isinstance(b, str) for b in buckets):
            raise ValueError(f"buckets of key {key!r} must be a list of names")
        rules[str(key)] = frozenset(buckets)
    return rules


def _load_yaml_or_json(file: Path) -> object:
    text = Path(file).read_text()
    return json.loads(text) if str(file).endswith(".json") else yaml.safe_load(text)


def _key_entries(file: Path) -> list[dict]:
    data = _load_yaml_or_json(file)
    if isinstance(data, dict) and "keys" in data:
        data = data["keys"]
    if isinstance(data, dict):
        return [{"key": key, "secret": secret} for key, secret in data.items()]
    if isinstance(data, list) and all(isinstance(d, dict) and "key" in d and "secret" in d
                                      for d in data):
        return data
    raise ValueError(f"{file}: expected a mapping or a list of {{key, secret}}")


# ---------------------------------------------------------------- server side


class ReplayCache:
    """Signatures seen inside the validity window; bounded, oldest evicted first.

    cachetools' TLRUCache: each signature expires at the end of its own X-Date window (not a
    fixed time after it was seen), and a full cache drops the least recently used entry, which
    is the oldest here (entries are only added and tested, never read)."""

    def __init__(self, max_entries: int) -> None:
        self._now = 0.0  # the caller's clock (tests pass theirs), set on every check
        self._seen: TLRUCache[str, float] = TLRUCache(
            maxsize=max_entries, ttu=lambda _sig, expires, _now: expires, timer=lambda: self._now)

    def check_and_add(self, signature: str, expires: float, now: float) -> bool:
        """True when new (and now remembered), False when a replay."""
        self._now = now
        if signature in self._seen:
            return False
        self._seen[signature] = expires
        return True

    def __len__(self) -> int:
        self._seen.expire()
        return len(self._seen)


@dataclass(frozen=True)
class Verified:
    key: str  # the ApiAppKey: the owner of the tasks this request creates or sees
    signature: str
    expires: float  # end of the X-Date window: the replay cache keeps it until then


class Authenticator:
    def __init__(
        self,
        keys: Mapping[str, str],
        max_skew: int = 900,
        require_content_md5: bool = True,
        replay_cache_size: int = 200_000,
    ) -> None:
        self.keys = dict(keys)
        # Signs for unknown keys, so they cost what a known key costs and fail the same way.
        self._decoy = secrets.token_urlsafe(32)
        self.max_skew = max_skew
        self.require_content_md5 = require_content_md5
        self.replay = ReplayCache(replay_cache_size)

    def verify(self, req: SignedRequest, now: float | None = None) -> "Verified":
        """Who signed `req` (not yet checked for replay: see `remember`), or AuthFailure.*."""
        now = time.time() if now is None else now
        header = req.headers.get("authorization")
        if not header:
            raise ApiError(AdapterErrorCode.AUTH_MISSING, "Authorization: header missing")
        params = parse_authorization(header)
        algorithm = params["algorithm"].lower()
        if algorithm not in ALGORITHMS:
            raise ApiError(
                AdapterErrorCode.AUTH_ALGORITHM,
                f"Authorization.algorithm: {params['algorithm'][:32]!r} not supported "
                f"(one of {', '.join(ALGORITHMS)})",
            )
        names = [n.lower() for n in params["headers"].split()]
        if "x-date" not in names:
            raise ApiError(
                AdapterErrorCode.AUTH_DATE_MISSING, "Authorization.headers: must include x-date"
            )
        raw_date = req.headers.get("x-date")
        if not raw_date:
            raise ApiError(AdapterErrorCode.AUTH_DATE_MISSING, "X-Date: header missing")
        try:
            signed_at = email.utils.parsedate_to_datetime(raw_date).timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):
            raise ApiError(
                AdapterErrorCode.AUTH_DATE_MISSING,
                "X-Date: not an HTTP date (e.g. 'Wed, 25 Nov 2026 13:00:00 GMT')",
            )
        if abs(now - signed_at) > self.max_skew:
            raise ApiError(
                AdapterErrorCode.AUTH_DATE_EXPIRED,
                f"X-Date: more than {self.max_skew // 60} minutes from the server time",
            )
        # An unknown key and a wrong signature get the same code and message (no key
        # enumeration): the decoy secret never matches.
        secret = self.keys.get(params["id"])
        expected = sign(secret or self._decoy, signing_string(req, names), algorithm)
        sent = _raw(params["signature"])
        if not hmac.compare_digest(expected.encode(), sent) or secret is None:
            raise ApiError(
                AdapterErrorCode.AUTH_SIGNATURE,
                "Authorization.signature: does not match the request (check the signing string "
                "and the ApiAppSecret)",
            )
        self._check_body(req)
        return Verified(params["id"], params["signature"], signed_at + self.max_skew)

    def remember(self, verified: "Verified", now: float | None = None) -> None:
        """Accept a signature once: a second use inside the window is AuthFailure.RequestReplayed."""
        now = time.time() if now is None else now
        if not self.replay.check_and_add(verified.signature, verified.expires, now):
            raise ApiError(
                AdapterErrorCode.AUTH_REPLAYED,
                "Authorization.signature: already used; sign every request anew",
            )

    def _check_body(self, req: SignedRequest) -> None:
        sent = req.headers.get("content-md5", "")
        if not sent:
            if req.body and self.require_content_md5:
                raise ApiError(
                    AdapterErrorCode.AUTH_CONTENT_MD5,
                    "Content-MD5: required for a request with a body (base64 of the hex MD5)",
                )
            return
        digest = hashlib.md5(req.body)
        accepted = {
            base64.b64encode(digest.hexdigest().encode()).decode(),
            base64.b64encode(digest.digest()).decode(),
        }
        if sent not in accepted:
            raise ApiError(AdapterErrorCode.AUTH_CONTENT_MD5, "Content-MD5: does not match the body")


def parse_authorization(header: str) -> dict[str, str]:
    """`hmac id="..", algorithm="..", headers="..", signature=".."` -> dict, or AuthFailure."""
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() != "hmac":
        raise ApiError(
            AdapterErrorCode.AUTH_MALFORMED, "Authorization: scheme must be 'hmac' (application auth)"
        )
    params: dict[str, str] = {}
    pos = 0
    rest = rest.strip()
    while pos < len(rest):
        match = _PARAM.match(rest, pos)
        if not match:
            raise ApiError(
                AdapterErrorCode.AUTH_MALFORMED,
                'Authorization: expected name="value" pairs separated by commas',
            )
        params[match.group(1).lower()] = match.group(2)
        pos = match.end()
    for name in ("id", "algorithm", "headers", "signature"):
        if not params.get(name):
            raise ApiError(AdapterErrorCode.AUTH_MALFORMED, f"Authorization.{name}: missing")
    return params
