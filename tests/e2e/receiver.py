"""A real HTTP receiver of PUSH event callbacks on loopback, misbehaving on purpose when told.

``script[path]`` lists how the first requests to ``path`` are answered, in turn; after the list
(or for a path without one) every request gets 200. Behaviours: ``"200"``, ``"302"``, ``"404"``,
``"500"`` (that status), ``"close"`` (the connection is closed without an answer), ``"hang"``
(nothing is answered for ``hang_seconds``).
"""

from __future__ import annotations

import hashlib
import http.server
import json
import socket
import threading
import time
from dataclasses import dataclass, field


@dataclass
class Receiver:
    host: str = "127.0.0.2"
    port: int = 0
    script: dict[str, list[str]] = field(default_factory=dict)
    hang_seconds: float = 30.0
    received: list[tuple[str, dict, float, str]] = field(default_factory=list)  # path, body, time, answer

    def start(self) -> "Receiver":
        receiver = self
        lock = threading.Lock()
        self._lock = lock

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with lock:
                    steps = receiver.script.get(self.path, [])
                    answer = steps.pop(0) if steps else "200"
                    receiver.received.append((self.path, body, time.time(), answer))
                if answer == "close":
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                if answer == "hang":
                    time.sleep(receiver.hang_seconds)
                    self.close_connection = True
                    return
                self.send_response(int(answer))
                if answer == "302":
                    self.send_header("Location", "http://127.0.0.2:9/elsewhere")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = _Server((self.host, self.port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def url(self, path: str = "/events") -> str:
        return f"http://{self.host}:{self.port}{path}"

    def bodies(self, path: str | None = None, answer: str | None = None) -> list[dict]:
        with self._lock:
            return [body for where, body, _at, said in self.received
                    if (path is None or where == path) and (answer is None or said == answer)]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Server(http.server.ThreadingHTTPServer):
    request_queue_size = 256  # many concurrent posts: no refused connections from a full backlog


def sign_is_valid(body: dict, sign_key: str) -> bool:
    """The check VOD's documentation tells receivers to make: Sign = MD5(SignKey + T), lowercase
    hex, and T (the expiry, Unix seconds) not yet passed."""
    expected = hashlib.md5(f"{sign_key}{body['T']}".encode()).hexdigest()
    return body["Sign"] == expected and int(body["T"]) > time.time()
