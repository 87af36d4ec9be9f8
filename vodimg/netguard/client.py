"""Guarded HTTP requests for URLs users give: the submit-time check, GET with a size limit, and
the POST of a JSON body (event callbacks).

httpx does the HTTP; its transport here is an httpcore connection pool over the guarded backend
(backend.py), which checks each address at connect time. Redirects are followed here, one hop at
a time, so each hop's URL is checked and counted.
"""

from __future__ import annotations

import contextlib
import functools
import ssl
from typing import Callable, Iterator, Mapping

import httpcore
import httpx

from . import backend
from .policy import FetchFailed, UrlPolicy, UrlRefused

USER_AGENT = "vodimg/0.1"
ALLOWED_SCHEMES = ("http", "https")
_SHOWN_URL_CHARS = 200

Progress = Callable[[int, "int | None"], None]


def check_url(url: str, policy: UrlPolicy, resolve: bool = True) -> None:
    """Refuse (UrlRefused) a URL that may not be fetched: a scheme other than http/https, no host,
    a user name or password in it, or an address the policy refuses. With ``resolve`` a host name
    is looked up too and every address it has must be allowed; a name that does not resolve is not
    refused here (it may resolve later; the fetch reports it as FetchFailed)."""
    try:
        parsed = _checked_url(url, policy)
        if resolve and backend.literal_address(parsed.host) is None:
            try:
                addresses = backend.resolve(parsed.host, policy.connect_timeout)
            except FetchFailed:
                return
            backend.check_addresses(parsed.host, addresses, policy.allow)
    except UrlRefused as exc:
        raise UrlRefused(f"{_shown(url)}: {exc}") from None


def fetch(url: str, policy: UrlPolicy, max_bytes: int,
          progress: Progress | None = None) -> bytes:
    """GET the URL's body, following at most ``policy.max_redirects`` redirects, each hop checked.
    Refuses early by Content-Length and stops reading as soon as more than ``max_bytes`` arrived.
    ``progress(received, total_or_None)`` is called as bytes arrive. The whole fetch ends within
    ``policy.total_timeout``. Raises UrlRefused or FetchFailed, the message starting with the URL
    (and naming the hop, "redirected to ...", when a redirect target failed)."""
    deadline = backend.Deadline(policy.total_timeout)
    with _guarded(_shown(url), deadline):
        first = _checked_url(url, policy)
        with _client(policy, deadline, policy.total_timeout) as client:
            request = client.build_request("GET", first)
            for hop in range(policy.max_redirects + 1):
                where = f"redirected to {_shown(request.url)}"
                with _guarded(where, deadline) if hop else contextlib.nullcontext():
                    if hop:
                        _checked_url(str(request.url), policy)
                    response = client.send(request, stream=True)
                    try:
                        if response.next_request is None:
                            _check_status(response)
                            return _read_body(response, max_bytes, progress)
                        request = response.next_request
                    finally:
                        response.close()
            raise FetchFailed(f"too many redirects (more than {policy.max_redirects})")


def post_json(url: str, body: bytes, policy: UrlPolicy, timeout: float = 10.0,
              headers: Mapping[str, str] | None = None) -> int:
    """POST ``body`` (JSON) and return the HTTP status. Redirects are not followed: a 3xx is
    returned like any other status. Everything ends within ``timeout`` seconds. Raises UrlRefused
    or FetchFailed, the message starting with the URL."""
    deadline = backend.Deadline(timeout)
    with _guarded(_shown(url), deadline):
        request_url = _checked_url(url, policy)
        with _client(policy, deadline, timeout) as client:
            with client.stream("POST", request_url, content=body,
                               headers=_json_headers(headers)) as response:
                return response.status_code


async def post_json_async(url: str, body: bytes, policy: UrlPolicy, timeout: float = 10.0,
                          headers: Mapping[str, str] | None = None) -> int:
    """``post_json`` for an asyncio delivery loop (many deliveries may run concurrently)."""
    deadline = backend.Deadline(timeout)
    with _guarded(_shown(url), deadline):
        request_url = _checked_url(url, policy)
        async with _async_client(policy, deadline, timeout) as client:
            async with client.stream("POST", request_url, content=body,
                                     headers=_json_headers(headers)) as response:
                return response.status_code


_TRANSPORT_ERRORS = (httpcore.TimeoutException, httpcore.ProtocolError, httpcore.NetworkError,
                     httpx.HTTPError)


@contextlib.contextmanager
def _guarded(prefix: str, deadline: backend.Deadline) -> Iterator[None]:
    """Our errors get ``prefix: `` in front; httpcore's and httpx's become FetchFailed."""
    try:
        yield
    except (UrlRefused, FetchFailed) as exc:
        raise type(exc)(f"{prefix}: {exc}") from None
    except _TRANSPORT_ERRORS as exc:
        raise FetchFailed(f"{prefix}: {_transport_reason(exc, deadline)}") from None


# ----------------------------------------------------------------------------- URL checks

def _checked_url(url: str, policy: UrlPolicy) -> httpx.URL:
    """The parsed URL if its form may be fetched (scheme, host, no user info, and a literal IP
    address the policy allows); a host name is checked when it is connected to."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise UrlRefused(f"not a valid URL ({exc})") from None
    if not parsed.scheme:
        raise UrlRefused("the URL has no scheme; give an http:// or https:// URL")
    if parsed.scheme not in ALLOWED_SCHEMES:
        raise UrlRefused(f"scheme {parsed.scheme!r} is not allowed; only http and https URLs "
                         "can be fetched")
    if not parsed.host:
        raise UrlRefused("the URL has no host")
    if parsed.userinfo:
        # "http://trusted.example@evil.example/" reads as the first host but goes to the second;
        # credentials in image URLs are not supported either.
        raise UrlRefused("a user name or password in the URL (user@host) is not allowed; "
                         "remove it")
    literal = backend.literal_address(parsed.host)
    if literal is not None:
        backend.check_addresses(parsed.host, [literal], policy.allow)
    return parsed


def _check_status(response: httpx.Response) -> None:
    if not response.is_success:
        phrase = f" {response.reason_phrase}" if response.reason_phrase else ""
        raise FetchFailed(f"HTTP {response.status_code}{phrase}")


def _read_body(response: httpx.Response, max_bytes: int, progress: Progress | None) -> bytes:
    total = _content_length(response)
    if total is not None and total > max_bytes:
        raise FetchFailed(f"the body is {total} bytes (Content-Length), over the limit of "
                          f"{max_bytes} bytes")
    encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        # Asked for identity; a compressed body could expand far past max_bytes in one chunk.
        raise FetchFailed(f"the server sent a compressed body (Content-Encoding: {encoding}) "
                          "although it was asked not to")
    chunks, received = [], 0
    if progress is not None:
        progress(0, total)
    for chunk in response.iter_raw():
        received += len(chunk)
        if received > max_bytes:
            raise FetchFailed(f"the body is larger than the limit of {max_bytes} bytes "
                              f"(stopped reading after {received} bytes)")
        chunks.append(chunk)
        if progress is not None:
            progress(received, total)
    return b"".join(chunks)


def _content_length(response: httpx.Response) -> int | None:
    value = response.headers.get("Content-Length", "").strip()
    return int(value) if value.isdigit() else None


def _json_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    return {"Content-Type": "application/json", **(headers or {})}


# ----------------------------------------------------------------------------- messages

def _shown(url: object) -> str:
    text = str(url)
    return text if len(text) <= _SHOWN_URL_CHARS else text[:_SHOWN_URL_CHARS] + "..."


def _one_line(exc: BaseException) -> str:
    """The exception's message, else its cause's (httpcore wraps an OSError, often blank)."""
    for candidate in (exc, exc.__cause__, exc.__context__):
        if candidate is not None and str(candidate).strip():
            return " ".join(str(candidate).split())
    return type(exc).__name__


def _transport_reason(exc: Exception, deadline: backend.Deadline) -> str:
    if isinstance(exc, (httpcore.TimeoutException, httpx.TimeoutException)):
        if deadline.passed():
            return f"took longer than the time limit of {deadline.seconds:g} s"
        if isinstance(exc, (httpcore.ConnectTimeout, httpx.ConnectTimeout)):
            return f"the TLS handshake timed out ({_one_line(exc)})"
        return f"timed out ({_one_line(exc)})"
    if isinstance(exc, (httpcore.RemoteProtocolError, httpx.RemoteProtocolError)):
        return f"the server broke the HTTP protocol: {_one_line(exc)}"
    if isinstance(exc, (httpcore.ConnectError, httpx.ConnectError)):
        return f"the TLS handshake failed: {_one_line(exc)}"
    if isinstance(exc, (httpcore.NetworkError, httpx.NetworkError)):
        return f"the connection failed: {_one_line(exc)}"
    return _one_line(exc)


# ----------------------------------------------------------------------------- clients

@functools.lru_cache(maxsize=1)
def _ssl_context() -> ssl.SSLContext:
    """certifi's CAs (or SSL_CERT_FILE / SSL_CERT_DIR); made once, shared by all requests."""
    return httpx.create_ssl_context()


def _timeout(policy: UrlPolicy, total: float) -> httpx.Timeout:
    # Reads and writes may each take up to the whole budget; the deadline streams stop them at
    # the end of the budget in any case.
    return httpx.Timeout(total, connect=min(policy.connect_timeout, total))


def _client(policy: UrlPolicy, deadline: backend.Deadline, total: float) -> httpx.Client:
    guarded = backend.GuardedBackend(policy.allow, policy.connect_timeout, deadline)
    # trust_env=False: with HTTP(S)_PROXY/ALL_PROXY set, httpx would send requests through a
    # proxy transport of its own instead of this one, and the proxy, not the guard, would decide
    # which address is reached. It also keeps ~/.netrc credentials out of users' URLs.
    return httpx.Client(transport=_Transport(guarded), trust_env=False, follow_redirects=False,
                        timeout=_timeout(policy, total), headers=_HEADERS)


def _async_client(policy: UrlPolicy, deadline: backend.Deadline,
                  total: float) -> httpx.AsyncClient:
    guarded = backend.GuardedAsyncBackend(policy.allow, policy.connect_timeout, deadline)
    # trust_env=False: see _client.
    return httpx.AsyncClient(transport=_AsyncTransport(guarded), trust_env=False,
                             follow_redirects=False, timeout=_timeout(policy, total),
                             headers=_HEADERS)


_HEADERS = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}


def _core_request(request: httpx.Request) -> httpcore.Request:
    return httpcore.Request(
        method=request.method,
        url=httpcore.URL(scheme=request.url.raw_scheme, host=request.url.raw_host,
                         port=request.url.port, target=request.url.raw_path),
        headers=request.headers.raw, content=request.stream, extensions=request.extensions)


class _Transport(httpx.BaseTransport):
    """httpx transport over an httpcore pool with the guarded backend (httpx 0.28's own
    HTTPTransport cannot be given a network backend)."""

    def __init__(self, network_backend: httpcore.NetworkBackend) -> None:
        self._pool = httpcore.ConnectionPool(ssl_context=_ssl_context(),
                                             network_backend=network_backend)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self._pool.handle_request(_core_request(request))
        return httpx.Response(status_code=response.status, headers=response.headers,
                              stream=_Body(response), extensions=response.extensions)

    def close(self) -> None:
        self._pool.close()


class _Body(httpx.SyncByteStream):
    def __init__(self, response: httpcore.Response) -> None:
        self._response = response

    def __iter__(self):
        yield from self._response.iter_stream()

    def close(self) -> None:
        self._response.close()


class _AsyncTransport(httpx.AsyncBaseTransport):
    """``_Transport`` for httpx.AsyncClient."""

    def __init__(self, network_backend: httpcore.AsyncNetworkBackend) -> None:
        self._pool = httpcore.AsyncConnectionPool(ssl_context=_ssl_context(),
                                                  network_backend=network_backend)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._pool.handle_async_request(_core_request(request))
        return httpx.Response(status_code=response.status, headers=response.headers,
                              stream=_AsyncBody(response), extensions=response.extensions)

    async def aclose(self) -> None:
        await self._pool.aclose()


class _AsyncBody(httpx.AsyncByteStream):
    def __init__(self, response: httpcore.Response) -> None:
        self._response = response

    async def __aiter__(self):
        async for chunk in self._response.aiter_stream():
            yield chunk

    async def aclose(self) -> None:
        await self._response.aclose()
