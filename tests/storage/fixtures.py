"""Database fixtures for storage and domain tests: every test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from vodimg.storage import Database, sqlite_url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request, tmp_path) -> str:
    """URL of an empty database (not migrated): a SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        return sqlite_url(tmp_path / "data")
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def database(database_url):
    """A migrated Database on that URL."""
    db = Database(database_url)
    db.migrate()
    yield db
    db.dispose()


class StatementCounter:
    """Counts SQL statements an engine sends (real instrumentation through SQLAlchemy events)."""

    def __init__(self, engine: sa.Engine):
        self.count = 0
        sa.event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, *_args):
        self.count += 1
