"""Request signatures of Tencent Cloud API 3.0: TC3-HMAC-SHA256 and the older HmacSHA1/HmacSHA256.

Both verifiers are pure functions of what the client sent (method, Host, query, headers, body or
parameters), a key lookup and the server clock; they return the matching credential or raise
``ApiError`` with an ``AuthFailure.*`` code. Every comparison of signatures is constant-time.

TC3 (https://cloud.tencent.com/document/api/213/30654):
    CanonicalRequest = Method \\n "/" \\n CanonicalQuery \\n CanonicalHeaders \\n SignedHeaders \\n
                       hex(SHA256(payload))
    StringToSign     = "TC3-HMAC-SHA256" \\n Timestamp \\n "<date>/<service>/tc3_request" \\n
                       hex(SHA256(CanonicalRequest))
    key = HMAC("TC3"+SecretKey, date) -> HMAC(., service) -> HMAC(., "tc3_request")
The service is the one in the credential scope (the Host is whatever endpoint the client used).

Legacy (HmacSHA1 / HmacSHA256, parameters ``SecretId``, ``Timestamp``, ``Nonce``,
``SignatureMethod``, ``Signature``):
    StringToSign = Method + Host + "/" + "?" + "&".join(f"{k}={v}" for sorted params but Signature)
with the raw (not URL-encoded) values and ``_`` in keys read as ``.``, as the official SDK builds it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from functools import lru_cache
from datetime import datetime, timezone
from typing import Callable, Mapping, Protocol

from vodimg.errors import ApiError

TC3_ALGORITHM = "TC3-HMAC-SHA256"
SERVICE = "vod"
DEFAULT_WINDOW_SECONDS = 300
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
LEGACY_METHODS = {"HmacSHA1": hashlib.sha1, "HmacSHA256": hashlib.sha256}
# Parameters the legacy signature scheme adds beside the action's own parameters.
LEGACY_COMMON_PARAMS = frozenset({
    "Action", "Version", "Region", "Timestamp", "Nonce", "SecretId", "Signature",
    "SignatureMethod", "RequestClient", "Token", "Language",
})

_AUTH_PAIR = re.compile(r"\s*([A-Za-z]+)=([^,]*)")


class CredentialLike(Protocol):
    secret_id: str
    secret_key: str
    app_id: int


Lookup = Callable[[str], "CredentialLike | None"]


@dataclass(frozen=True)
class Tc3Authorization:
    secret_id: str
    date: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str


def _invalid_authorization(detail: str) -> ApiError:
    return ApiError("AuthFailure.InvalidAuthorization", f"The Authorization header is malformed: {detail}.")


def parse_tc3_authorization(value: str) -> Tc3Authorization:
    """Parse ``TC3-HMAC-SHA256 Credential=ID/DATE/SERVICE/tc3_request, SignedHeaders=a;b, Signature=HEX``."""
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != TC3_ALGORITHM:
        raise _invalid_authorization(f"the algorithm must be {TC3_ALGORITHM}")
    fields: dict[str, str] = {}
    for part in rest.split(","):
        match = _AUTH_PAIR.fullmatch(part)
        if not match:
            raise _invalid_authorization("expected Credential=..., SignedHeaders=..., Signature=...")
        fields[match.group(1)] = match.group(2).strip()
    missing = [name for name in ("Credential", "SignedHeaders", "Signature") if not fields.get(name)]
    if missing:
        raise _invalid_authorization(f"{', '.join(missing)} missing")
    scope = fields["Credential"].split("/")
    if len(scope) != 4 or not all(scope) or scope[3] != "tc3_request":
        raise _invalid_authorization("Credential must be SecretId/YYYY-MM-DD/vod/tc3_request")
    secret_id, date, service, _ = scope
    if service != SERVICE:
        raise _invalid_authorization(f"the credential scope names service {service!r}, this is {SERVICE!r}")
    signed_headers = tuple(fields["SignedHeaders"].split(";"))
    if "content-type" not in signed_headers or "host" not in signed_headers:
        raise _invalid_authorization("SignedHeaders must include content-type and host")
    return Tc3Authorization(secret_id, date, service, signed_headers, fields["Signature"].lower())


def is_tc3(authorization: str) -> bool:
    return authorization.lstrip().startswith(TC3_ALGORITHM)


def parse_timestamp(value: str | None, name: str) -> int:
    if value is None or value == "":
        raise ApiError("MissingParameter", f"The request is missing the required parameter {name}.")
    try:
        return int(value)
    except ValueError:
        raise ApiError("InvalidParameter", f"{name} must be a Unix time in seconds, got {value!r}.") from None


def check_window(timestamp: int, now: float, window: int) -> None:
    if abs(now - timestamp) > window:
        raise ApiError(
            "AuthFailure.SignatureExpire",
            f"Signature expired: Timestamp {timestamp} differs from server time {int(now)} "
            f"by more than {window} seconds.",
        )


def _lookup(lookup: Lookup, secret_id: str) -> CredentialLike:
    credential = lookup(secret_id)
    if credential is None:
        raise ApiError("AuthFailure.SecretIdNotFound", "The SecretId does not exist.")
    return credential


def _signature_failure() -> ApiError:
    return ApiError(
        "AuthFailure.SignatureFailure",
        "The signature does not match: check the SecretKey and how the request is signed.",
    )


@lru_cache(maxsize=4096)
def tc3_signing_key(secret_key: str, date: str, service: str) -> bytes:
    """HMAC chain of the key; the same for a key all day, hence cached."""
    key = hmac.new(("TC3" + secret_key).encode(), date.encode(), hashlib.sha256).digest()
    key = hmac.new(key, service.encode(), hashlib.sha256).digest()
    return hmac.new(key, b"tc3_request", hashlib.sha256).digest()


def tc3_string_to_sign(method: str, query: str, canonical_headers: str, signed_headers: str,
                       payload_hash: str, timestamp: str, date: str, service: str) -> str:
    canonical_request = "\n".join(
        (method, "/", query, canonical_headers, signed_headers, payload_hash)
    )
    digest = hashlib.sha256(canonical_request.encode()).hexdigest()
    return f"{TC3_ALGORITHM}\n{timestamp}\n{date}/{service}/tc3_request\n{digest}"


def sign_tc3(secret_key: str, date: str, service: str, string_to_sign: str) -> str:
    key = tc3_signing_key(secret_key, date, service)
    return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()


def _payload_hashes(headers: Mapping[str, str], method: str, body: bytes) -> list[str]:
    """The payload hashes a client may have signed (SDK form first)."""
    if headers.get("x-tc-content-sha256", "").strip() == UNSIGNED_PAYLOAD:
        # The SDK hashes the literal text; AWS-style clients put the literal in the request.
        return [hashlib.sha256(UNSIGNED_PAYLOAD.encode()).hexdigest(), UNSIGNED_PAYLOAD]
    return [hashlib.sha256(b"" if method == "GET" else body).hexdigest()]


def _canonical_headers(auth: Tc3Authorization, headers: Mapping[str, str]) -> list[str]:
    """Canonical header blocks to try: the values exactly as sent, then lowercased (the documented
    form, which hand-written clients follow, e.g. ``x-tc-action:describeinstances``)."""
    exact = "".join(f"{name}:{headers.get(name, '').strip()}\n" for name in auth.signed_headers)
    lowered = exact.lower()
    return [exact] if lowered == exact else [exact, lowered]


def verify_tc3(method: str, query: str, headers: Mapping[str, str], body: bytes, lookup: Lookup,
               now: float, window: int = DEFAULT_WINDOW_SECONDS) -> CredentialLike:
    """Verify a TC3-HMAC-SHA256 request. ``headers`` must be addressable by lowercase name."""
    auth = parse_tc3_authorization(headers.get("authorization", ""))
    raw_timestamp = headers.get("x-tc-timestamp")
    timestamp = parse_timestamp(raw_timestamp, "X-TC-Timestamp")
    check_window(timestamp, now, window)
    expected_date = datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%d")
    if auth.date != expected_date:
        raise ApiError(
            "AuthFailure.SignatureFailure",
            f"The credential scope date {auth.date} is not the UTC date of X-TC-Timestamp ({expected_date}).",
        )
    credential = _lookup(lookup, auth.secret_id)
    signed_headers = ";".join(auth.signed_headers)
    key = tc3_signing_key(credential.secret_key, auth.date, auth.service)
    for canonical_headers in _canonical_headers(auth, headers):
        for payload_hash in _payload_hashes(headers, method, body):
            string_to_sign = tc3_string_to_sign(method, query, canonical_headers, signed_headers,
                                                payload_hash, raw_timestamp.strip(), auth.date, auth.service)
            expected = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
            if hmac.compare_digest(expected.encode(), auth.signature.encode()):
                return credential
    raise _signature_failure()


def legacy_string_to_sign(method: str, host: str, params: Mapping[str, str]) -> str:
    pairs = {key.replace("_", "."): value for key, value in params.items() if key != "Signature"}
    query = "&".join(f"{key}={pairs[key]}" for key in sorted(pairs))
    return f"{method}{host}/?{query}"


def sign_legacy(secret_key: str, string_to_sign: str, method_name: str) -> str:
    digest = hmac.new(secret_key.encode(), string_to_sign.encode(), LEGACY_METHODS[method_name]).digest()
    return base64.b64encode(digest).decode()


def verify_legacy(method: str, host: str, params: Mapping[str, str], lookup: Lookup, now: float,
                  window: int = DEFAULT_WINDOW_SECONDS) -> CredentialLike:
    """Verify an HmacSHA1/HmacSHA256 request whose parameters (query or form) are ``params``."""
    if not params.get("Signature"):
        raise ApiError("AuthFailure.InvalidAuthorization",
                       "The request is not signed: send an Authorization header (TC3-HMAC-SHA256) "
                       "or the Signature parameter (HmacSHA1/HmacSHA256).")
    for name in ("SecretId", "Nonce"):
        if not params.get(name):
            raise ApiError("MissingParameter", f"The request is missing the required parameter {name}.")
    method_name = params.get("SignatureMethod") or "HmacSHA1"
    if method_name not in LEGACY_METHODS:
        raise ApiError("InvalidParameterValue",
                       f"SignatureMethod must be HmacSHA1 or HmacSHA256, got {method_name!r}.")
    check_window(parse_timestamp(params.get("Timestamp"), "Timestamp"), now, window)
    credential = _lookup(lookup, params["SecretId"])
    expected = sign_legacy(credential.secret_key, legacy_string_to_sign(method, host, params), method_name)
    if not hmac.compare_digest(expected.encode(), params.get("Signature", "").encode()):
        raise _signature_failure()
    return credential
