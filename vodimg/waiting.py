"""The answer of an action that has nothing to answer yet (a long poll such as PullEvents).

An action returns ``WaitThenRetry`` instead of its response fields; the wire layer then awaits
``wait()`` on its event loop, holding no thread and no database connection, and calls
``retry()`` where it ran the action (inline, on the writer thread or on the pool), answering what
that returns, or waiting again if it is another ``WaitThenRetry``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class WaitThenRetry:
    wait: Callable[[], Awaitable[object]]
    retry: Callable[[], object]  # returns the response fields or another WaitThenRetry
