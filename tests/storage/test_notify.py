"""Cross-process wake-ups on PostgreSQL (LISTEN/NOTIFY) and reconnection after lost connections.

Two ``Database`` objects stand for two processes: each has its own pool and its own listener
connection, so a wake-up can only travel through PostgreSQL. The poll intervals are set far
above the times asserted, so a pass proves the notification (not a poll) woke the waiter.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
import sqlalchemy as sa

from vodimg.domain.accounts import AccountService
from vodimg.events import insert_event
from vodimg.events.service import EventService, EventSettings
from vodimg.events.signal import EventSignal
from vodimg.netguard import UrlPolicy
from vodimg.queue import TaskQueue
from vodimg.storage.db import Database
from vodimg.waiting import WaitThenRetry

pytestmark = pytest.mark.postgres

LONG_POLL = 30.0  # seconds: a waiter woken well before this was woken by a notification
WOKEN_WITHIN = 3.0


@pytest.fixture
def two_processes(postgres_url):
    first, second = Database(postgres_url), Database(postgres_url)
    first.migrate()
    yield first, second
    first.dispose()
    second.dispose()


def _listening(db: Database) -> None:
    assert db._listener is not None and db._listener.connected.wait(10), "the listener did not connect"
    time.sleep(0.3)  # LISTEN of a channel subscribed after connecting is issued within 0.25 s


def test_a_task_submitted_by_another_process_wakes_a_waiting_worker_at_once(two_processes):
    waiting_db, submitting_db = two_processes
    waiting, submitting = TaskQueue(waiting_db), TaskQueue(submitting_db)
    seen = waiting.wait(0, 0)  # subscribes to the tasks channel
    _listening(waiting_db)
    woken = {}

    def worker_slot():
        started = time.monotonic()
        woken["value"] = waiting.wait(seen, LONG_POLL)
        woken["after"] = time.monotonic() - started

    slot = threading.Thread(target=worker_slot)
    slot.start()
    time.sleep(0.2)
    submitting.notify()
    slot.join(LONG_POLL + 5)
    assert woken["value"] != seen
    assert woken["after"] < WOKEN_WITHIN


def test_an_event_written_by_another_process_wakes_a_waiting_pull_at_once(two_processes):
    reading_db, writing_db = two_processes
    app = AccountService(reading_db).create_account()["SubAppId"]
    service = EventService(reading_db, UrlPolicy(), EventSettings(wait_seconds=LONG_POLL, poll_seconds=LONG_POLL),
                           signal=EventSignal())  # a signal of its own: this process's commits cannot wake it
    _listening(reading_db)
    first = service.pull(app)
    assert isinstance(first, WaitThenRetry)

    def write_event():
        time.sleep(0.3)
        with writing_db.write() as conn:
            insert_event(conn, app, "ProcessImageAsyncCompleteEvent", {"EventType": "ProcessImageAsyncCompleteEvent",
                                                                       "ProcessImageAsyncCompleteEvent": {"TaskId": "t1"}})

    writer = threading.Thread(target=write_event)
    started = time.monotonic()
    writer.start()
    asyncio.run(first.wait())
    elapsed = time.monotonic() - started
    writer.join()
    answer = first.retry()
    assert elapsed < WOKEN_WITHIN
    assert [event["ProcessImageAsyncCompleteEvent"]["TaskId"] for event in answer["EventSet"]] == ["t1"]


def test_a_rolled_back_event_sends_no_notification(two_processes):
    reading_db, writing_db = two_processes
    app = AccountService(reading_db).create_account()["SubAppId"]
    heard = []
    reading_db.listen("vodimg_events", heard.append)
    _listening(reading_db)
    with pytest.raises(RuntimeError):
        with writing_db.write() as conn:
            insert_event(conn, app, "X", {})
            raise RuntimeError("roll back")
    time.sleep(0.5)
    with writing_db.write() as conn:  # the same, committed: heard
        insert_event(conn, app, "X", {})
    deadline = time.monotonic() + WOKEN_WITHIN
    while not heard and time.monotonic() < deadline:
        time.sleep(0.05)
    assert heard == [str(app)]


def _pooled_backends(db: Database, count: int) -> list[int]:
    """Open ``count`` pooled connections at once and return them to the pool; their backend pids."""
    fairies = [db.engine.raw_connection() for _ in range(count)]
    pids = [fairy.driver_connection.info.backend_pid for fairy in fairies]
    for fairy in fairies:
        fairy.close()
    return pids


def test_the_listener_reconnects_tells_subscribers_and_hears_again(two_processes, postgres_url):
    listening_db, sending_db = two_processes
    heard = []
    listening_db.listen("vodimg_tasks", heard.append)
    _listening(listening_db)
    backend = listening_db._listener._connection.info.backend_pid
    with sending_db.write() as conn:
        conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})
    deadline = time.monotonic() + 10
    while None not in heard and time.monotonic() < deadline:  # reconnected: "something may be missed"
        time.sleep(0.05)
    assert None in heard
    assert listening_db._listener.connected.wait(5)
    TaskQueue(sending_db).notify()
    deadline = time.monotonic() + WOKEN_WITHIN
    while "" not in heard and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "" in heard


def test_pooled_connections_lost_under_the_pool_are_replaced(two_processes):
    db, admin = two_processes
    queue = TaskQueue(db)
    pids = _pooled_backends(db, 3)  # kill this pool's connections under it (as a restart does)
    with admin.write() as conn:
        for pid in pids:
            conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    failures = 0
    for _ in range(5):
        try:
            queue.claim("w", "2026-01-01T00:00:00Z")
            queue.counts()
        except Exception:  # noqa: BLE001 - at most the first use of a dead connection fails
            failures += 1
    assert failures <= 1  # the first dead connection fails; the pool then replaces the others
    assert queue.claim("w", "2026-01-01T00:00:00Z") is None and queue.counts() == {}
