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
  of connecting (or of the end of its previous response, on keep-alive): else it is closed. A
  body that does not arrive with its head must keep coming, at most ``header_timeout`` between
  reads. Idle keep-alive connections are closed by uvicorn's own ``timeout_keep_alive`` (5 s).
- **Open connections.** At most ``max_connections`` per process. At the limit a new connection
  closes the one that has waited longest for a request head (a slow or idle client) to make room,
  so slow clients cannot keep out clients that send their requests at once; when every connection
  has a request in progress, the new connection is answered 503 and closed.

None of this costs the request path more than a few dictionary operations (about 1 us a request
over uvicorn's own 14 us, measured by feeding requests to both protocol classes in-process).
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
    # Every open connection of the process -> the loop time it started waiting for a request
    # head, or None while a request is in progress. Insertion order is the order they started
    # waiting (re-inserted each time), so the first waiting entry has waited longest. One sweep
    # a fraction of the timeout apart closes the late ones: no timer per request. Set per class
    # by ``limited_protocol``.
    _open: dict = {}
    _sweep: list = []  # [the sweep's TimerHandle] while one is scheduled

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes = 0  # received while waiting for the head (an upper bound of its size)
        self._refused: HeadRefused | None = None
        self._body_timer: asyncio.TimerHandle | None = None

    # -- connections ---------------------------------------------------------------------------

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        if len(self._open) >= self.max_connections and not self._evict_longest_waiting():
            logger.warning("%d connections open, all with requests in progress: refusing one",
                           len(self._open))
            self._refuse(503, "Too many connections.")
            return
        self._wait_for_head()
        if not self._sweep:
            self._sweep.append(self.loop.call_later(self._sweep_interval(), self._sweep_late_heads))

    def connection_lost(self, exc) -> None:
        self._open.pop(self, None)
        self._cancel_body_timer()
        super().connection_lost(exc)

    def _evict_longest_waiting(self) -> bool:
        for protocol, since in self._open.items():
            if since is not None:
                protocol._close()
                return True
        return False

    def _wait_for_head(self) -> None:
        self._open.pop(self, None)
        self._open[self] = self.loop.time()
        self._head_bytes = 0

    @classmethod
    def _sweep_interval(cls) -> float:
        return min(1.0, cls.header_timeout / 4)

    def _sweep_late_heads(self) -> None:
        """Close every connection that has waited longer than the timeout for its head."""
        late = self.loop.time() - self.header_timeout
        for protocol in [p for p, since in self._open.items() if since is not None and since <= late]:
            protocol._close()
        self._sweep.clear()
        if self._open:
            self._sweep.append(self.loop.call_later(self._sweep_interval(), self._sweep_late_heads))

    def _body_stalled(self) -> None:
        """No body bytes for header_timeout: the client's fault unless the app has not taken what
        was read yet (uvicorn then stops reading: flow control), which is nobody's to time out."""
        if self.flow is not None and self.flow.read_paused:
            self._body_timer = self.loop.call_later(self.header_timeout, self._body_stalled)
        else:
            self._body_timer = None
            self._close()

    def _cancel_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _close(self) -> None:
        self._open.pop(self, None)
        self._cancel_body_timer()
        if not self.transport.is_closing():
            self.transport.close()

    # -- the head ------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._open.get(self) is not None:  # waiting for a head: count what it may be made of
            self._head_bytes += len(data)
        super().data_received(data)
        if self.transport.is_closing():
            return
        waiting = self._open.get(self)
        if waiting is None and self.cycle is not None and self.cycle.more_body:
            # a body must keep coming: at most header_timeout between reads (nginx's
            # client_body_timeout); set only when the body did not arrive with its head
            self._cancel_body_timer()
            self._body_timer = self.loop.call_later(self.header_timeout, self._body_stalled)
        elif self._body_timer is not None:
            self._cancel_body_timer()
        elif self._head_bytes > MAX_HEAD_BYTES and waiting is not None:
            # still no complete head: httptools holds a header until it ends, so this is the
            # bound on one endless header (or request line)
            self._refuse(431, f"The request head is larger than {MAX_HEAD_BYTES} bytes.")

    def on_headers_complete(self) -> None:
        if len(self.headers) > MAX_HEADER_COUNT:
            raise self._refusal(431, f"The request has more than {MAX_HEADER_COUNT} headers.")
        if self._head_bytes > MAX_HEADER_BYTES:  # else no part can be over a limit: skip the sums
            self._check_head_sizes()
        self._open[self] = None  # a request in progress: not evicted, its head no longer timed
        super().on_headers_complete()

    def _check_head_sizes(self) -> None:
        if len(self.url) > MAX_REQUEST_LINE_BYTES:
            raise self._refusal(414, f"The request target is longer than {MAX_REQUEST_LINE_BYTES} bytes.")
        total = len(self.url)
        for name, value in self.headers:
            size = len(name) + len(value)
            if size > MAX_HEADER_BYTES:
                raise self._refusal(431, f"A request header is larger than {MAX_HEADER_BYTES} bytes.")
            total += size
        if total > MAX_HEAD_BYTES:
            raise self._refusal(431, f"The request head is larger than {MAX_HEAD_BYTES} bytes.")

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
        "header_timeout": header_timeout, "max_connections": max_connections, "_open": {}, "_sweep": []})


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
