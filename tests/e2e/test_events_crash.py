"""No event lost, none delivered again after a confirmation or a 2xx, across a kill -9 of
``vodimg serve`` (DESIGN.md sections 6 and 8), on SQLite and PostgreSQL.

Before the kill: PULL events confirmed, pulled but not confirmed, and never pulled; PUSH events
delivered (2xx) and undelivered (the receiver answered 500). After the restart: every
unconfirmed and undelivered event arrives, and no confirmed or delivered one comes again.
"""

from __future__ import annotations

import time

import pytest

from tests.conftest import fresh_postgres_schema
from tests.e2e.receiver import Receiver
from tests.e2e.server import started
from tests.e2e.test_events_sdk import (
    COMPLETE, EVENT_ENV, LEASE_SECONDS, confirm, pull, raise_events, stored_events, task_ids, until,
)

pytestmark = pytest.mark.slow


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request):
    if request.param == "sqlite":
        yield None
        return
    with fresh_postgres_schema(request.getfixturevalue("postgres_server_url"), "vodimg_events_crash") as url:
        yield url


def _delivered_names(receiver: Receiver, path: str) -> list[str]:
    return [body[COMPLETE]["TaskId"] for body in receiver.bodies(path, answer="200")]


def test_kill_9_loses_no_event_and_repeats_no_confirmed_or_delivered_one(tmp_path, database_url):
    receiver = Receiver().start()
    server = started(tmp_path / "data", database_url=database_url, extra_args=("--engine-processes", "1"),
                     extra_env=EVENT_ENV)
    try:
        puller, pusher = server.new_tenant(), server.new_tenant()
        # PULL: 3 confirmed, 3 pulled and not confirmed, 2 never pulled.
        raise_events(server, puller.sub_app_id, [f"p{i}" for i in range(6)])
        leased = pull(puller)
        assert task_ids(leased) == [f"p{i}" for i in range(6)]
        confirm(puller, [event["EventHandle"] for event in leased[:3]])
        raise_events(server, puller.sub_app_id, ["p6", "p7"])
        # PUSH: 2 delivered, then the receiver fails and 4 stay undelivered.
        path = "/crash"
        pusher.call("ModifyEventConfig", {"SubAppId": pusher.sub_app_id, "Mode": "PUSH",
                                          "NotificationUrl": receiver.url(path)})
        raise_events(server, pusher.sub_app_id, ["d0", "d1"])
        until(lambda: stored_events(server, pusher.sub_app_id) == 0)
        receiver.script[path] = ["500"] * 1000
        raise_events(server, pusher.sub_app_id, [f"u{i}" for i in range(4)])
        until(lambda: {body[COMPLETE]["TaskId"] for body in receiver.bodies(path, answer="500")} >= {"u0", "u1", "u2", "u3"})

        server.process.kill()  # kill -9
        server.process.wait()
        server.process = None
        receiver.script[path] = []  # the receiver is well again
        server.start()

        until(lambda: stored_events(server, pusher.sub_app_id) == 0, timeout=30)
        time.sleep(1.0)
        assert sorted(_delivered_names(receiver, path)) == ["d0", "d1", "u0", "u1", "u2", "u3"]

        time.sleep(LEASE_SECONDS)  # the unconfirmed leases of before the kill run out
        again = pull(puller)
        assert sorted(task_ids(again)) == ["p3", "p4", "p5", "p6", "p7"]
        confirm(puller, [event["EventHandle"] for event in again])
        assert stored_events(server, puller.sub_app_id) == 0
    finally:
        server.stop()
        server.close_accounts()
        receiver.stop()
