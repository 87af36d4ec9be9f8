"""Events: the outbox rows written in the transaction of the change they report (DESIGN.md 6).

``insert_event`` is the one way to raise an event; it also wakes this process's waiting readers
once the transaction commits. Delivery reads the ``events`` table: PullEvents/ConfirmEvents and
the configuration in ``service.py``, PUSH callbacks in ``push.py``.
"""

from __future__ import annotations

import functools

import orjson
import sqlalchemy as sa

from vodimg.events.signal import EventSignal
from vodimg.queue import now_ms
from vodimg.storage.db import Database, RowInsert, after_commit
from vodimg.storage.notify import EVENTS_CHANNEL
from vodimg.storage.schema import event_config, events

# Unconfirmed or undelivered events are kept this long (VOD: 4 days), then the sweeper removes them.
EVENT_RETENTION_MS = 4 * 86_400_000

# This process's wake-ups for event readers (events written here, and on PostgreSQL by any process).
SIGNAL = EventSignal()

# The event-configuration switches, by their API names.
SWITCH_COLUMNS = {
    "UploadMediaCompleteEventSwitch": event_config.c.upload_media_complete,
    "DeleteMediaCompleteEventSwitch": event_config.c.delete_media_complete,
    "PersistenceCompleteEventSwitch": event_config.c.persistence_complete,
}


def insert_event(conn: sa.Connection, sub_app_id: int, event_type: str, content: dict) -> None:
    """Insert an event of ``event_type`` whose EventContent (without EventHandle) is ``content``,
    in the transaction of ``conn`` (a ``Database.write()`` one); readers are woken after its commit."""
    row = event_row(sub_app_id, event_type, content)
    conn.execute(events.insert().values(**row.values))
    if conn.dialect.name == "postgresql":  # delivered to every listener when this transaction commits
        conn.execute(sa.select(sa.func.pg_notify(*row.notify)))
    after_commit(conn, row.committed)


def event_row(sub_app_id: int, event_type: str, content: dict) -> RowInsert:
    """The event ``insert_event`` writes, as a row for a statement that writes it with others
    (``TaskQueue.finish``), with its NOTIFY and its same-process wake-up."""
    moment = now_ms()
    values = dict(sub_app_id=sub_app_id, event_type=event_type, content=orjson.dumps(content).decode(),
                  created_ms=moment, ready_at_ms=moment, handle=None, attempts=0)
    return RowInsert(events, values, (EVENTS_CHANNEL, str(sub_app_id)), functools.partial(SIGNAL.notify, sub_app_id))


def listen_for_events(db: Database, signal: EventSignal | None = None) -> None:
    """Wake ``signal``'s (default ``SIGNAL``) waiters for events committed by other processes
    (PostgreSQL LISTEN/NOTIFY; nothing on SQLite). Once per database and signal."""
    signal = SIGNAL if signal is None else signal
    subscribed = db.__dict__.setdefault("vodimg_event_listeners", set())
    if id(signal) in subscribed:
        return
    subscribed.add(id(signal))

    def woken(payload: str | None) -> None:
        if payload:
            signal.notify(int(payload))
        else:
            signal.notify_all()

    db.listen(EVENTS_CHANNEL, woken)


def switch_on(conn: sa.Connection, sub_app_id: int, switch: str) -> bool:
    """Whether the application's event configuration has ``switch`` (an API name, e.g.
    ``UploadMediaCompleteEventSwitch``) ON; OFF for an application without a configuration."""
    column = SWITCH_COLUMNS[switch]
    return bool(conn.execute(sa.select(column).where(event_config.c.sub_app_id == sub_app_id)).scalar())
