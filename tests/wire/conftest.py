from __future__ import annotations

import pytest

from tests.e2e.server import started


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One real ``vodimg serve`` (SQLite, HTTP) per test module, rate limit off."""
    running = started(tmp_path_factory.mktemp("wire") / "data")
    yield running
    running.stop()
