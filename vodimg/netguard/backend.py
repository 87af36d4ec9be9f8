"""httpcore network backends that check every address they connect to.

httpcore asks the backend for a TCP connection to (host, port). These backends resolve the host
themselves, refuse it if any of its addresses is refused by the policy, and connect to the checked
address itself, never to the name: so the address checked is the address connected to, and a DNS
answer that changes between the submit-time check and the connection (DNS rebinding) changes
nothing. TLS is started by httpcore on the returned stream with the URL's host name, so the
certificate check and SNI still use the name. Every stream also enforces an overall deadline.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from typing import Any, Iterable, Sequence

import anyio
import httpcore

from .addresses import Address, Network, parse_address, refusal
from .policy import FetchFailed, UrlRefused


def literal_address(host: str) -> Address | None:
    """The host as an IP address if it is one (``::1``, ``10.0.0.1``), else None."""
    try:
        return parse_address(host)
    except ValueError:
        return None


def resolve(host: str, timeout: float) -> list[Address]:
    """The host's addresses (DNS, /etc/hosts), in the resolver's order; FetchFailed if the lookup
    fails or takes longer than ``timeout`` seconds. getaddrinfo cannot be interrupted, so it runs
    in a daemon thread that is abandoned on timeout."""
    literal = literal_address(host)
    if literal is not None:
        return [literal]
    answer: dict[str, Any] = {}
    done = threading.Event()

    def lookup() -> None:
        try:
            answer["infos"] = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            answer["error"] = exc
        done.set()

    threading.Thread(target=lookup, name="vodimg-netguard-dns", daemon=True).start()
    if not done.wait(timeout):
        raise FetchFailed(f"DNS lookup of {host} took longer than {timeout:g} s")
    if "error" in answer:
        raise FetchFailed(f"DNS lookup of {host} failed: {_reason(answer['error'])}")
    return _addresses(answer["infos"])


async def resolve_async(host: str, timeout: float) -> list[Address]:
    """``resolve`` for the event loop."""
    literal = literal_address(host)
    if literal is not None:
        return [literal]
    try:
        with anyio.fail_after(timeout):
            infos = await anyio.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except TimeoutError:
        raise FetchFailed(f"DNS lookup of {host} took longer than {timeout:g} s") from None
    except (OSError, UnicodeError) as exc:
        raise FetchFailed(f"DNS lookup of {host} failed: {_reason(exc)}") from None
    return _addresses(infos)


def check_addresses(host: str, addresses: Sequence[Address], allow: Iterable[Network]) -> None:
    """UrlRefused if any address of the host is refused (a name that also resolves to a refused
    address is refused whole: which address a client picks is not ours to predict)."""
    for address in addresses:
        reason = refusal(address, allow)
        if reason is None:
            continue
        if literal_address(host) is not None:
            raise UrlRefused(f"address {host} {reason}")
        raise UrlRefused(f"{host} resolves to {address}, which {reason}")


def _addresses(infos: Iterable[tuple]) -> list[Address]:
    found: list[Address] = []
    for info in infos:
        address = parse_address(info[4][0])
        if address not in found:
            found.append(address)
    if not found:
        raise FetchFailed("DNS lookup found no address")
    return found


def _reason(exc: BaseException) -> str:
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return " ".join(text.split()) or type(exc).__name__


class Deadline:
    """A point in time (time.monotonic) that no network wait may pass."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds

    def remaining(self) -> float:
        return self.at - time.monotonic()

    def passed(self) -> bool:
        return self.remaining() <= 0.01

    def bound(self, timeout: float | None, exc_type: type[Exception]) -> float:
        """``timeout`` cut to what is left; raises ``exc_type`` when nothing is left."""
        left = self.remaining()
        if left <= 0:
            raise exc_type(f"total time of {self.seconds:g} s used up")
        return left if timeout is None else min(timeout, left)


def _connect_failure(host: str, address: Address, port: int, timeout: float | None,
                     exc: Exception) -> str:
    where = f"{host} port {port}" if str(address) == host else f"{host} ({address}) port {port}"
    if isinstance(exc, httpcore.ConnectTimeout):
        return f"connecting to {where} timed out after {timeout or 0:g} s"
    cause = exc.__cause__ or exc.__context__ or exc
    return f"could not connect to {where}: {_reason(cause)}"


class GuardedBackend(httpcore.NetworkBackend):
    """Synchronous backend: resolve, check, connect to the checked address."""

    def __init__(self, allow: Iterable[Network], connect_timeout: float, deadline: Deadline,
                 inner: httpcore.NetworkBackend | None = None) -> None:
        self._allow = tuple(allow)
        self._connect_timeout = connect_timeout
        self._deadline = deadline
        self._inner = inner or httpcore.SyncBackend()

    def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                    local_address: str | None = None,
                    socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        addresses = resolve(host, self._deadline.bound(self._connect_timeout, httpcore.ConnectTimeout))
        check_addresses(host, addresses, self._allow)
        failures = []
        for address in addresses:
            limit = self._deadline.bound(timeout, httpcore.ConnectTimeout)
            try:
                stream = self._inner.connect_tcp(str(address), port, timeout=limit,
                                                 local_address=local_address,
                                                 socket_options=socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                if self._deadline.passed():
                    raise                       # reported as the total time running out
                failures.append(_connect_failure(host, address, port, limit, exc))
                continue
            return DeadlineStream(stream, self._deadline)
        raise FetchFailed("; ".join(failures))

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        raise UrlRefused("unix sockets are not allowed")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class GuardedAsyncBackend(httpcore.AsyncNetworkBackend):
    """The same for asyncio (through anyio, as httpx's own backend)."""

    def __init__(self, allow: Iterable[Network], connect_timeout: float, deadline: Deadline,
                 inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self._allow = tuple(allow)
        self._connect_timeout = connect_timeout
        self._deadline = deadline
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        addresses = await resolve_async(
            host, self._deadline.bound(self._connect_timeout, httpcore.ConnectTimeout))
        check_addresses(host, addresses, self._allow)
        failures = []
        for address in addresses:
            limit = self._deadline.bound(timeout, httpcore.ConnectTimeout)
            try:
                stream = await self._inner.connect_tcp(str(address), port, timeout=limit,
                                                       local_address=local_address,
                                                       socket_options=socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                if self._deadline.passed():
                    raise                       # reported as the total time running out
                failures.append(_connect_failure(host, address, port, limit, exc))
                continue
            return AsyncDeadlineStream(stream, self._deadline)
        raise FetchFailed("; ".join(failures))

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[Any] | None = None
                                  ) -> httpcore.AsyncNetworkStream:
        raise UrlRefused("unix sockets are not allowed")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class DeadlineStream(httpcore.NetworkStream):
    """A connected stream whose every read, write and TLS handshake ends by the deadline."""

    def __init__(self, stream: httpcore.NetworkStream, deadline: Deadline) -> None:
        self._stream = stream
        self._deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, self._deadline.bound(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, self._deadline.bound(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        stream = self._stream.start_tls(ssl_context, server_hostname,
                                        self._deadline.bound(timeout, httpcore.ConnectTimeout))
        return DeadlineStream(stream, self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class AsyncDeadlineStream(httpcore.AsyncNetworkStream):
    """``DeadlineStream`` for the event loop."""

    def __init__(self, stream: httpcore.AsyncNetworkStream, deadline: Deadline) -> None:
        self._stream = stream
        self._deadline = deadline

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._stream.read(max_bytes, self._deadline.bound(timeout, httpcore.ReadTimeout))

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._stream.write(buffer, self._deadline.bound(timeout, httpcore.WriteTimeout))

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                        timeout: float | None = None) -> httpcore.AsyncNetworkStream:
        stream = await self._stream.start_tls(
            ssl_context, server_hostname, self._deadline.bound(timeout, httpcore.ConnectTimeout))
        return AsyncDeadlineStream(stream, self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)
