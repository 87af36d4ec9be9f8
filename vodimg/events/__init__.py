"""Events: the outbox rows written in the transaction of the change they report (DESIGN.md 6).

``insert_event`` is the one way to raise an event; delivery (PullEvents/ConfirmEvents and PUSH
callbacks) reads the ``events`` table.
"""

from __future__ import annotations

import orjson
import sqlalchemy as sa

from vodimg.queue import now_ms
from vodimg.storage.schema import event_config, events

# The event-configuration switches, by their API names.
SWITCH_COLUMNS = {
    "UploadMediaCompleteEventSwitch": event_config.c.upload_media_complete,
    "DeleteMediaCompleteEventSwitch": event_config.c.delete_media_complete,
    "PersistenceCompleteEventSwitch": event_config.c.persistence_complete,
}


def insert_event(conn: sa.Connection, sub_app_id: int, event_type: str, content: dict) -> None:
    """Insert an event of ``event_type`` whose EventContent (without EventHandle) is ``content``."""
    moment = now_ms()
    conn.execute(events.insert().values(
        sub_app_id=sub_app_id, event_type=event_type, content=orjson.dumps(content).decode(),
        created_ms=moment, ready_at_ms=moment, handle=None, attempts=0))


def switch_on(conn: sa.Connection, sub_app_id: int, switch: str) -> bool:
    """Whether the application's event configuration has ``switch`` (an API name, e.g.
    ``UploadMediaCompleteEventSwitch``) ON; OFF for an application without a configuration."""
    column = SWITCH_COLUMNS[switch]
    return bool(conn.execute(sa.select(column).where(event_config.c.sub_app_id == sub_app_id)).scalar())
