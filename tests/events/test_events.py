"""The events package on SQLite and PostgreSQL without HTTP in front: wake-ups after commit,
retention, and PUSH delivery by two delivery loops at once against a real receiver on loopback."""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time

import orjson
import pytest
import sqlalchemy as sa

from vodimg.domain.accounts import AccountService
from vodimg.events import EVENT_RETENTION_MS, insert_event
from vodimg.events.push import PushDelivery, PushSettings, retry_delay, signed_body
from vodimg.events.service import EventService, EventSettings
from vodimg.events.signal import EventSignal
from vodimg.netguard import UrlPolicy
from vodimg.netguard.addresses import parse_allow
from vodimg.queue import now_ms
from vodimg.storage.db import after_commit
from vodimg.storage.schema import events
from vodimg.waiting import WaitThenRetry
from vodimg.worker.maintenance import Maintenance
from tests.e2e.receiver import Receiver

COMPLETE = "ProcessImageAsyncCompleteEvent"


@pytest.fixture
def app(database) -> int:
    return AccountService(database).create_account()["SubAppId"]


def _raise(database, app: int, names: list[str]) -> None:
    with database.write() as conn:
        for name in names:
            insert_event(conn, app, COMPLETE, {"EventType": COMPLETE, COMPLETE: {"TaskId": name}})


def _count(database) -> int:
    with database.read() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(events)).scalar()


def test_after_commit_runs_after_the_commit_and_never_after_a_rollback(database, app):
    seen = []

    def visible_now() -> None:  # a reader in another connection sees the row when woken
        seen.append(_count(database))

    with database.write() as conn:
        insert_event(conn, app, COMPLETE, {"EventType": COMPLETE})
        after_commit(conn, visible_now)
    assert seen == [1]
    with pytest.raises(RuntimeError):
        with database.write() as conn:
            insert_event(conn, app, COMPLETE, {"EventType": COMPLETE})
            after_commit(conn, visible_now)
            raise RuntimeError("rolled back")
    with database.write() as conn:
        pass
    assert seen == [1] and _count(database) == 1


def test_the_signal_wakes_a_waiter_of_the_application_from_another_thread():
    signal = EventSignal()

    async def scenario():
        seen = signal.generation(7)
        threading.Timer(0.05, signal.notify, (8,)).start()  # another application: no wake-up
        threading.Timer(0.15, signal.notify, (7,)).start()
        started = time.monotonic()
        woken = await signal.wait(7, seen, 5.0)
        return woken, time.monotonic() - started

    woken, waited = asyncio.run(scenario())
    assert woken and 0.1 < waited < 1.0
    stale = signal.generation(7) - 1  # committed before the wait began: no waiting at all
    assert asyncio.run(signal.wait(7, stale, 5.0)) is True
    assert asyncio.run(signal.wait(9, signal.generation(9), 0.05)) is False


def test_pull_answers_wait_then_retry_and_the_retry_gets_the_event(database, app):
    service = EventService(database, UrlPolicy(), EventSettings(wait_seconds=2.0, poll_seconds=0.05),
                           signal=EventSignal())
    first = service.pull(app)
    assert isinstance(first, WaitThenRetry)
    _raise(database, app, ["late"])
    asyncio.run(first.wait())
    answer = first.retry()
    assert [event[COMPLETE]["TaskId"] for event in answer["EventSet"]] == ["late"]
    assert answer["EventSet"][0]["FileUploadEvent"] is None  # members of other types: null


def test_the_sweeper_removes_events_older_than_4_days(database, app):
    _raise(database, app, ["old", "new"])
    with database.write() as conn:
        conn.execute(events.update().where(events.c.content.contains('"old"'))
                     .values(created_ms=now_ms() - EVENT_RETENTION_MS - 1000))
    maintenance = Maintenance(database, None, None, {}, session_window_ms=1000)
    assert maintenance.sweep()["events"] == 1
    with database.read() as conn:
        assert [orjson.loads(c)[COMPLETE]["TaskId"] for c in conn.execute(sa.select(events.c.content)).scalars()] == ["new"]


def test_backoff_doubles_from_the_first_retry_up_to_10_minutes():
    settings = PushSettings()
    assert [retry_delay(settings, attempts) for attempts in range(1, 9)] == [5, 10, 20, 40, 80, 160, 320, 600]
    assert retry_delay(settings, 500) == 600


def test_the_body_is_signed_with_md5_of_key_and_expiry():
    body = orjson.loads(signed_body(orjson.dumps({"EventType": COMPLETE}).decode(), "Key1", 1_700_000_000.5))
    assert body["T"] == 1_700_000_600
    assert body["Sign"] == hashlib.md5(b"Key11700000600").hexdigest()
    assert "Sign" not in orjson.loads(signed_body('{"EventType": "x"}', "", 0.0))


def test_two_delivery_loops_on_one_database_post_each_event_exactly_once(database, app, database_url):
    receiver = Receiver().start()
    service = EventService(database, UrlPolicy(allow=parse_allow("127.0.0.2/32")))
    service.modify_config(app, {"Mode": "PUSH", "NotificationUrl": receiver.url("/both")})
    names = [f"n{i:03d}" for i in range(150)]
    _raise(database, app, names)
    policy = UrlPolicy(allow=parse_allow("127.0.0.2/32"))
    loops = [PushDelivery(database, policy, PushSettings(concurrency=8, poll_seconds=0.05), signal=EventSignal())
             for _ in range(2)]
    for loop in loops:
        loop.start()
    try:
        deadline = time.monotonic() + 60
        while _count(database) and time.monotonic() < deadline:
            time.sleep(0.05)
        got = [body[COMPLETE]["TaskId"] for body in receiver.bodies("/both")]
        assert sorted(got) == names  # every event once: never two posts of one event
        assert all(loop.delivered > 0 for loop in loops)  # both loops took part
    finally:
        for loop in loops:
            loop.stop(2.0)
        receiver.stop()


def test_events_of_pull_applications_wake_no_claim_and_push_ones_are_posted_at_once(database, app):
    """Every completion wakes the PUSH loop of every worker; only a PUSH application's event may
    cost it a claim (a busy worker's events are mostly PULL ones)."""
    receiver = Receiver().start()
    service = EventService(database, UrlPolicy(allow=parse_allow("127.0.0.2/32")))
    pushing = AccountService(database).create_account()["SubAppId"]
    service.modify_config(pushing, {"Mode": "PUSH", "NotificationUrl": receiver.url("/push")})
    signal = EventSignal()
    loop = PushDelivery(database, UrlPolicy(allow=parse_allow("127.0.0.2/32")), PushSettings(poll_seconds=3.0),
                        signal=signal)
    loop.start()
    try:
        time.sleep(0.3)  # the first claim has read which applications push
        before = loop.claims
        for index in range(30):  # PULL events, each woken as another process's would be
            _raise(database, app, [f"pull{index}"])
            signal.notify(app)
            time.sleep(0.01)
        assert loop.claims == before
        started = time.monotonic()
        _raise(database, pushing, ["pushed"])
        signal.notify(pushing)
        while not receiver.bodies("/push") and time.monotonic() - started < 2.0:
            time.sleep(0.01)
        assert [body[COMPLETE]["TaskId"] for body in receiver.bodies("/push")] == ["pushed"]
        assert time.monotonic() - started < 1.0  # at once, not at the next poll (3 s)
    finally:
        loop.stop(2.0)
        receiver.stop()
