"""Events: the outbox rows written in the transaction of the change they report (DESIGN.md 6).

``insert_event`` is the one way to raise an event; delivery (PullEvents/ConfirmEvents and PUSH
callbacks) reads the ``events`` table.
"""

from __future__ import annotations

import orjson
import sqlalchemy as sa

from vodimg.queue import now_ms
from vodimg.storage.schema import events


def insert_event(conn: sa.Connection, sub_app_id: int, event_type: str, content: dict) -> None:
    """Insert an event of ``event_type`` whose EventContent (without EventHandle) is ``content``."""
    moment = now_ms()
    conn.execute(events.insert().values(
        sub_app_id=sub_app_id, event_type=event_type, content=orjson.dumps(content).decode(),
        created_ms=moment, ready_at_ms=moment, handle=None, attempts=0))
