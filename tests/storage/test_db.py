"""Database set-up, migrations and transactions, on SQLite and PostgreSQL."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from vodimg.storage import Database, sqlite_url
from vodimg.storage.db import MIGRATIONS_DIR
from vodimg.storage.schema import accounts, api_keys, applications, counters, metadata, templates

TABLES = {"accounts", "api_keys", "applications", "templates", "counters", "alembic_version"}


def _tables(db: Database) -> set[str]:
    return set(sa.inspect(db.engine).get_table_names())


def _head_revisions(db: Database) -> list[str]:
    with db.read() as conn:
        return [row[0] for row in conn.execute(sa.text("SELECT version_num FROM alembic_version"))]


def test_sqlite_url_is_the_file_under_the_data_directory(tmp_path):
    url = sqlite_url(tmp_path / "data")
    assert url == f"sqlite:///{(tmp_path / 'data' / 'vodimg.db').resolve()}"
    Database(url).dispose()
    assert (tmp_path / "data").is_dir()  # created on first use


def test_migrate_creates_the_schema_and_is_idempotent(database):
    assert TABLES <= _tables(database)
    revisions = _head_revisions(database)
    with database.write() as conn:
        conn.execute(sa.update(counters).values(value=12345))
    database.migrate()
    database.migrate()
    assert _head_revisions(database) == revisions and len(revisions) == 1
    with database.read() as conn:  # the seed row is not inserted again nor reset
        assert conn.execute(sa.select(counters.c.name, counters.c.value)).all() == [
            ("template_definition", 12345)
        ]


def test_upgrading_a_0001_database_keeps_its_applications(database_url):
    from alembic import command
    from alembic.config import Config

    db = Database(database_url)
    try:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        config.set_main_option("path_separator", "os")
        with db.write() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "0001")
            conn.execute(sa.insert(accounts).values(app_id=1, is_default=True, created_at="x"))
            conn.execute(sa.text(
                "INSERT INTO applications (sub_app_id, app_id, name, is_default, template_count, created_at) "
                "VALUES (5, 1, 'old', true, 0, 'x')"))
        db.migrate()
        with db.read() as conn:
            assert conn.execute(sa.select(applications.c.sub_app_id, applications.c.templates_version)).all() == [(5, 0)]
    finally:
        db.dispose()


def test_migrations_build_exactly_the_declared_metadata(database):
    with database.engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), metadata)
    assert differences == []


def test_sqlite_connections_use_wal_foreign_keys_and_busy_timeout(tmp_path):
    db = Database(sqlite_url(tmp_path))
    try:
        with db.read() as conn:
            pragma = lambda name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()  # noqa: E731
            assert pragma("journal_mode") == "wal"
            assert pragma("foreign_keys") == 1
            assert pragma("busy_timeout") >= 5000
    finally:
        db.dispose()


def test_foreign_keys_are_enforced(database):
    with pytest.raises(sa.exc.IntegrityError):
        with database.write() as conn:
            conn.execute(
                sa.insert(templates).values(
                    definition=10000, sub_app_id=42, name="", comment="", configure="{}",
                    create_time="2026-01-01T00:00:00Z", update_time="2026-01-01T00:00:00Z",
                    version=1,
                )
            )


def test_write_commits_or_rolls_back_as_a_whole(database):
    row = {"is_default": False, "created_at": "2026-01-01T00:00:00Z"}
    with database.write() as conn:
        conn.execute(sa.insert(accounts).values(app_id=1, **row))
    with pytest.raises(RuntimeError):
        with database.write() as conn:
            conn.execute(sa.insert(accounts).values(app_id=2, **row))
            raise RuntimeError("abort")
    with database.read() as conn:
        assert conn.execute(sa.select(accounts.c.app_id)).scalars().all() == [1]


def test_compiled_statements_commit_or_roll_back_and_leave_connections_clean(database):
    insert = database.compile(sa.insert(accounts))
    next_value = database.compile(
        sa.update(counters).where(counters.c.name == "template_definition")
        .values(value=counters.c.value + 1).returning(counters.c.value))
    select = database.compile(sa.select(accounts.c.app_id).where(accounts.c.app_id >= sa.bindparam("low"))
                              .order_by(accounts.c.app_id))
    row = {"is_default": False, "created_at": "2026-01-01T00:00:00Z"}
    with database.transaction() as cursor:
        insert.run(cursor, {"app_id": 1, **row})
        first = next_value.run(cursor).fetchone()[0]  # a value bound in the statement (+ 1)
    with pytest.raises(RuntimeError):
        with database.transaction() as cursor:
            insert.run(cursor, {"app_id": 2, **row})
            next_value.run(cursor).fetchone()
            raise RuntimeError("abort")
    with database.cursor() as cursor:
        assert select.run(cursor, {"low": 0}).fetchall() == [(1,)]
    with database.transaction() as cursor:
        assert next_value.run(cursor).fetchone()[0] == first + 1  # the aborted increment is gone
    # Pooled connections come back usable by SQLAlchemy transactions (no autocommit left behind).
    for _ in range(3):
        with pytest.raises(RuntimeError):
            with database.write() as conn:
                conn.execute(sa.insert(accounts).values(app_id=3, **row))
                raise RuntimeError("abort")
    with database.read() as conn:
        assert conn.execute(sa.select(accounts.c.app_id)).scalars().all() == [1]


def test_a_new_database_object_sees_committed_data(database_url):
    first = Database(database_url)
    first.migrate()
    with first.write() as conn:
        conn.execute(sa.insert(accounts).values(app_id=7, is_default=True, created_at="x"))
    first.dispose()
    second = Database(database_url)
    try:
        second.migrate()
        with second.read() as conn:
            assert conn.execute(sa.select(accounts.c.app_id)).scalars().all() == [7]
    finally:
        second.dispose()


@pytest.mark.postgres
def test_postgres_schema_from_the_url_holds_every_table(postgres_url):
    db = Database(postgres_url)
    try:
        db.migrate()
        schema = postgres_url.rsplit("%3D", 1)[1]
        with db.read() as conn:
            placed = conn.execute(
                sa.text("SELECT table_schema, table_name FROM information_schema.tables "
                        "WHERE table_name = ANY(:names)"),
                {"names": sorted(TABLES)},
            ).all()
        assert {name for s, name in placed if s == schema} == TABLES
        assert all(s != "public" for s, _ in placed)
    finally:
        db.dispose()


MIGRATE_SCRIPT = """
import sys
from vodimg.storage import Database
db = Database(sys.argv[1]); db.migrate(); db.dispose()
"""


def test_two_processes_migrating_at_once_both_succeed(database_url):
    processes = [
        subprocess.Popen([sys.executable, "-c", MIGRATE_SCRIPT, database_url],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outcomes = [(p.wait(timeout=120), p.stderr.read()) for p in processes]
    for p in processes:
        p.stdout.close()
        p.stderr.close()
    assert [code for code, _ in outcomes] == [0, 0], outcomes
    db = Database(database_url)
    try:
        assert TABLES <= _tables(db)
        assert len(_head_revisions(db)) == 1
        with db.read() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(counters)).scalar() == 1
    finally:
        db.dispose()


@pytest.mark.parametrize(
    "url, message",
    [
        ("mysql://root@localhost/db", "unsupported database URL scheme"),
        ("sqlite://", "SQLite needs a database file"),
        ("sqlite:///:memory:", "SQLite needs a database file"),
    ],
)
def test_unsupported_urls_are_refused_clearly(url, message):
    with pytest.raises(ValueError, match=message):
        Database(url)


def test_plain_postgresql_urls_get_the_psycopg_driver():
    for url in ("postgresql://u@h/db", "postgres://u@h/db"):
        db = Database(url)  # no connection is made until first use
        assert db.engine.url.drivername == "postgresql+psycopg"
        db.dispose()


def test_sqlite_writer_lock_queues_writers_of_other_processes(tmp_path):
    """Two lock objects on one file stand for two processes (each its own open file)."""
    import threading
    import time

    from vodimg.storage.db import SqliteWriterLock

    first, second = SqliteWriterLock(tmp_path / "w.lock"), SqliteWriterLock(tmp_path / "w.lock")
    order: list[str] = []

    def write_second() -> None:
        with second.held():
            order.append("second")

    try:
        with first.held():
            with first.held():  # re-entrant in one thread
                pass
            waiter = threading.Thread(target=write_second)
            waiter.start()
            time.sleep(0.2)
            order.append("first done")
        waiter.join(5)
        assert order == ["first done", "second"]
    finally:
        first.close()
        second.close()


def test_concurrent_sqlite_writes_from_two_database_objects_all_commit(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    url = sqlite_url(tmp_path / "data")
    databases = [Database(url), Database(url)]
    databases[0].migrate()
    bump = [db.compile(sa.update(counters).values(value=counters.c.value + 1)) for db in databases]

    def add(index: int) -> None:
        db = databases[index % 2]
        with db.transaction() as cursor:
            bump[index % 2].run(cursor)

    try:
        with databases[0].read() as conn:
            start = conn.execute(sa.select(counters.c.value)).scalar_one()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(add, range(200)))
        with databases[1].read() as conn:
            assert conn.execute(sa.select(counters.c.value)).scalar_one() == start + 200
    finally:
        for db in databases:
            db.dispose()


def test_sqlite_connections_are_per_thread_and_closed_by_dispose(tmp_path):
    import gc
    import sqlite3
    import threading

    db = Database(sqlite_url(tmp_path / "data"))
    db.migrate()
    select = db.compile(sa.select(counters.c.value))
    seen = []

    def read() -> None:
        with db.cursor() as cursor:
            seen.append((threading.get_ident(), select.run(cursor).fetchone()[0]))

    for _ in range(3):
        read()
        thread = threading.Thread(target=read)
        thread.start()
        thread.join()
    gc.collect()
    assert len({value for _, value in seen}) == 1
    assert len(db._thread_connections) == 1  # the other threads' connections closed when they ended
    connection = db._thread_local.owned.connection
    db.dispose()
    with pytest.raises(sqlite3.ProgrammingError):
        connection.execute("SELECT 1")
    read()  # usable again after dispose, like the engine
    db.dispose()


def test_a_failed_sqlite_commit_is_rolled_back_and_the_connection_stays_usable(tmp_path):
    import sqlite3

    db = Database(sqlite_url(tmp_path / "data"))
    db.migrate()
    insert_key = db.compile(sa.insert(api_keys))
    count_keys = db.compile(sa.select(sa.func.count()).select_from(api_keys))
    try:
        with pytest.raises(sqlite3.IntegrityError):
            with db.transaction() as cursor:
                cursor.execute("PRAGMA defer_foreign_keys = ON")  # the violation shows at COMMIT
                insert_key.run(cursor, {"secret_id": "AKIDx", "secret_key": "k", "app_id": 404,
                                        "created_at": "x"})
        with db.cursor() as cursor:
            assert count_keys.run(cursor).fetchone()[0] == 0
        with db.transaction() as cursor:  # no transaction was left open on this thread's connection
            cursor.execute("SELECT 1")
    finally:
        db.dispose()
