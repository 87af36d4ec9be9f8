"""The task table as a queue (DESIGN.md section 5; the design of Solid Queue, Oban and River).

- ``claim``: one transaction takes the WAITING task of highest priority, oldest first
  (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so concurrent workers never wait for each other; on
  SQLite the single writer serialises claims), sets a lease and increments ``attempt``, the
  fencing token.
- ``renew``: the heartbeat; it also carries the task's progress. It fails once the lease is lost.
- ``finish``: sets FINISH and runs the caller's extra statements (the output media row, the
  completion event) in the same transaction, only while the caller still holds the lease with its
  token. A worker whose lease expired can therefore never finish a task a second time.
- ``expired``/``requeue``/``release``: the reaper returns tasks whose worker died; a draining
  worker gives its tasks back without counting a failure.

Wake-up: ``notify`` (after the commit that made a task WAITING) wakes this process's waiting
workers at once and, on PostgreSQL, those of every other process (NOTIFY on ``vodimg_tasks``,
heard by the listener ``wait`` subscribes; ``vodimg/storage/notify.py``). A missed notification
costs at most ``wait``'s timeout: waiters also poll. SQLite: other processes poll.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa

from vodimg.storage.db import Database, RowInsert
from vodimg.storage.notify import TASKS_CHANNEL
from vodimg.storage.schema import tasks

logger = logging.getLogger("vodimg.queue")

WAITING, PROCESSING, FINISH = "WAITING", "PROCESSING", "FINISH"


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class ClaimedTask:
    task_id: str
    sub_app_id: int
    task_type: str
    attempt: int
    failures: int
    source: str
    input: str
    configure: str | None
    session_id: str
    session_context: str
    create_time: str
    begin_process_time: str


@dataclass(frozen=True)
class ExpiredTask:
    task_id: str
    sub_app_id: int
    task_type: str
    attempt: int
    failures: int


_CLAIMED = (tasks.c.task_id, tasks.c.sub_app_id, tasks.c.task_type, tasks.c.attempt, tasks.c.failures,
            tasks.c.source, tasks.c.input, tasks.c.configure, tasks.c.session_id,
            tasks.c.session_context, tasks.c.create_time, tasks.c.begin_process_time)


def _claim_statement(task_types: tuple[str, ...] | None):
    """Lease the WAITING task of highest priority, oldest first; SKIP LOCKED on PostgreSQL, so
    concurrent claims take different tasks without waiting (SQLite ignores the clause: its single
    writer serialises claims)."""
    waiting = sa.select(tasks.c.seq).where(tasks.c.status == WAITING)
    if task_types:  # our own type names (letters only), written into the SQL compiled once
        assert all(kind.isalpha() for kind in task_types)
        waiting = waiting.where(tasks.c.task_type.in_([sa.literal_column(f"'{kind}'") for kind in task_types]))
    first = (waiting.order_by(tasks.c.priority.desc(), tasks.c.seq).limit(1)
             .with_for_update(skip_locked=True).scalar_subquery())
    return (
        tasks.update()
        .where(tasks.c.seq == first, tasks.c.status == WAITING)
        .values(status=PROCESSING, attempt=tasks.c.attempt + 1, worker=sa.bindparam("worker"),
                lease_until_ms=sa.bindparam("lease_until"),
                begin_process_time=sa.func.coalesce(tasks.c.begin_process_time, sa.bindparam("begin_time")))
        .returning(*_CLAIMED)
    )


_RENEW = (
    sa.update(tasks)
    .where(tasks.c.task_id == sa.bindparam("task_id"), tasks.c.attempt == sa.bindparam("attempt"),
           tasks.c.status == PROCESSING)
    .values(lease_until_ms=sa.bindparam("lease_until"),
            progress=sa.func.coalesce(sa.bindparam("progress", type_=sa.Integer), tasks.c.progress))
)


def _finish(names: tuple[str, ...], expired_only: bool):
    """FINISH, setting the columns ``names`` from parameters of the same names, while the lease
    ``(task_id, attempt)`` holds (and, for the reaper, has run out)."""
    where = [tasks.c.task_id == sa.bindparam("held_task_id"), tasks.c.attempt == sa.bindparam("held_attempt"),
             tasks.c.status == PROCESSING]
    if expired_only:
        where.append(tasks.c.lease_until_ms < sa.bindparam("now"))
    values = {name: sa.bindparam(f"new_{name}", type_=tasks.c[name].type) for name in names}
    return tasks.update().where(*where).values(status=FINISH, lease_until_ms=sa.null(), worker=sa.null(), **values)


def _finish_inserting(names: tuple[str, ...], expired_only: bool,
                      rows: tuple[tuple[sa.Table, tuple[str, ...], bool], ...]):
    """PostgreSQL: ``_finish`` and, only if it FINISHed the task, inserts of one row into each
    table (columns from parameters ``row<i>_<column>``, and a NOTIFY with ``notify<i>_channel``
    and ``notify<i>_payload`` where asked), as one statement: one round trip, atomic in
    autocommit. Returns one row: (tasks finished, rows notified)."""
    finished = _finish(names, expired_only).returning(tasks.c.task_id).cte("finished")
    done = sa.select(sa.func.count()).select_from(finished).scalar_subquery()
    notified, inserts = [], []
    for index, (table, columns, notify) in enumerate(rows):
        source = sa.select(*(sa.bindparam(f"row{index}_{column}", type_=table.c[column].type) for column in columns))
        insert = table.insert().from_select(list(columns), source.select_from(finished))
        if notify:
            inserted = insert.returning(sa.literal(1).label("one")).cte(f"inserted{index}")
            channel = sa.bindparam(f"notify{index}_channel", type_=sa.String)
            payload = sa.bindparam(f"notify{index}_payload", type_=sa.String)
            notified.append(sa.select(sa.func.count(sa.func.pg_notify(channel, payload))).select_from(inserted)
                            .scalar_subquery())
        else:
            inserts.append(insert.cte(f"inserted{index}"))
    statement = sa.select(done, *notified) if notified else sa.select(done)
    return statement.add_cte(*inserts) if inserts else statement


def _held(task_id: str, attempt: int):
    """The WHERE clause of every statement a lease holder makes: its token still holds."""
    return sa.and_(tasks.c.task_id == task_id, tasks.c.attempt == attempt, tasks.c.status == PROCESSING)


class TaskQueue:
    def __init__(self, db: Database, *, lease_seconds: float = 60.0):
        self._db = db
        self.lease_ms = int(lease_seconds * 1000)
        self._work = threading.Condition()
        self._signals = 0
        self._claims: dict = {}  # task types -> compiled claim statement
        self._renew = db.compile(_RENEW)
        self._finishes: dict = {}  # (value names, expired_only[, inserted rows' shape]) -> compiled finish
        self._listening = False
        self._announce = None if db.is_sqlite else db.compile(
            sa.select(sa.func.pg_notify(sa.literal(TASKS_CHANNEL), sa.literal(""))))

    # -- wake-up ------------------------------------------------------------------------------

    def notify(self) -> None:
        """A task became WAITING (call after the commit): wake waiting workers here and, on
        PostgreSQL, in every process."""
        self.wake_local()
        if self._announce is None:
            return
        try:
            with self._db.single_write() as cursor:
                self._announce.run(cursor)
        except Exception:  # noqa: BLE001 - the task is committed; other workers' polls find it
            logger.warning("NOTIFY of a new task failed; other processes find it by polling", exc_info=True)

    def wake_local(self) -> None:
        """Wake this process's waiting workers (a notification, or a draining worker's own slots)."""
        with self._work:
            self._signals += 1
            self._work.notify_all()

    def wait(self, seen: int, timeout: float) -> int:
        """Wait until ``notify`` is called after ``seen`` (a value this returned), in any process
        on PostgreSQL, or ``timeout``."""
        if not self._listening:
            self._listening = True
            self._db.listen(TASKS_CHANNEL, lambda _payload: self.wake_local())
        with self._work:
            if self._signals == seen:
                self._work.wait(timeout)
            return self._signals

    # -- the lease holder's statements --------------------------------------------------------

    def claim(self, worker: str, begin_time: str, task_types: tuple[str, ...] | None = None) -> ClaimedTask | None:
        """The next task for ``worker``, leased, or None when there is none (one statement)."""
        statement = self._claims.get(task_types)
        if statement is None:
            statement = self._claims[task_types] = self._db.compile(_claim_statement(task_types))
        with self._db.single_write() as cursor:
            row = statement.run(cursor, {"worker": worker, "begin_time": begin_time,
                                         "lease_until": now_ms() + self.lease_ms}).fetchone()
        return ClaimedTask(*row) if row is not None else None

    def renew(self, task_id: str, attempt: int, progress: int | None = None) -> bool:
        """Extend the lease (and record ``progress``); False when the lease is lost."""
        with self._db.single_write() as cursor:
            return self._renew.run(cursor, {"task_id": task_id, "attempt": attempt, "progress": progress,
                                            "lease_until": now_ms() + self.lease_ms}).rowcount == 1

    def finish(self, task_id: str, attempt: int, values: dict,
               also: Callable[[sa.Connection], None] | None = None, *, expired_only: bool = False,
               inserts: tuple[RowInsert, ...] = ()) -> bool:
        """FINISH with ``values`` (err_code, message, output, finish_time, progress), and in the
        same transaction ``also`` (writes that need reads first) or ``inserts`` (rows known
        beforehand: on PostgreSQL all of it is one statement), if the lease ``attempt`` still
        holds; False (nothing done) if not. ``expired_only`` (the reaper): only if that lease has
        also run out."""
        params = {"held_task_id": task_id, "held_attempt": attempt, "now": now_ms(),
                  **{f"new_{name}": value for name, value in values.items()}}
        if inserts and not self._db.is_sqlite:
            done = self._finish_inserting(params, tuple(values), expired_only, inserts)
        elif also is None and not inserts:  # one statement: one round trip
            with self._db.single_write() as cursor:
                return self._finish_statement(tuple(values), expired_only).run(cursor, params).rowcount == 1
        else:
            with self._db.write() as conn:
                done = conn.execute(_finish(tuple(values), expired_only), params).rowcount == 1
                if done:
                    for row in inserts:  # SQLite: no NOTIFY, and one writer at a time
                        conn.execute(row.table.insert().values(**row.values))
                    if also is not None:
                        also(conn)
        if done:
            for row in inserts:
                if row.committed is not None:
                    row.committed()
        return done

    def _finish_inserting(self, params: dict, names: tuple[str, ...], expired_only: bool,
                          inserts: tuple[RowInsert, ...]) -> bool:
        shape = tuple((row.table, tuple(row.values), row.notify is not None) for row in inserts)
        key = (names, expired_only, shape)
        statement = self._finishes.get(key)
        if statement is None:
            statement = self._finishes[key] = self._db.compile(_finish_inserting(names, expired_only, shape))
        for index, row in enumerate(inserts):
            params.update({f"row{index}_{column}": value for column, value in row.values.items()})
            if row.notify is not None:
                params[f"notify{index}_channel"], params[f"notify{index}_payload"] = row.notify
        with self._db.single_write() as cursor:
            return statement.run(cursor, params).fetchone()[0] == 1

    def _finish_statement(self, names: tuple[str, ...], expired_only: bool):
        key = (names, expired_only)
        statement = self._finishes.get(key)
        if statement is None:
            statement = self._finishes[key] = self._db.compile(_finish(names, expired_only))
        return statement

    def release(self, task_id: str, attempt: int, *, failed: bool) -> bool:
        """Back to WAITING (another worker takes it); ``failed`` counts the attempt as a failure."""
        values = {"status": WAITING, "lease_until_ms": None, "worker": None}
        if failed:
            values["failures"] = tasks.c.failures + 1
        with self._db.write() as conn:
            released = conn.execute(tasks.update().where(_held(task_id, attempt)).values(**values)).rowcount == 1
        if released:
            self.notify()
        return released

    # -- the reaper ---------------------------------------------------------------------------

    def expired(self, limit: int = 100) -> list[ExpiredTask]:
        """PROCESSING tasks whose lease has run out (their worker died or hangs)."""
        with self._db.read() as conn:
            rows = conn.execute(
                sa.select(tasks.c.task_id, tasks.c.sub_app_id, tasks.c.task_type, tasks.c.attempt, tasks.c.failures)
                .where(tasks.c.status == PROCESSING, tasks.c.lease_until_ms < now_ms())
                .order_by(tasks.c.lease_until_ms).limit(limit)).all()
        return [ExpiredTask(*row) for row in rows]

    def requeue(self, task: ExpiredTask) -> bool:
        """Return an expired task to WAITING, counting a failure, unless its lease was renewed."""
        statement = tasks.update().where(_held(task.task_id, task.attempt), tasks.c.lease_until_ms < now_ms())
        with self._db.write() as conn:
            requeued = conn.execute(statement.values(
                status=WAITING, lease_until_ms=None, worker=None, failures=tasks.c.failures + 1)).rowcount == 1
        if requeued:
            self.notify()
        return requeued

    def counts(self) -> dict[str, int]:
        with self._db.read() as conn:
            rows = conn.execute(sa.select(tasks.c.status, sa.func.count()).group_by(tasks.c.status)).all()
        return {status: count for status, count in rows}
