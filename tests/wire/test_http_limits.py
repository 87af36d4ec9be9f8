"""Hostile and slow HTTP clients against a real ``vodimg serve`` on loopback (SQLite): oversized
request lines and headers, too many headers, a head sent too slowly, and a thousand half-sent
heads while valid requests are still answered. The head timeout (1.5 s) and the connection limit
(600) are set by environment to keep the test short."""

from __future__ import annotations

import resource
import socket
import time
from argparse import Namespace

import pytest

from tests.e2e.server import started
from vodimg.config import ConfigError, Settings
from vodimg.wire.http_limits import MAX_HEAD_BYTES, MAX_HEADER_BYTES, MAX_HEADER_COUNT, MAX_REQUEST_LINE_BYTES

HEADER_TIMEOUT = 1.5
MAX_CONNECTIONS = 600
SLOW_CLIENTS = 1000


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = started(tmp_path_factory.mktemp("limits") / "data", extra_env={
        "VODIMG_HEADER_TIMEOUT": str(HEADER_TIMEOUT), "VODIMG_MAX_CONNECTIONS": str(MAX_CONNECTIONS)})
    yield running
    running.stop()


def connect(server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=10)


def head(*headers: str, target: str = "/") -> bytes:
    lines = [f"GET {target} HTTP/1.1", "Host: 127.0.0.1", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (or 10 s pass)."""
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except (ConnectionResetError, socket.timeout):
        pass
    return b"".join(chunks)


def one_response(sock: socket.socket) -> bytes:
    """One response on a kept-alive connection (head and Content-Length body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head_part, body = data.split(b"\r\n\r\n", 1)
    length = int(next(line.split(b":")[1] for line in head_part.split(b"\r\n")
                      if line.lower().startswith(b"content-length:")))
    while len(body) < length:
        body += sock.recv(65536)
    return head_part


def send_all(sock: socket.socket, data: bytes) -> None:
    try:
        sock.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server closed after refusing: what the test is about


def status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/1.1 ") else 0


def server_rss_kb(server) -> int:
    with open(f"/proc/{server.process.pid}/status") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith("VmRSS:"))


def server_descriptors(server) -> int:
    import os
    return len(os.listdir(f"/proc/{server.process.pid}/fd"))


def valid_call_works(server) -> float:
    """Seconds one signed SDK call takes (it must succeed)."""
    started_at = time.monotonic()
    response = server.common().call_json("DescribeProcessImageAsyncTemplates", {})["Response"]
    assert response["TotalCount"] >= 1
    return time.monotonic() - started_at


def test_a_head_within_the_limits_is_answered(server):
    headers = [f"X-Filler-{index}: {'a' * 200}" for index in range(MAX_HEADER_COUNT - 2)]
    with connect(server) as sock:
        sock.sendall(head(*headers, "Connection: close", target="/?" + "b" * (MAX_REQUEST_LINE_BYTES - 100)))
        response = answer(sock)
    assert status(response) == 200 and b'"Error"' in response  # the API's own answer (not signed)


@pytest.mark.parametrize("name, request_head, expected", [
    ("request line", head(target="/?" + "a" * (MAX_REQUEST_LINE_BYTES + 10)), 414),
    ("one header", head("X-Big: " + "a" * (MAX_HEADER_BYTES + 10)), 431),
    ("header count", head(*[f"X-{index}: 1" for index in range(MAX_HEADER_COUNT + 1)]), 431),
    ("whole head", head(*[f"X-{index}: {'a' * 4000}" for index in range(20)]), 431),
])
def test_oversized_heads_are_refused_and_closed(server, name, request_head, expected):
    with connect(server) as sock:
        send_all(sock, request_head)
        response = answer(sock)
    assert status(response) == expected, (name, response[:200])
    assert b"connection: close" in response


def test_an_endless_header_is_cut_off_without_the_server_growing(server):
    before = server_rss_kb(server)
    chunk = b"a" * 65536
    sent = 0
    with connect(server) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Endless: ")
        try:
            while sent < 100 * 1024 * 1024:
                sock.sendall(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        response = answer(sock)
    assert sent < 20 * 1024 * 1024, "the server kept reading a header far beyond its limit"
    assert status(response) in (431, 0)  # the answer may be lost to the reset of unread data
    assert server_rss_kb(server) - before < 20 * 1024
    valid_call_works(server)


def test_a_slow_head_is_closed_after_the_header_timeout(server):
    with connect(server) as sock:
        opened = time.monotonic()
        sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        for _ in range(3):  # a byte now and then does not extend the deadline
            time.sleep(HEADER_TIMEOUT / 4)
            send_all(sock, b"X")
        assert answer(sock) == b""
        waited = time.monotonic() - opened
    assert HEADER_TIMEOUT - 0.1 <= waited <= HEADER_TIMEOUT + 1.5


def test_a_stalled_body_is_closed_after_the_header_timeout(server):
    with connect(server) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n")
        time.sleep(0.2)
        sock.sendall(b'{"a": 1')  # then nothing more
        opened = time.monotonic()
        assert answer(sock) == b""
        assert HEADER_TIMEOUT - 0.1 <= time.monotonic() - opened <= HEADER_TIMEOUT + 1.5


def test_an_idle_connection_without_any_byte_is_closed(server):
    with connect(server) as sock:
        opened = time.monotonic()
        assert answer(sock) == b""
        assert time.monotonic() - opened <= HEADER_TIMEOUT + 1.5


def test_a_keep_alive_connection_gets_a_new_head_deadline(server):
    with connect(server) as sock:
        sock.sendall(head())
        assert status(one_response(sock)) == 200
        time.sleep(HEADER_TIMEOUT * 0.6)  # within the keep-alive timeout and the head deadline
        sock.sendall(head("Connection: close"))
        assert status(answer(sock)) == 200


@pytest.mark.slow
def test_a_thousand_slow_clients_are_bounded_and_valid_requests_still_answered(server):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < SLOW_CLIENTS + 200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, SLOW_CLIENTS + 200), hard))
    baseline_fds = server_descriptors(server)
    slow = []
    try:
        for _ in range(SLOW_CLIENTS):
            sock = connect(server)
            sock.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            slow.append(sock)
        latencies = [valid_call_works(server) for _ in range(20)]
        # the server holds no more than its limit, whatever the clients do
        assert server_descriptors(server) - baseline_fds <= MAX_CONNECTIONS + 5
        assert max(latencies) < 2.0
        # the slow ones are all gone within the timeout: the earliest by eviction, the rest by time
        time.sleep(HEADER_TIMEOUT + 1.0)
        closed = 0
        for sock in slow:
            sock.settimeout(0.01)
            try:
                closed += sock.recv(1) == b""
            except ConnectionResetError:
                closed += 1
            except socket.timeout:
                pass
        assert closed == SLOW_CLIENTS
        assert server_descriptors(server) - baseline_fds <= 5
        valid_call_works(server)
    finally:
        for sock in slow:
            sock.close()


def test_settings_of_the_http_limits():
    settings = Settings.from_env_and_args(Namespace(), {"VODIMG_HEADER_TIMEOUT": "2.5",
                                                       "VODIMG_MAX_CONNECTIONS": "77"})
    assert (settings.header_timeout, settings.max_connections) == (2.5, 77)
    defaults = Settings.from_env_and_args(Namespace(), {})
    assert (defaults.header_timeout, defaults.max_connections) == (10.0, 1024)
    assert MAX_HEAD_BYTES >= MAX_REQUEST_LINE_BYTES + MAX_HEADER_BYTES
    for bad in ({"VODIMG_HEADER_TIMEOUT": "0"}, {"VODIMG_HEADER_TIMEOUT": "soon"},
                {"VODIMG_MAX_CONNECTIONS": "0"}, {"VODIMG_MAX_CONNECTIONS": "-5"}):
        with pytest.raises(ConfigError):
            Settings.from_env_and_args(Namespace(), bad)
