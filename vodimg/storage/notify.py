"""Cross-process wake-ups on PostgreSQL: LISTEN/NOTIFY (DESIGN.md sections 5, 6 and 8).

Senders NOTIFY inside the transaction that wrote the row (PostgreSQL delivers a notification only
when that transaction commits, and drops it on a rollback), or right after the commit. Each
process has one listener connection per ``Database`` (``Database.listen``): a thread that LISTENs
on the subscribed channels and calls the subscribers' callbacks with each payload.

Notifications are a hint, never the record: the rows are. A listener whose connection breaks
(PostgreSQL restarting, a network cut) reconnects with backoff and then calls every callback with
``None`` ("something may have been missed"); meanwhile the waiters' poll intervals find the rows.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

logger = logging.getLogger("vodimg.notify")

TASKS_CHANNEL = "vodimg_tasks"  # payload: empty (a task became WAITING)
EVENTS_CHANNEL = "vodimg_events"  # payload: the SubAppId of the new event
RECONNECT_SECONDS = (0.1, 0.2, 0.5, 1.0, 2.0)  # backoff between reconnection attempts, then the last
WAKE_CHECK_SECONDS = 0.25  # how often the listener thread looks for new channels or a stop


class PgListener:
    """One LISTEN connection (made by ``connect()``, a psycopg 3 connection) and its thread."""

    def __init__(self, connect: Callable[[], object]):
        self._connect = connect
        self._lock = threading.Lock()
        self._callbacks: dict[str, list[Callable[[str | None], None]]] = {}
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._connection = None
        self.connected = threading.Event()  # set while LISTENing (tests wait for it)

    def subscribe(self, channel: str, callback: Callable[[str | None], None]) -> None:
        """Call ``callback(payload)`` for every notification on ``channel`` (``None`` after a
        reconnection); starts the listener thread on first use."""
        with self._lock:
            self._callbacks.setdefault(channel, []).append(callback)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="vodimg-listen", daemon=True)
                self._thread.start()

    def close(self) -> None:
        """Stop listening (the thread closes its connection within ``WAKE_CHECK_SECONDS``)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(WAKE_CHECK_SECONDS + 2.0)

    def _drop_connection(self) -> None:
        connection = self._connection
        if connection is not None:
            try:
                connection.close()
            except Exception:  # noqa: BLE001 - it is going away either way
                pass

    def _run(self) -> None:
        failures = 0
        first = True
        while not self._stopping.is_set():
            try:
                self._listen()
                if not first:  # what was sent while we were away is lost: everyone looks once
                    self._deliver_all(None)
                first, failures = False, 0
                self._receive()
            except Exception as error:  # noqa: BLE001 - reconnect: the database may be restarting
                self.connected.clear()
                if self._stopping.is_set():
                    break
                delay = RECONNECT_SECONDS[min(failures, len(RECONNECT_SECONDS) - 1)]
                failures += 1
                first = False
                logger.warning("LISTEN connection lost (%s); reconnecting in %g s",
                               str(error).splitlines()[0] if str(error) else type(error).__name__, delay)
                self._stopping.wait(delay)
            finally:
                with self._lock:
                    self._drop_connection()
                    self._connection = None

    def _listen(self) -> None:
        connection = self._connect()
        connection.autocommit = True
        with self._lock:
            self._connection = connection
        self._listening: set[str] = set()
        self._listen_new()
        self.connected.set()

    def _listen_new(self) -> None:
        """LISTEN on the channels subscribed since the last look."""
        with self._lock:
            new = set(self._callbacks) - self._listening
        for channel in sorted(new):
            self._connection.execute(f'LISTEN "{channel}"')
            self._listening.add(channel)

    def _receive(self) -> None:
        while not self._stopping.is_set():
            for notification in self._connection.notifies(timeout=WAKE_CHECK_SECONDS):
                self._deliver(notification.channel, notification.payload)
            self._listen_new()

    def _deliver(self, channel: str, payload: str | None) -> None:
        with self._lock:
            callbacks = list(self._callbacks.get(channel, ()))
        for callback in callbacks:
            try:
                callback(payload)
            except Exception:  # noqa: BLE001 - one subscriber's bug must not stop the others
                logger.exception("wake-up callback for %s failed", channel)

    def _deliver_all(self, payload: str | None) -> None:
        with self._lock:
            channels = list(self._callbacks)
        for channel in channels:
            self._deliver(channel, payload)
