"""Real HTTP servers on loopback for the URL guard tests, each counting what reached it.

Paths of ``Origin``:
  /ok/<n>            200 with n bytes (Content-Length)
  /missing           404
  /to?url=<url>      302 to url            /loop/<i>   302 to /loop/<i+1> (forever)
  /big/<n>           Content-Length n, then a stream of bytes until the client goes away
  /endless           no Content-Length (close-delimited), bytes until the client goes away
  /drip              Content-Length 1000, one byte every 0.1 s
  /gzip              a gzip-compressed body (Content-Encoding: gzip)
  /post?status=<s>   any POST: records the body, answers status s (default 200)
  /post-307          POST answered 307 to /post
"""

from __future__ import annotations

import gzip
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

CHUNK = 64 * 1024
STREAM_CAP = 1 << 30          # a streaming handler gives up after 1 GiB whatever happens


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "Origin._Server"

    def log_message(self, *args) -> None:        # keep test output quiet
        pass

    def _answer(self, status: int, body: bytes = b"", headers: dict | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _stream(self, length: int | None) -> None:
        self.send_response(200)
        if length is None:
            self.send_header("Connection", "close")
            self.close_connection = True
        else:
            self.send_header("Content-Length", str(length))
        self.end_headers()
        chunk = b"x" * CHUNK
        try:
            while self.server.origin.bytes_streamed < STREAM_CAP:
                self.wfile.write(chunk)
                self.server.origin.bytes_streamed += len(chunk)
        except OSError:               # the client stopped reading and closed: what we want
            self.close_connection = True

    def do_GET(self) -> None:
        origin = self.server.origin
        split = urlsplit(self.path)
        origin.requests.append((self.command, self.path, dict(self.headers)))
        parts = split.path.strip("/").split("/")
        if parts[0] == "ok":
            self._answer(200, b"p" * int(parts[1]), {"Content-Type": "image/png"})
        elif parts[0] == "to":
            self._answer(302, headers={"Location": parse_qs(split.query)["url"][0]})
        elif parts[0] == "loop":
            self._answer(302, headers={"Location": f"/loop/{int(parts[1]) + 1}"})
        elif parts[0] == "big":
            self._stream(int(parts[1]))
        elif parts[0] == "endless":
            self._stream(None)
        elif parts[0] == "drip":
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            try:
                for _ in range(1000):
                    self.wfile.write(b"d")
                    self.wfile.flush()
                    time.sleep(0.1)
            except OSError:
                self.close_connection = True
        elif parts[0] == "gzip":
            self._answer(200, gzip.compress(b"z" * 10000), {"Content-Encoding": "gzip"})
        else:
            self._answer(404, b"not here")

    def do_POST(self) -> None:
        origin = self.server.origin
        split = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        origin.requests.append((self.command, self.path, dict(self.headers)))
        if split.path == "/post-307":
            self._answer(307, headers={"Location": "/post"})
            return
        origin.bodies.append(body)
        status = int(parse_qs(split.query).get("status", ["200"])[0])
        self._answer(status, b'{"ok": true}', {"Content-Type": "application/json"})


class Origin:
    """A threaded HTTP server bound to ``host`` (``127.0.0.1``, ``127.0.0.2``, ``::1``)."""

    class _Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 128          # concurrent deliveries connect at once
        origin: "Origin"

        def handle_error(self, request, client_address) -> None:
            pass                              # clients that hang up early are the point here

        def get_request(self):
            connection = super().get_request()
            self.origin.connections += 1
            return connection

    def __init__(self, host: str, tls: ssl.SSLContext | None = None) -> None:
        self.host = host
        self.scheme = "https" if tls else "http"
        self.connections = 0
        self.requests: list[tuple[str, str, dict]] = []
        self.bodies: list[bytes] = []
        self.bytes_streamed = 0
        server_class = type("Server", (self._Server,),
                            {"address_family": socket.AF_INET6 if ":" in host else socket.AF_INET})
        self._server = server_class((host, 0), _Handler)
        self._server.origin = self
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def url(self, path: str = "/") -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}{path}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class Silent:
    """Accepts TCP connections and never answers."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._listener = socket.create_server((host, 0))
        self.port = self._listener.getsockname()[1]
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            self.accepted.append(connection)

    def close(self) -> None:
        self._listener.close()
        for connection in self.accepted:
            connection.close()


def closed_port(host: str = "127.0.0.1") -> int:
    """A port that nothing listens on (bound, then released)."""
    with socket.create_server((host, 0)) as sock:
        return sock.getsockname()[1]
