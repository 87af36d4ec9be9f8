"""Loopback servers for the URL guard tests (see servers.py)."""

from __future__ import annotations

import ipaddress

import pytest

from vodimg.netguard import UrlPolicy

from .servers import Origin, Silent


@pytest.fixture
def origin():
    """A server on 127.0.0.1, the address the tests treat as refused."""
    server = Origin("127.0.0.1")
    yield server
    server.close()


@pytest.fixture
def public():
    """A server on 127.0.0.2, the address the tests allow (stands in for a public host)."""
    server = Origin("127.0.0.2")
    yield server
    server.close()


@pytest.fixture
def origin6():
    server = Origin("::1")
    yield server
    server.close()


@pytest.fixture
def silent():
    server = Silent()
    yield server
    server.close()


def policy(*allow: str, **timeouts) -> UrlPolicy:
    """A policy allowing the given networks, with short timeouts so failures come quickly."""
    settings = {"connect_timeout": 2.0, "total_timeout": 5.0} | timeouts
    return UrlPolicy(allow=tuple(ipaddress.ip_network(item) for item in allow), **settings)


LOOPBACK = policy("127.0.0.0/8", "::1")
ONLY_PUBLIC = policy("127.0.0.2/32")
