"""Hand-written API 3.0 clients for the tests: requests signed exactly as the public documentation
describes (independently of the server's code), with every part overridable to build bad ones."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid
from datetime import datetime, timezone
from urllib.parse import urlencode

import httpx

ACTION = "DescribeProcessImageAsyncTemplates"
VERSION = "2018-07-17"


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def tc3_authorization(secret_id: str, secret_key: str, *, method: str, host: str, query: str,
                      headers: dict[str, str], payload_hash: str, timestamp: int,
                      date: str | None = None, service: str = "vod") -> str:
    """``headers``: the signed headers, lowercase names, values as they go into the canonical request."""
    date = date or datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%d")
    names = sorted(headers)
    canonical_headers = "".join(f"{name}:{headers[name]}\n" for name in names)
    signed_headers = ";".join(names)
    canonical_request = f"{method}\n/\n{query}\n{canonical_headers}\n{signed_headers}\n{payload_hash}"
    scope = f"{date}/{service}/tc3_request"
    string_to_sign = (f"TC3-HMAC-SHA256\n{timestamp}\n{scope}\n"
                      f"{hashlib.sha256(canonical_request.encode()).hexdigest()}")
    key = _hmac(_hmac(_hmac(("TC3" + secret_key).encode(), date), service), "tc3_request")
    signature = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    return f"TC3-HMAC-SHA256 Credential={secret_id}/{scope}, SignedHeaders={signed_headers}, Signature={signature}"


def tc3_post(server, body: bytes = b"{}", *, action: str = ACTION, version: str = VERSION,
             content_type: str = "application/json", secret_id: str | None = None,
             secret_key: str | None = None, timestamp: int | None = None, date: str | None = None,
             sign_action: bool = False, lowercase_values: bool = False, signed_body: bytes | None = None,
             unsigned_payload: bool = False, extra_headers: dict | None = None,
             authorization: str | None = None) -> httpx.Response:
    """A TC3 POST as a hand-written client would send it; ``signed_body`` signs another body than
    the one sent (tampering)."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    host = server.endpoint
    signed = {"content-type": content_type, "host": host}
    if sign_action:
        signed["x-tc-action"] = action
    if lowercase_values:
        signed = {name: value.lower() for name, value in signed.items()}
    payload = signed_body if signed_body is not None else body
    payload_hash = (hashlib.sha256(b"UNSIGNED-PAYLOAD").hexdigest() if unsigned_payload
                    else hashlib.sha256(payload).hexdigest())
    headers = {"Host": host, "Content-Type": content_type, "X-TC-Action": action,
               "X-TC-Version": version, "X-TC-Timestamp": str(timestamp), "X-TC-Region": "ap-guangzhou"}
    if unsigned_payload:
        headers["X-TC-Content-SHA256"] = "UNSIGNED-PAYLOAD"
    headers["Authorization"] = authorization if authorization is not None else tc3_authorization(
        secret_id or server.secret_id, secret_key or server.secret_key, method="POST", host=host, query="",
        headers=signed, payload_hash=payload_hash, timestamp=timestamp, date=date)
    headers.update(extra_headers or {})
    return httpx.post(server.url, content=body, headers=headers, timeout=60)


def legacy_params(server, params: dict, *, method: str = "GET", sign_method: str = "HmacSHA256",
                  action: str = ACTION, timestamp: int | None = None, secret_key: str | None = None) -> dict:
    """Parameters of an HmacSHA1/HmacSHA256 request, signed as the documentation says."""
    full = {"Action": action, "Version": VERSION, "Region": "ap-guangzhou", "SecretId": server.secret_id,
            "Timestamp": str(int(time.time()) if timestamp is None else timestamp),
            "Nonce": str(uuid.uuid4().int % 100000), "SignatureMethod": sign_method, **params}
    text = "&".join(f"{key}={full[key]}" for key in sorted(full))
    digest = {"HmacSHA1": hashlib.sha1}.get(sign_method, hashlib.sha256)
    mac = hmac.new((secret_key or server.secret_key).encode(),
                   f"{method}{server.endpoint}/?{text}".encode(), digest).digest()
    full["Signature"] = base64.b64encode(mac).decode()
    return full


def legacy_get(server, params: dict, **options) -> httpx.Response:
    return httpx.get(server.url + "?" + urlencode(legacy_params(server, params, **options)), timeout=30)


def legacy_post(server, params: dict, **options) -> httpx.Response:
    body = urlencode(legacy_params(server, params, method="POST", **options))
    return httpx.post(server.url, content=body.encode(), timeout=30,
                      headers={"Content-Type": "application/x-www-form-urlencoded"})


def answer(response: httpx.Response) -> dict:
    """The ``Response`` object, after checking the envelope every answer must have."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()["Response"]
    assert uuid.UUID(body["RequestId"]).version == 4
    return body


def error_code(response: httpx.Response) -> str | None:
    body = answer(response)
    return body["Error"]["Code"] if "Error" in body else None
