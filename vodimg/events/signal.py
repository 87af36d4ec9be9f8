"""Wake-ups for readers of the events table within one process.

``notify(sub_app_id)`` is called after the commit of a transaction that wrote an event of that
application (``insert_event`` arranges it). Waiters are asyncio futures (a PullEvents request
parked on the API's event loop, the PUSH delivery loop), woken with ``call_soon_threadsafe``
from whichever thread committed. No thread waits. Events written by other processes are not
heard from PostgreSQL's NOTIFY (``listen_for_events`` in ``vodimg/events/__init__.py``); waiters
also time out and look in the database (a missed notification, SQLite).

A waiter first reads ``generation(...)``, then looks in the database, then ``wait``s with what
it read: an event committed in between bumps the generation and the wait returns at once, so no
wake-up is lost.
"""

from __future__ import annotations

import asyncio
import threading
from collections import defaultdict

ANY_APPLICATION = None  # waiters for every application's events (the PUSH delivery loop)


class EventSignal:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._generations: dict[int | None, int] = defaultdict(int)
        self._waiters: dict[int | None, set[asyncio.Future]] = defaultdict(set)

    def generation(self, sub_app_id: int | None) -> int:
        """A value to pass to ``wait``: events of ``sub_app_id`` (None: of any) committed after
        this call end the wait at once."""
        with self._lock:
            return self._generations[sub_app_id]

    def generations(self) -> dict[int | None, int]:
        """Every application's ``generation`` at once (those never notified are 0)."""
        with self._lock:
            return dict(self._generations)

    def notify(self, sub_app_id: int) -> None:
        with self._lock:
            self._generations[sub_app_id] += 1
            self._generations[ANY_APPLICATION] += 1
            woken = self._waiters.pop(sub_app_id, set()) | self._waiters.pop(ANY_APPLICATION, set())
        for future in woken:
            try:
                future.get_loop().call_soon_threadsafe(_resolve, future)
            except RuntimeError:  # that loop is closed: nobody waits any more
                pass

    def notify_all(self) -> None:
        """Something may have been missed (the listener reconnected): every waiter looks again."""
        with self._lock:
            for key in list(self._generations):
                self._generations[key] += 1
            woken = set().union(*self._waiters.values())
            self._waiters.clear()
        for future in woken:
            try:
                future.get_loop().call_soon_threadsafe(_resolve, future)
            except RuntimeError:  # that loop is closed: nobody waits any more
                pass

    async def wait(self, sub_app_id: int | None, seen: int, timeout: float) -> bool:
        """Wait until an event of ``sub_app_id`` (None: any) is committed in this process after
        ``generation`` returned ``seen``, at most ``timeout`` seconds; True when woken."""
        future = asyncio.get_running_loop().create_future()
        with self._lock:
            if self._generations[sub_app_id] != seen:
                return True
            self._waiters[sub_app_id].add(future)
        try:
            await asyncio.wait_for(future, timeout)
            return True
        except asyncio.TimeoutError:
            return False
        finally:
            with self._lock:
                waiting = self._waiters.get(sub_app_id)
                if waiting is not None:
                    waiting.discard(future)
                    if not waiting:
                        del self._waiters[sub_app_id]


def _resolve(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)
