"""The guarded backends check the address they actually connect to (so DNS rebinding, a name
answering differently at submit time and at connect time, cannot get around the check)."""

from __future__ import annotations

import asyncio
import ipaddress

import pytest

from vodimg.netguard import FetchFailed, UrlRefused
from vodimg.netguard.backend import Deadline, GuardedAsyncBackend, GuardedBackend

from .servers import closed_port

LOOPBACK_V4 = (ipaddress.ip_network("127.0.0.0/8"),)


def test_a_name_resolving_to_a_refused_address_is_refused_at_connect(origin):
    guarded = GuardedBackend((), connect_timeout=2.0, deadline=Deadline(5.0))
    with pytest.raises(UrlRefused, match="localhost resolves to 127.0.0.1, which is loopback"):
        guarded.connect_tcp("localhost", origin.port)
    assert origin.connections == 0


def test_the_connection_goes_to_the_checked_address(origin):
    guarded = GuardedBackend(LOOPBACK_V4, connect_timeout=2.0, deadline=Deadline(5.0))
    stream = guarded.connect_tcp("localhost", origin.port)
    try:
        peer = stream.get_extra_info("server_addr")
        assert peer == ("127.0.0.1", origin.port)
        stream.write(b"GET /ok/2 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := stream.read(65536):
            answer += chunk
    finally:
        stream.close()
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"\r\n\r\npp")
    assert origin.connections == 1


def test_async_backend_checks_at_connect_too(origin):
    async def attempt():
        refusing = GuardedAsyncBackend((), connect_timeout=2.0, deadline=Deadline(5.0))
        with pytest.raises(UrlRefused, match="localhost resolves to 127.0.0.1"):
            await refusing.connect_tcp("localhost", origin.port)
        allowing = GuardedAsyncBackend(LOOPBACK_V4, connect_timeout=2.0, deadline=Deadline(5.0))
        stream = await allowing.connect_tcp("localhost", origin.port)
        peer = stream.get_extra_info("server_addr")
        await stream.aclose()
        return peer

    assert asyncio.run(attempt()) == ("127.0.0.1", origin.port)
    assert origin.connections == 1


def test_connect_failure_names_the_host_and_address():
    port = closed_port()
    guarded = GuardedBackend(LOOPBACK_V4, connect_timeout=2.0, deadline=Deadline(5.0))
    with pytest.raises(FetchFailed, match=f"^could not connect to localhost \\(127.0.0.1\\) port "
                                          f"{port}: Connection refused$"):
        guarded.connect_tcp("localhost", port)


def test_unix_sockets_are_refused():
    with pytest.raises(UrlRefused, match="unix sockets"):
        GuardedBackend((), 1.0, Deadline(1.0)).connect_unix_socket("/var/run/docker.sock")
