"""Shared fixtures.

PostgreSQL: tests marked ``postgres`` use ``VODIMG_TEST_POSTGRES_URL`` (default: the local server
at 127.0.0.1:5432, database ``test``). Without a reachable server they skip with the reason,
except under CI (``CI=true``), where an unreachable PostgreSQL is a failure.

S3: ``moto_s3`` and ``swift_s3`` start moto's server and Swift's s3api on loopback for the session
(tests/objectstore/servers.py); the same rule: skip with the reason, fail under CI.
"""

from __future__ import annotations

import contextlib
import os
import uuid

import pytest

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _postgres_url() -> str:
    return os.environ.get("VODIMG_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)


@pytest.fixture(scope="session")
def postgres_server_url() -> str:
    """URL of a reachable PostgreSQL server; skips (or fails under CI) when there is none."""
    import sqlalchemy as sa

    url = _postgres_url()
    engine = sa.create_engine(url, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
    except Exception as exc:  # noqa: BLE001 - any connection failure means "not reachable"
        reason = f"PostgreSQL not reachable at {url}: {exc.__class__.__name__}: {exc}".splitlines()[0]
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason + " (CI=true: PostgreSQL is required)")
        pytest.skip(reason)
    finally:
        engine.dispose()
    return url


@contextlib.contextmanager
def fresh_postgres_schema(server_url: str, prefix: str = "vodimg_test"):
    """A new, empty schema on the server, dropped afterwards.

    Yields a SQLAlchemy URL whose connections use that schema (``search_path``).
    """
    import sqlalchemy as sa

    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server_url)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in server_url else "?"
    try:
        yield f"{server_url}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def postgres_url(postgres_server_url: str):
    """A fresh, empty schema for one test (see ``fresh_postgres_schema``)."""
    with fresh_postgres_schema(postgres_server_url) as url:
        yield url


# -- S3 servers (tests/objectstore/servers.py): started once per session, on first use ----------

@pytest.fixture(scope="session")
def moto_s3(tmp_path_factory):
    from tests.objectstore.servers import start_moto

    server, stop = start_moto(tmp_path_factory.mktemp("moto"))
    yield server
    stop()


@pytest.fixture(scope="session")
def swift_s3(tmp_path_factory):
    from tests.objectstore.servers import start_swift

    server, stop = start_swift(tmp_path_factory.mktemp("swift"))
    yield server
    stop()
