"""A real HTTP server on loopback serving test images (and misbehaving on purpose) for URL inputs."""

from __future__ import annotations

import http.server
import threading
import time
from dataclasses import dataclass, field


@dataclass
class ImageHost:
    """Serves ``files`` (path -> bytes) at ``http://HOST:PORT/path``; special paths:
    ``/slow`` (answers nothing for ``slow_seconds``), ``/redirect?to=URL`` (302),
    ``/huge`` (a body of ``huge_bytes``), anything else 404."""

    host: str = "127.0.0.2"
    files: dict[str, bytes] = field(default_factory=dict)
    slow_seconds: float = 30.0
    huge_bytes: int = 40 * 1024 * 1024
    requests: list[str] = field(default_factory=list)

    def start(self) -> "ImageHost":
        host = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                host.requests.append(self.path)
                if self.path in host.files:
                    return self._send(200, host.files[self.path])
                if self.path == "/slow":
                    time.sleep(host.slow_seconds)
                    return self._send(200, b"late")
                if self.path.startswith("/redirect?to="):
                    self.send_response(302)
                    self.send_header("Location", self.path.split("=", 1)[1])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                if self.path == "/huge":
                    self.send_response(200)
                    self.send_header("Content-Type", "image/png")
                    self.end_headers()
                    chunk = b"\0" * 65536
                    try:
                        for _ in range(host.huge_bytes // len(chunk)):
                            self.wfile.write(chunk)
                    except OSError:
                        pass
                    return None
                return self._send(404, b"not found")

            def _send(self, status: int, body: bytes):
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer((self.host, 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.server.server_address[1]}"

    def url(self, path: str) -> str:
        return self.base + path

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
