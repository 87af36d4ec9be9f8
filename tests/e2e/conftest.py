"""Fixtures for end-to-end tests: a real ``vodimg serve`` per module and backend (SQLite in a temp
data directory; PostgreSQL in a fresh schema), and fresh accounts so tests do not share state."""

from __future__ import annotations

import pytest

from tests.conftest import fresh_postgres_schema
from tests.e2e.cluster import cluster_api
from tests.e2e.server import Server, Tenant, started


@pytest.fixture(scope="module")
def postgres_module_url(postgres_server_url: str):
    """Like ``postgres_url`` (tests/conftest.py) but one schema for a whole module."""
    with fresh_postgres_schema(postgres_server_url, "vodimg_e2e") as url:
        yield url


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres),
                                        pytest.param("cluster", marks=[pytest.mark.postgres, pytest.mark.slow])])
def e2e_server(request, tmp_path_factory) -> Server:
    if request.param == "cluster":  # PostgreSQL + S3 + 2 API-only processes + 2 workers (tests/e2e/cluster.py)
        with cluster_api(request, tmp_path_factory.mktemp("e2e-cluster"), "vodimg_e2e_cluster", {}) as server:
            yield server
        return
    database_url = request.getfixturevalue("postgres_module_url") if request.param == "postgres" else None
    server = started(tmp_path_factory.mktemp(f"e2e-{request.param}") / "data", database_url=database_url)
    yield server
    server.stop()
    server.close_accounts()


@pytest.fixture
def tenant(e2e_server: Server) -> Tenant:
    """A fresh account (own default application and key) on the module's server."""
    return e2e_server.new_tenant()
