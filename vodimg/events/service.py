"""The event configuration and PULL delivery (DESIGN.md section 6).

- ``describe_config``/``modify_config``: each application's Mode (PULL by default), NotificationUrl,
  SignKey (stored, never shown) and switches; Modify changes only what it is given.
- ``pull``: one transaction leases up to 16 ready events of the application for the lease time
  (30 s), each with a fresh EventHandle (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so concurrent
  PullEvents never get the same event; the single writer on SQLite). With nothing ready it answers
  ``WaitThenRetry``: the wire layer parks the request on its event loop until an event of the
  application is committed in this process (``SIGNAL``) or the poll interval passes (events of
  other processes), then calls again; after the wait time (5 s) it answers an empty EventSet.
- ``confirm``: removes the events of the given handles in one transaction, or none of them when
  one handle is unknown, of another application or past its lease.

An application in PUSH mode gets its events by callback (``push.py``): PullEvents hands out none.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from functools import lru_cache

import orjson
import sqlalchemy as sa

from vodimg.domain.clock import iso_utc, utc_now
from vodimg.errors import ApiError
from vodimg.events import SIGNAL, SWITCH_COLUMNS
from vodimg.events.signal import EventSignal
from vodimg.netguard import UrlPolicy, UrlRefused, check_url
from vodimg.queue import now_ms
from vodimg.spec import api_spec
from vodimg.storage.db import Database
from vodimg.storage.schema import event_config, events
from vodimg.waiting import WaitThenRetry

MAX_EVENTS_PER_PULL = 16  # VOD: "API 每次最多可以获取16个事件通知"
PULL, PUSH = "PULL", "PUSH"
HANDLE_TOKEN_BYTES = 16


@dataclass(frozen=True)
class EventSettings:
    lease_ms: int = 30_000
    wait_seconds: float = 5.0
    poll_seconds: float = 0.5


@dataclass(frozen=True)
class EventConfig:
    mode: str = PULL
    notification_url: str = ""
    sign_key: str = ""
    switches: tuple[bool, bool, bool] = (False, False, False)  # in SWITCH_COLUMNS order


def read_config(conn: sa.Connection, sub_app_id: int) -> EventConfig:
    """The application's event configuration (the defaults when it has none)."""
    row = conn.execute(sa.select(event_config).where(event_config.c.sub_app_id == sub_app_id)).first()
    if row is None:
        return EventConfig()
    switches = tuple(bool(row._mapping[column.name]) for column in SWITCH_COLUMNS.values())
    return EventConfig(row.mode, row.notification_url, row.sign_key, switches)


@lru_cache(maxsize=1)
def _null_members() -> dict:
    """EventContent members the spec says are always present, null when not of the event's type."""
    members = api_spec()["objects"]["EventContent"]["members"]
    return {m["name"]: None for m in members if m.get("output_required") and m.get("value_allowed_null")}


def event_content(stored: str) -> dict:
    """The EventContent (without EventHandle) of an event row's ``content``."""
    return {**_null_members(), **orjson.loads(stored)}


class EventService:
    def __init__(self, db: Database, url_policy: UrlPolicy, settings: EventSettings = EventSettings(),
                 signal: EventSignal = SIGNAL):
        self._db = db
        self._url_policy = url_policy
        self.settings = settings
        self._signal = signal

    # -- configuration ----------------------------------------------------------------------------

    def describe_config(self, sub_app_id: int) -> dict:
        with self._db.read() as conn:
            config = read_config(conn, sub_app_id)
        answer = {"Mode": config.mode, "NotificationUrl": config.notification_url}
        for name, on in zip(SWITCH_COLUMNS, config.switches):
            answer[name] = "ON" if on else "OFF"
        return answer

    def modify_config(self, sub_app_id: int, params: dict) -> None:
        """Apply the members ``params`` gives (validated by the spec rules); the rest stay."""
        url = params.get("NotificationUrl")
        if url:
            self._check_url(url)
        with self._db.write() as conn:
            self._db.lock(conn, f"vodimg.event_config.{sub_app_id}")
            old = read_config(conn, sub_app_id)
            switches = tuple(
                params[name] == "ON" if name in params else on
                for name, on in zip(SWITCH_COLUMNS, old.switches))
            new = EventConfig(params.get("Mode", old.mode),
                              old.notification_url if url is None else url,
                              params.get("SignKey", old.sign_key), switches)
            if new.mode == PUSH and not new.notification_url:
                raise ApiError("InvalidParameterValue",
                               "NotificationUrl is required in PUSH mode: give the http(s) URL that "
                               "receives the event callbacks.")
            values = {"mode": new.mode, "notification_url": new.notification_url, "sign_key": new.sign_key,
                      "update_time": iso_utc(utc_now()),
                      **{column.name: on for column, on in zip(SWITCH_COLUMNS.values(), new.switches)}}
            where = event_config.c.sub_app_id == sub_app_id
            if conn.execute(event_config.update().where(where).values(**values)).rowcount == 0:
                conn.execute(event_config.insert().values(sub_app_id=sub_app_id, **values))

    def _check_url(self, url: str) -> None:
        try:
            check_url(url, self._url_policy)
        except UrlRefused as refused:
            raise ApiError("InvalidParameterValue", f"NotificationUrl refused: {refused}") from None

    # -- PULL -------------------------------------------------------------------------------------

    def pull(self, sub_app_id: int):
        """PullEvents: ``{"EventSet": [...]}``, or WaitThenRetry while nothing is ready."""
        return self._pull(sub_app_id, time.monotonic() + self.settings.wait_seconds, look_first=False)

    def _pull(self, sub_app_id: int, deadline: float, look_first: bool):
        seen = self._signal.generation(sub_app_id)  # before looking: a later commit ends the wait
        if look_first and not self._any_ready(sub_app_id):
            leased = []
        else:
            leased = self._lease(sub_app_id)
        if leased or time.monotonic() >= deadline:
            return {"EventSet": leased}

        async def wait() -> None:
            remaining = max(0.0, deadline - time.monotonic())
            woken = await self._signal.wait(sub_app_id, seen, min(self.settings.poll_seconds, remaining))
            holder["woken"] = woken

        holder = {"woken": False}
        # After a wake-up of this process: lease at once. After a poll timeout: a read first, so
        # idle long polls cost one read per interval, not a write.
        return WaitThenRetry(wait, lambda: self._pull(sub_app_id, deadline, look_first=not holder["woken"]))

    def _any_ready(self, sub_app_id: int) -> bool:
        """Whether a lease would find something: a ready event, and the application in PULL mode."""
        pushing = sa.exists().where(event_config.c.sub_app_id == sub_app_id, event_config.c.mode == PUSH)
        with self._db.read() as conn:
            return conn.execute(sa.select(events.c.seq).where(
                events.c.sub_app_id == sub_app_id, events.c.ready_at_ms <= now_ms(), ~pushing)
                .limit(1)).first() is not None

    def _lease(self, sub_app_id: int) -> list[dict]:
        now = now_ms()
        token = secrets.token_hex(HANDLE_TOKEN_BYTES)
        ready = (sa.select(events.c.seq)
                 .where(events.c.sub_app_id == sub_app_id, events.c.ready_at_ms <= now)
                 .order_by(events.c.ready_at_ms, events.c.seq).limit(MAX_EVENTS_PER_PULL)
                 .with_for_update(skip_locked=True).correlate(None))
        lease = (events.update().where(events.c.seq.in_(ready.scalar_subquery()))
                 .values(handle=sa.literal(token, sa.String) + sa.cast(events.c.seq, sa.String),
                         ready_at_ms=now + self.settings.lease_ms, attempts=events.c.attempts + 1)
                 .returning(events.c.seq, events.c.handle, events.c.content))
        with self._db.write() as conn:
            if read_config(conn, sub_app_id).mode != PULL:
                return []
            rows = conn.execute(lease).all()
        return [{"EventHandle": handle, **event_content(content)} for _seq, handle, content in sorted(rows)]

    def confirm(self, sub_app_id: int, handles: list[str]) -> None:
        """ConfirmEvents: all of ``handles`` removed, or (ApiError naming the first bad one) none."""
        wanted = list(dict.fromkeys(handles))
        if not wanted:
            return
        with self._db.write() as conn:
            rows = conn.execute(
                sa.select(events.c.seq, events.c.handle, events.c.ready_at_ms)
                .where(events.c.handle.in_(wanted), events.c.sub_app_id == sub_app_id)
                .with_for_update()).all()
            found = {handle: (seq, ready_at) for seq, handle, ready_at in rows}
            now = now_ms()
            for index, handle in enumerate(handles):
                if handle not in found:
                    raise ApiError("InvalidParameterValue",
                                   f"EventHandles[{index}] {_shown(handle)} is not the handle of an event this "
                                   f"application pulled, or it was confirmed already; nothing was confirmed.")
                if found[handle][1] <= now:
                    raise ApiError("InvalidParameterValue",
                                   f"EventHandles[{index}] {_shown(handle)} expired: an event must be confirmed "
                                   f"within {self.settings.lease_ms / 1000:g} s of PullEvents, and it will be "
                                   f"pulled again with a new handle; nothing was confirmed.")
            conn.execute(events.delete().where(events.c.seq.in_([seq for seq, _ in found.values()])))


def _shown(handle: str) -> str:
    text = repr(handle)
    return text if len(text) <= 80 else text[:77] + "..."
