"""HTTP/1.1 limits against hostile and slow clients, as a subclass of uvicorn's httptools protocol.

uvicorn (0.54, httptools) bounds neither the request head nor the time a client may take to send
it: one request with 300 MB of headers was read and answered, and thousands of half-sent heads
(slowloris) stayed open for ever. ``limited_protocol`` builds the protocol class ``vodimg serve``
gives uvicorn instead (one class per process, shared by the HTTP and HTTPS listeners):

- **Head size.** The request line (method, target, version) at most ``MAX_REQUEST_LINE_BYTES``
  (Tencent Cloud API 3.0 documents 32 KB for a GET request, whose parameters are all in it): else
  414 and the connection closed. Each header (name and value) at most ``MAX_HEADER_BYTES``, at most
  ``MAX_HEADER_COUNT`` headers, the whole head at most ``MAX_HEAD_BYTES``: else 431 and close. The
  whole-head bound is counted on the bytes received, so it holds even while httptools is still
  collecting one endless header (it would otherwise buffer it whole before any callback): what a
  client can make the server hold is one head limit plus one socket read (256 KiB).
- **Head time.** A connection must send a complete request head within ``header_timeout`` seconds
  of connecting (or of the end of its previous response, on keep-alive): else it is closed. Idle
  keep-alive connections are closed by uvicorn's own ``timeout_keep_alive`` (5 s).
- **Open connections.** At most ``max_connections`` per process. At the limit a new connection
  closes the one that has waited longest for a request head (a slow or idle client) to make room,
  so slow clients cannot keep out clients that send their requests at once; when every connection
  has a request in progress, the new connection is answered 503 and closed.

None of this costs the request path more than a few dictionary operations and one timer per
request (``bench/api_throughput.py`` measures it).
"""

from __future__ import annotations

import asyncio
import logging
import resource

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from vodimg.config import DEFAULT_HEADER_TIMEOUT, DEFAULT_MAX_CONNECTIONS

MAX_REQUEST_LINE_BYTES = 32 * 1024
MAX_HEADER_BYTES = 8 * 1024
MAX_HEADER_COUNT = 100
MAX_HEAD_BYTES = 64 * 1024

logger = logging.getLogger("vodimg.wire.http")


class HeadRefused(Exception):
    """Raised inside a parser callback: the head broke a limit; ``status`` is the answer."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits of the module doc; ``limited_protocol`` sets
    the class attributes."""

    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    # Every open connection of the process -> True while it waits for a request head; insertion
    # order is the order they started waiting (re-inserted each time), so the first waiting entry
    # is the one that has waited longest. Set per class by ``limited_protocol``.
    _open: dict = {}

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_bytes = 0  # received while waiting for the head (an upper bound of its size)
        self._line_bytes = 0
        self._header_bytes = 0  # the request target and the headers parsed so far
        self._header_count = 0
        self._refused: HeadRefused | None = None

    # -- connections ---------------------------------------------------------------------------

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        if len(self._open) >= self.max_connections and not self._evict_longest_waiting():
            logger.warning("%d connections open, all with requests in progress: refusing one",
                           len(self._open))
            self._refuse(503, "Too many connections.")
            return
        self._wait_for_head()

    def connection_lost(self, exc) -> None:
        self._open.pop(self, None)
        self._cancel_head_timer()
        super().connection_lost(exc)

    def _evict_longest_waiting(self) -> bool:
        for protocol, waiting in self._open.items():
            if waiting:
                protocol._close()
                return True
        return False

    def _wait_for_head(self) -> None:
        self._open.pop(self, None)
        self._open[self] = True
        self._head_bytes = self._line_bytes = self._header_bytes = self._header_count = 0
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_timed_out)

    def _head_timed_out(self) -> None:
        self._head_timer = None
        self._close()

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _close(self) -> None:
        self._open.pop(self, None)
        self._cancel_head_timer()
        if not self.transport.is_closing():
            self.transport.close()

    # -- the head ------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._open.get(self) and not self.transport.is_closing():
            # Still inside a head: everything read so far is head (httptools buffers a header
            # until it is complete, so this is the only bound on one endless header).
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self._refuse(431, f"The request head is larger than {MAX_HEAD_BYTES} bytes.")

    def on_url(self, url: bytes) -> None:
        self._line_bytes += len(url)
        self._header_bytes += len(url)
        if self._line_bytes > MAX_REQUEST_LINE_BYTES:
            raise self._refusal(414, f"The request target is longer than {MAX_REQUEST_LINE_BYTES} bytes.")
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > MAX_HEADER_COUNT:
            raise self._refusal(431, f"The request has more than {MAX_HEADER_COUNT} headers.")
        size = len(name) + len(value)
        if size > MAX_HEADER_BYTES:
            raise self._refusal(431, f"A request header is larger than {MAX_HEADER_BYTES} bytes.")
        self._header_bytes += size
        if self._header_bytes > MAX_HEAD_BYTES:  # a head that arrived in one read
            raise self._refusal(431, f"The request head is larger than {MAX_HEAD_BYTES} bytes.")
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._open[self] = False  # a request in progress: neither timed nor evicted
        self._cancel_head_timer()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.cycle.response_complete:  # not pipelined
            self._wait_for_head()

    # -- refusals ------------------------------------------------------------------------------

    def _refusal(self, status: int, reason: str) -> HeadRefused:
        self._refused = HeadRefused(status, reason)
        return self._refused

    def send_400_response(self, msg: str) -> None:
        """uvicorn answers every parser error 400; a head limit's error gets its own status."""
        refused, self._refused = self._refused, None
        if refused is None:
            super().send_400_response(msg)
        else:
            self._refuse(refused.status, refused.reason)

    def _refuse(self, status: int, reason: str) -> None:
        body = reason.encode("ascii")
        self.transport.write(b"".join([
            STATUS_LINE[status], b"content-type: text/plain; charset=utf-8\r\n",
            b"content-length: ", str(len(body)).encode("ascii"), b"\r\nconnection: close\r\n\r\n", body]))
        self._close()


def limited_protocol(header_timeout: float = DEFAULT_HEADER_TIMEOUT,
                     max_connections: int = DEFAULT_MAX_CONNECTIONS) -> type[LimitedHttpToolsProtocol]:
    """A protocol class for ``uvicorn.Config(http=...)`` with these limits and its own count of
    open connections (give the same class to every listener of a process)."""
    return type("VodimgHttpProtocol", (LimitedHttpToolsProtocol,), {
        "header_timeout": header_timeout, "max_connections": max_connections, "_open": {}})


# Descriptors a process needs besides its client connections (database, logs, listeners, threads).
RESERVED_DESCRIPTORS = 256


def ensure_descriptors(max_connections: int) -> None:
    """Raise the soft limit on open files so ``max_connections`` fit (up to the hard limit);
    warn when they cannot, since running out of descriptors fails every accept and every file."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max_connections + RESERVED_DESCRIPTORS
    if soft != resource.RLIM_INFINITY and soft < wanted:
        raised = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
        if raised < wanted:
            logger.warning("open-file limit %d (hard) is below VODIMG_MAX_CONNECTIONS %d + %d: lower "
                           "VODIMG_MAX_CONNECTIONS or raise `ulimit -n`", hard, max_connections,
                           RESERVED_DESCRIPTORS)
