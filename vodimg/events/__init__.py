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
from vodimg.storage.db import after_commit
from vodimg.storage.schema import event_config, events

# Unconfirmed or undelivered events are kept this long (VOD: 4 days), then the sweeper removes them.
EVENT_RETENTION_MS = 4 * 86_400_000

# This process's wake-ups for event readers (events written here; other processes poll).
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
    moment = now_ms()
    conn.execute(events.insert().values(
        sub_app_id=sub_app_id, event_type=event_type, content=orjson.dumps(content).decode(),
        created_ms=moment, ready_at_ms=moment, handle=None, attempts=0))
    after_commit(conn, functools.partial(SIGNAL.notify, sub_app_id))


def switch_on(conn: sa.Connection, sub_app_id: int, switch: str) -> bool:
    """Whether the application's event configuration has ``switch`` (an API name, e.g.
    ``UploadMediaCompleteEventSwitch``) ON; OFF for an application without a configuration."""
    column = SWITCH_COLUMNS[switch]
    return bool(conn.execute(sa.select(column).where(event_config.c.sub_app_id == sub_app_id)).scalar())
