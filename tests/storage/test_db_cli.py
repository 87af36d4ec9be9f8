"""``vodimg db upgrade`` and ``vodimg db current`` on SQLite and PostgreSQL (a subprocess each)."""

from __future__ import annotations

import subprocess

import sqlalchemy as sa

from tests.e2e.server import vodimg_command
from vodimg.storage.db import Database


def _db(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*vodimg_command(), "db", *args], capture_output=True, text=True, timeout=120)


def test_upgrade_creates_the_schema_once_and_current_tells_the_revision(database_url):
    assert "empty" in _db("current", "--database-url", database_url).stdout
    first = _db("upgrade", "--database-url", database_url)
    assert first.returncode == 0 and "(was empty)" in first.stdout, first.stderr
    again = _db("upgrade", "--database-url", database_url)
    assert again.returncode == 0 and "was" not in again.stdout
    revision = _db("current", "--database-url", database_url).stdout.strip()
    assert revision and revision in first.stdout
    database = Database(database_url)
    try:
        with database.read() as conn:
            assert "tasks" in sa.inspect(conn).get_table_names()
    finally:
        database.dispose()


def test_an_unreachable_database_is_a_clear_error():
    done = _db("upgrade", "--database-url", "postgresql://nobody@127.0.0.1:1/none")
    assert done.returncode == 1 and "vodimg db: OperationalError" in done.stderr
    assert "Traceback" not in done.stderr
