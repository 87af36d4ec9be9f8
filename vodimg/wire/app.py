"""The Tencent Cloud API 3.0 endpoint: ``POST /`` and ``GET /``.

Per request: read the body (at most ``max_body_bytes``), tell the signature style apart (TC3
``Authorization`` header, or the older ``Signature`` parameter), check the Content-Type, verify the
signature, the Version and the Action, parse the parameters, apply the rate limit of the
(account, action), run ``provider.call`` and wrap its result.

Where the work runs: when key lookups never wait (SQLite: cached, else a read that takes no lock),
everything up to ``provider.call`` runs on the event loop, and so do the provider's
``inline_actions`` (read-only actions on such a database); its ``serial_actions`` (writes to a
database with one writer at a time) run on one writer thread, in turn; any other call (and
everything on PostgreSQL) runs on a thread pool. So the loop never waits for a lock or a network
round trip; a thread hop costs more than the whole of a cached read. A long poll (PullEvents with
nothing ready) answers ``WaitThenRetry`` (vodimg/waiting.py): the loop awaits it, holding no thread
and no database connection, then retries the call where it ran. Every answer is HTTP 200 with
``Content-Type: application/json`` exactly (the official SDK reads ``Response.Error`` only under
that exact type) and a fresh uuid4 RequestId.

The rate limit is a token bucket kept in this process: with several API processes, each allows
``rate_limit`` requests per second per (account, action).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Iterable

import orjson
from starlette.applications import Starlette
from starlette.routing import BaseRoute

from vodimg.config import Settings
from vodimg.errors import ApiError, invalid_action
from vodimg.spec import API_VERSION
from vodimg.waiting import WaitThenRetry
from vodimg.wire import signature
from vodimg.wire.params import parse_form, unflatten

logger = logging.getLogger("vodimg.wire")

JSON_CONTENT_TYPE = "application/json"
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
PROVIDER_THREADS = 32


@dataclass(frozen=True)
class ParsedRequest:
    """What the protocol layer hands to the provider."""
    action: str
    app_id: int
    params: dict
    from_strings: bool


class RateLimiter:
    """Token bucket per key: ``rate`` tokens per second, holding at most ``max(rate, 1)``."""

    def __init__(self, rate: float):
        self.rate = rate
        self.capacity = max(rate, 1.0)
        self._buckets: dict[Any, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def allow(self, key: Any, now: float) -> bool:
        with self._lock:
            tokens, last = self._buckets.get(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.rate)
            allowed = tokens >= 1.0
            self._buckets[key] = (tokens - 1.0 if allowed else tokens, now)
            return allowed


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def envelope_body(fields: dict) -> bytes:
    return orjson.dumps({"Response": fields})


def error_body(code: str, message: str, request_id: str) -> bytes:
    return envelope_body({"Error": {"Code": code, "Message": message}, "RequestId": request_id})


class ClientGone(Exception):
    """The client disconnected before its request body was complete: nothing to answer."""


@dataclass
class HttpRequest:
    """The parts of an ASGI HTTP request the protocol reads (headers by lowercase name)."""
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes = b""


class WireProtocol:
    """The endpoint: a plain ASGI app (no per-request framework objects on the hot path)."""

    def __init__(self, provider: Any, accounts: Any, settings: Settings):
        self.provider = provider
        self.accounts = accounts
        self.settings = settings
        self.actions = frozenset(provider.actions)
        self.inline_actions = frozenset(provider.inline_actions)
        self.serial_actions = frozenset(provider.serial_actions)
        self.lookups_never_wait = bool(accounts.lookups_never_wait)
        if not settings.auth:  # the default account may be created (a write): here, not on the loop
            accounts.default_app_id()
        self.limiter = RateLimiter(settings.rate_limit) if settings.rate_limit > 0 else None
        # Calls that may wait run here, off the event loop. A plain executor costs less per call
        # than anyio's to_thread.
        self.executor = ThreadPoolExecutor(max_workers=PROVIDER_THREADS, thread_name_prefix="vodimg-api")
        self.serial_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vodimg-writer")

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1003})
            return
        request_id = str(uuid.uuid4())
        try:
            body = await self.answer(scope, receive, request_id)
        except ClientGone:
            return
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", JSON_CONTENT_TYPE.encode()), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def answer(self, scope, receive, request_id: str) -> bytes:
        try:
            request = await self.read_request(scope, receive)
            result = await self.run(request)
        except ApiError as error:
            return error_body(error.code, error.message, request_id)
        except ClientGone:
            raise
        except Exception:  # noqa: BLE001 - the client gets InternalError, the log gets the trace
            logger.exception("InternalError RequestId=%s", request_id)
            return error_body("InternalError", f"Internal error (RequestId {request_id}).", request_id)
        result["RequestId"] = request_id
        return envelope_body(result)

    async def read_request(self, scope, receive) -> HttpRequest:
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
        request = HttpRequest(scope["method"], scope["path"], scope["query_string"].decode("latin-1"), headers)
        if request.method not in ("GET", "POST"):
            raise ApiError("UnsupportedProtocol",
                           f"HTTP method {request.method} is not supported; only GET and POST are.")
        if request.path != "/":
            raise ApiError("UnsupportedProtocol", "The API is served at the path / only.")
        if request.method == "POST":
            request.body = await self.read_body(headers, receive)
        return request

    async def read_body(self, headers: dict[str, str], receive) -> bytes:
        """The body, refused as soon as it passes the limit (uvicorn discards the rest unbuffered)."""
        limit = self.settings.max_body_bytes
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise _too_large(limit)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGone()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def run(self, request: HttpRequest) -> dict:
        """Everything after reading the request; on the loop only what never waits (module doc).
        An answer that is ``WaitThenRetry`` (a long poll) is awaited here, holding no thread, then
        retried where the action ran."""
        if not self.lookups_never_wait:
            executor = self.executor
            result = await self.in_thread(executor, self.process, request)
        else:
            parsed = self.parse_checked(request)
            if parsed.action in self.inline_actions:
                executor = None
                result = self.call(parsed)
            else:
                executor = self.serial_executor if parsed.action in self.serial_actions else self.executor
                result = await self.in_thread(executor, self.call, parsed)
        while isinstance(result, WaitThenRetry):
            await result.wait()
            result = result.retry() if executor is None else await self.in_thread(executor, _retry, result)
        return result

    @staticmethod
    async def in_thread(executor: ThreadPoolExecutor, function, argument):
        return await asyncio.get_running_loop().run_in_executor(executor, function, argument)

    def process(self, request: HttpRequest) -> dict:
        return self.call(self.parse_checked(request))

    def parse_checked(self, request: HttpRequest) -> ParsedRequest:
        """The parsed, authenticated request, within its rate limit."""
        parsed = self.parse(request)
        self.check_rate(parsed.app_id, parsed.action)
        return parsed

    def call(self, parsed: ParsedRequest) -> dict:
        return self.provider.call(parsed.action, parsed.app_id, parsed.params, from_strings=parsed.from_strings)

    def parse(self, request: HttpRequest) -> ParsedRequest:
        if "authorization" in request.headers or not self._is_legacy(request):
            return self._parse_tc3(request)
        return self._parse_legacy(request)

    def _is_legacy(self, request: HttpRequest) -> bool:
        if request.method == "POST":
            return _media_type(request.headers.get("content-type")) == FORM_CONTENT_TYPE
        return "Signature=" in request.query or not self.settings.auth and "Action=" in request.query

    # -- TC3-HMAC-SHA256 (and Authorization: SKIP with authentication off) -------------------------

    def _parse_tc3(self, request: HttpRequest) -> ParsedRequest:
        method, headers, query, body = request.method, request.headers, request.query, request.body
        if method == "POST" and _media_type(headers.get("content-type")) != JSON_CONTENT_TYPE:
            raise ApiError("InvalidParameter",
                           f"Content-Type must be application/json for a TC3-HMAC-SHA256 POST request, "
                           f"got {headers.get('content-type')!r}.")
        app_id = self._authenticate_tc3(method, query, headers, body)
        action = self._check_action_and_version(headers.get("x-tc-action"), headers.get("x-tc-version"),
                                                "X-TC-Action", "X-TC-Version")
        if method == "GET":
            return ParsedRequest(action, app_id, unflatten(parse_form(query)), True)
        return ParsedRequest(action, app_id, _json_object(body), False)

    def _authenticate_tc3(self, method: str, query: str, headers: dict[str, str], body: bytes) -> int:
        authorization = headers.get("authorization", "").strip()
        if not self.settings.auth:
            return self._app_id_without_auth(_tc3_secret_id(authorization))
        if not authorization:
            raise ApiError("AuthFailure.InvalidAuthorization", "The Authorization header is missing.")
        if authorization == "SKIP":
            raise ApiError("AuthFailure.InvalidAuthorization",
                           "Authorization: SKIP is accepted only when authentication is off (vodimg serve --no-auth).")
        credential = signature.verify_tc3(method, query, headers, body, self.accounts.credential_for,
                                          time.time(), self.settings.signature_window)
        return credential.app_id

    # -- HmacSHA1 / HmacSHA256 ---------------------------------------------------------------------

    def _parse_legacy(self, request: HttpRequest) -> ParsedRequest:
        if request.method == "POST":
            try:
                text = request.body.decode("utf-8")
            except UnicodeDecodeError:
                raise ApiError("InvalidParameter", "The form body is not valid UTF-8.") from None
        else:
            text = request.query
        flat = parse_form(text)
        if self.settings.auth:
            credential = signature.verify_legacy(request.method, request.headers.get("host", ""), flat,
                                                 self.accounts.credential_for, time.time(),
                                                 self.settings.signature_window)
            app_id = credential.app_id
        else:
            app_id = self._app_id_without_auth(flat.get("SecretId"))
        action = self._check_action_and_version(flat.get("Action"), flat.get("Version"), "Action", "Version")
        own = {key: value for key, value in flat.items() if key not in signature.LEGACY_COMMON_PARAMS}
        return ParsedRequest(action, app_id, unflatten(own), True)

    # -- shared checks -----------------------------------------------------------------------------

    def _app_id_without_auth(self, secret_id: str | None) -> int:
        """Authentication off: a known key still selects its account, anything else the default."""
        credential = self.accounts.credential_for(secret_id) if secret_id else None
        return credential.app_id if credential is not None else self.accounts.default_app_id()

    def _check_action_and_version(self, action: str | None, version: str | None,
                                  action_name: str, version_name: str) -> str:
        if not version:
            raise ApiError("MissingParameter", f"The request is missing the required parameter {version_name}.")
        if version != API_VERSION:
            raise ApiError("NoSuchVersion", f"The API version {version!r} does not exist; this service is {API_VERSION}.")
        if not action:
            raise ApiError("MissingParameter", f"The request is missing the required parameter {action_name}.")
        if action not in self.actions:
            raise invalid_action(action)
        return action

    def check_rate(self, app_id: int, action: str) -> None:
        if self.limiter is not None and not self.limiter.allow((app_id, action), time.monotonic()):
            raise ApiError("RequestLimitExceeded",
                           f"More than {self.settings.rate_limit:g} {action} requests per second for this account.")


def _retry(waiting: WaitThenRetry):
    return waiting.retry()


def _tc3_secret_id(authorization: str) -> str | None:
    try:
        return signature.parse_tc3_authorization(authorization).secret_id
    except ApiError:
        return None


def _too_large(limit: int) -> ApiError:
    return ApiError("RequestSizeLimitExceeded", f"The request body exceeds {limit} bytes.")


_JSON_KINDS = {list: "array", str: "string", int: "number", float: "number", bool: "boolean",
               type(None): "null"}


def _json_object(body: bytes) -> dict:
    if not body.strip():
        return {}
    try:
        params = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise ApiError("InvalidParameter", f"The request body is not valid JSON: {error}.") from None
    if not isinstance(params, dict):
        raise ApiError("InvalidParameter",
                       f"The request body must be a JSON object, got a JSON {_JSON_KINDS.get(type(params), 'value')}.")
    return params


def create_app(provider: Any, accounts: Any, settings: Settings, *,
               routes: Iterable[BaseRoute] = ()) -> Starlette:
    """The ASGI app. ``routes`` (e.g. file downloads) are matched first; every other request, any
    method and path, goes to the API endpoint (which refuses all but ``GET /`` and ``POST /``)."""
    protocol = WireProtocol(provider, accounts, settings)
    app = Starlette(routes=list(routes))
    app.router.default = protocol
    app.state.protocol = protocol
    return app
