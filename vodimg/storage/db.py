"""The database handle: engine set-up, transactions and migrations.

Two back-ends share one schema: a SQLite file under the data directory (embedded default) and
PostgreSQL (scale-out; the URL may carry ``options=-csearch_path=<schema>`` to live in a schema
other than ``public``: tables and Alembic's version table then go there).

Transactions:

- ``read()``: a connection without a transaction, for single-statement reads (no BEGIN/ROLLBACK
  round trips on the hot path).
- ``write()``: a transaction that holds the write lock from its first statement on SQLite
  (``BEGIN IMMEDIATE``: read-modify-write cannot interleave and never fails on a lock upgrade);
  on PostgreSQL an ordinary READ COMMITTED transaction in which callers lock rows they will
  change (``SELECT ... FOR UPDATE``, conditional ``UPDATE``) or take ``lock(conn, name)``.
  ``after_commit(conn, callback)`` runs ``callback`` once that transaction has committed (e.g.
  waking readers of the rows it wrote); a rollback drops it.

The request path (per-request statements of the domain services) uses the same two kinds on the
DB-API connection instead (SQLite: each thread's own; PostgreSQL: pooled): ``compile(statement)``
once, then ``cursor()`` (reads) or ``transaction()`` (writes, same locking as ``write()``).
SQLAlchemy's per-execution work costs about 100 us a statement, several times the statement
itself on SQLite.

SQLite writers queue on a writer lock first (``SqliteWriterLock``, the file
``<database>.writer-lock``): waiting there wakes at once when the writer before ends, where
SQLite's own busy handler sleeps 1, 2, 5, 10, ... ms between attempts. A writer that does not take
it (an older version) still waits through the busy timeout, so correctness never depends on it.

SQLite runs in WAL mode with ``synchronous=NORMAL``: a commit survives an application crash; a
power loss or OS crash may lose the last transactions (never corrupts the database).
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

try:
    import fcntl
except ImportError:  # not POSIX: processes wait through SQLite's busy timeout instead
    fcntl = None

import sqlalchemy as sa
from sqlalchemy.engine import make_url

SQLITE_FILE_NAME = "vodimg.db"
# Integer columns (ids, counters) are signed 64-bit on both back-ends; the API's uint64 members
# (SubAppId) go up to 2**64 - 1, which SQLite refuses to bind (OverflowError).
BIGINT_MIN, BIGINT_MAX = -(2**63), 2**63 - 1
SQLITE_BUSY_TIMEOUT_MS = 30_000
MIGRATIONS_DIR = pathlib.Path(__file__).with_name("migrations")

# Execution options our SQLite "begin" hook reads (PostgreSQL uses real isolation levels).
_SQLITE_IMMEDIATE = "vodimg_sqlite_immediate"
_SQLITE_NO_TRANSACTION = "vodimg_sqlite_no_transaction"
# Key in ``Connection.info`` of the callbacks ``write()`` runs after its commit.
_AFTER_COMMIT = "vodimg_after_commit"


def sqlite_url(data_dir: pathlib.Path) -> str:
    """URL of the SQLite database file ``<data_dir>/vodimg.db`` (absolute path)."""
    return f"sqlite:///{pathlib.Path(data_dir).resolve() / SQLITE_FILE_NAME}"


def fits_bigint(value: int) -> bool:
    """True when ``value`` can be stored in (or compared with) an integer column. A key outside
    this range names no row: callers answer as for any id that does not exist."""
    return BIGINT_MIN <= value <= BIGINT_MAX


def _normalised_url(url: str) -> sa.URL:
    """Parse ``url``; plain ``postgresql://``/``postgres://`` get the psycopg 3 driver we ship."""
    parsed = make_url(url.replace("postgres://", "postgresql://", 1))
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.drivername == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise ValueError("SQLite needs a database file: sqlite:///<path>/vodimg.db")
        return parsed
    if parsed.drivername != "postgresql+psycopg":
        raise ValueError(
            f"unsupported database URL scheme {parsed.drivername!r}: "
            "use sqlite:///<path> or postgresql+psycopg://user@host/db"
        )
    return parsed


class SqliteWriterLock:
    """Serialises the write transactions of every process using the lock file ``path``: threads
    of one process on a lock, processes on an exclusive ``flock`` of the file (released by the
    kernel if a process dies). Re-entrant within a thread."""

    def __init__(self, path: pathlib.Path):
        self._path = path
        self._threads = threading.RLock()
        self._depth = 0
        self._fd: int | None = None
        self._pid = 0

    @contextmanager
    def held(self) -> Iterator[None]:
        with self._threads:
            if self._depth == 0 and fcntl is not None:
                fcntl.flock(self._file(), fcntl.LOCK_EX)
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0 and fcntl is not None:
                    fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _file(self) -> int:
        if self._fd is None or self._pid != os.getpid():  # a forked child needs its own open file
            # flock needs no write access: any user who may open the database may queue here
            self._fd = os.open(self._path, os.O_RDONLY | os.O_CREAT, 0o644)
            self._pid = os.getpid()
        return self._fd

    def close(self) -> None:
        with self._threads:
            if self._fd is not None and self._pid == os.getpid():
                os.close(self._fd)
            self._fd = None


class _ThreadConnection:
    """One thread's SQLite connection: closed when the thread ends (its thread-local storage goes)
    or by ``Database.dispose``."""

    __slots__ = ("connection", "__weakref__")

    def __init__(self, connection):
        self.connection = connection

    def __del__(self):
        self.connection.close()


@dataclass(frozen=True)
class RowInsert:
    """One row to insert with another write, in its transaction (``TaskQueue.finish``)."""

    table: sa.Table
    values: Mapping[str, Any]
    notify: tuple[str, str] | None = None  # a PostgreSQL NOTIFY (channel, payload) at the commit
    committed: Callable[[], None] | None = None  # run once the row is committed (same-process wake-ups)


@dataclass(frozen=True)
class Statement:
    """A Core statement compiled for one database's dialect, run on a DB-API cursor."""

    sql: str
    names: tuple[str, ...] | None  # order of positional parameters (SQLite); None: named (psycopg)
    defaults: Mapping[str, Any]  # values bound in the statement itself (e.g. ``value + 1``)

    def run(self, cursor, params: Mapping[str, Any] | None = None):
        """Execute with ``params`` (by bind parameter name); returns the cursor."""
        values = {**self.defaults, **params} if params else self.defaults
        if self.names is not None:
            values = tuple(values[name] for name in self.names)
        cursor.execute(self.sql, values)
        return cursor


class Database:
    """One engine (connection pool) per process; share it between services and threads."""

    def __init__(self, url: str):
        parsed = _normalised_url(url)
        self.is_sqlite = parsed.drivername == "sqlite"
        # SQLite in WAL mode: a read never waits for a lock (writers do not block readers, and
        # checkpoints are passive) and costs microseconds, so it may run on an event loop.
        # PostgreSQL reads are network round trips.
        self.reads_never_wait = self.is_sqlite
        # SQLite has one writer at a time for the whole database; PostgreSQL locks rows.
        self.one_writer_at_a_time = self.is_sqlite
        if self.is_sqlite:
            pathlib.Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            self.engine = sa.create_engine(
                parsed,
                pool_size=10,
                max_overflow=30,
                connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            )
            _install_sqlite_hooks(self.engine)
            self._reader = self.engine.execution_options(**{_SQLITE_NO_TRANSACTION: True})
            self._writer_lock = SqliteWriterLock(pathlib.Path(f"{parsed.database}.writer-lock"))
            self._thread_local = threading.local()
            self._thread_connections: weakref.WeakSet[_ThreadConnection] = weakref.WeakSet()
        else:
            # Reads run in autocommit mode: nothing to roll back when they return to the pool.
            self.engine = sa.create_engine(
                parsed, pool_size=10, max_overflow=30, skip_autocommit_rollback=True
            )
            self._reader = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self._listener = None
        self._listener_lock = threading.Lock()

    @contextmanager
    def read(self) -> Iterator[sa.Connection]:
        """A connection for one-statement reads, outside any transaction."""
        with self._reader.connect() as conn:
            yield conn

    @contextmanager
    def write(self) -> Iterator[sa.Connection]:
        """A transaction, committed when the block ends normally, rolled back on an exception."""
        with self._writing(), self.engine.connect() as conn:
            if self.is_sqlite:
                conn.execution_options(**{_SQLITE_IMMEDIATE: True})
            conn.info.pop(_AFTER_COMMIT, None)  # left by a transaction that was not ours
            try:
                with conn.begin():
                    yield conn
            finally:
                callbacks = conn.info.pop(_AFTER_COMMIT, ())
        for callback in callbacks:  # reached only after the commit succeeded
            callback()

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """Around every write transaction: SQLite writers queue on the writer lock."""
        if self.is_sqlite:
            with self._writer_lock.held():
                yield
        else:
            yield

    def compile(self, statement: sa.Executable) -> Statement:
        """``statement`` as this database's SQL, for ``cursor()`` and ``transaction()``. Bind
        parameters must not need SQLAlchemy type processing (integers and strings) or expansion."""
        compiled = statement.compile(dialect=self.engine.dialect)
        names = tuple(compiled.positiontup) if compiled.positional else None
        defaults = {name: value for name, value in compiled.params.items() if value is not None}
        return Statement(str(compiled), names, defaults)

    @contextmanager
    def cursor(self) -> Iterator[Any]:
        """A DB-API cursor for one-statement reads, outside any transaction (autocommit)."""
        with self._dbapi_connection() as connection:
            if self.is_sqlite:  # pysqlite's transaction handling is off: autocommit already
                cursor = connection.cursor()
                try:
                    yield cursor
                finally:
                    cursor.close()  # ends the statement: no read snapshot stays open
                return
            connection.autocommit = True
            try:
                with connection.cursor() as cursor:
                    yield cursor
            finally:
                connection.autocommit = False

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        """A DB-API cursor in a transaction (locking as ``write()``), committed when the block ends
        normally, rolled back on an exception (also when the commit fails)."""
        with self._writing(), self._dbapi_connection() as connection:
            cursor = connection.cursor()
            try:
                if self.is_sqlite:
                    cursor.execute("BEGIN IMMEDIATE")
                yield cursor
                connection.commit()
            except BaseException:
                connection.rollback()
                raise
            finally:
                cursor.close()

    @contextmanager
    def single_write(self) -> Iterator[Any]:
        """A DB-API cursor for ONE write statement, atomic by itself: on PostgreSQL in autocommit
        mode (one round trip, no BEGIN/COMMIT); on SQLite as ``transaction()`` (the writer lock)."""
        if self.is_sqlite:
            with self.transaction() as cursor:
                yield cursor
            return
        with self.cursor() as cursor:
            yield cursor

    @contextmanager
    def _dbapi_connection(self) -> Iterator[Any]:
        """SQLite: this thread's own connection, taken out of the pool once (a SQLite connection is
        only a file handle, and a pool round trip costs more than a cached read); PostgreSQL: a
        pooled one."""
        if self.is_sqlite:
            owned = getattr(self._thread_local, "owned", None)
            if owned is None:
                fairy = self.engine.raw_connection()
                owned = self._thread_local.owned = _ThreadConnection(fairy.driver_connection)
                fairy.detach()
                self._thread_connections.add(owned)
            yield owned.connection
            return
        fairy = self.engine.raw_connection()
        try:
            yield fairy.driver_connection
        except BaseException as error:
            if fairy.driver_connection.broken:  # PostgreSQL restarted or the network cut
                # the other pooled connections are most likely lost too: the pool replaces each
                # at its next checkout, as SQLAlchemy does for its own connections
                self.engine.pool._invalidate(fairy, error)  # noqa: SLF001 - no public spelling
            raise
        finally:
            fairy.close()

    def listen(self, channel: str, callback) -> None:
        """PostgreSQL: call ``callback(payload)`` on every NOTIFY on ``channel`` from any process
        (``None`` after the listener reconnected: something may have been missed). SQLite: nothing
        (waiters poll). See ``vodimg/storage/notify.py``."""
        if self.is_sqlite:
            return
        with self._listener_lock:
            if self._listener is None:
                from vodimg.storage.notify import PgListener

                self._listener = PgListener(self._listen_connection)
        self._listener.subscribe(channel, callback)

    def _listen_connection(self):
        """A new psycopg connection with this engine's settings, outside the pool."""
        fairy = self.engine.raw_connection()
        connection = fairy.driver_connection
        fairy.detach()
        return connection

    def lock(self, conn: sa.Connection, name: str) -> None:
        """Serialise transactions that take the same named lock, until ``conn``'s transaction ends.

        SQLite write transactions are already serialised (BEGIN IMMEDIATE); PostgreSQL takes a
        transaction-scoped advisory lock.
        """
        if not self.is_sqlite:
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _lock_key(name)})

    def migrate(self) -> None:
        """Bring the schema to the newest revision (idempotent; safe when processes race)."""
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        config.set_main_option("path_separator", "os")
        with self.write() as conn:
            self.lock(conn, "vodimg.migrate")
            config.attributes["connection"] = conn
            command.upgrade(config, "head")

    def dispose(self) -> None:
        """Close every pooled connection (and the LISTEN one)."""
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        self.engine.dispose()
        if self.is_sqlite:
            self._writer_lock.close()
            self._thread_local = threading.local()
            for owned in list(self._thread_connections):
                owned.connection.close()


def after_commit(conn: sa.Connection, callback) -> None:
    """Run ``callback()`` after the ``write()`` transaction of ``conn`` commits (not on rollback)."""
    conn.info.setdefault(_AFTER_COMMIT, []).append(callback)


def _lock_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for ``name``."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def _install_sqlite_hooks(engine: sa.Engine) -> None:
    """Pragmas on every new connection, and explicit BEGIN statements we control.

    pysqlite's own transaction handling is switched off (``isolation_level = None``) so that the
    ``begin`` hook decides: BEGIN IMMEDIATE for ``write()``, nothing for ``read()``, plain BEGIN
    otherwise.
    """

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        for pragma in (
            f"busy_timeout={SQLITE_BUSY_TIMEOUT_MS}",
            "journal_mode=WAL",
            "foreign_keys=ON",
            "synchronous=NORMAL",  # durable across application crashes in WAL mode; fast
        ):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn):
        options = conn.get_execution_options()
        if options.get(_SQLITE_NO_TRANSACTION):
            return
        conn.exec_driver_sql("BEGIN IMMEDIATE" if options.get(_SQLITE_IMMEDIATE) else "BEGIN")
