"""Events end to end through the official SDK against ``vodimg serve`` on loopback, on SQLite and
PostgreSQL: the event configuration, PULL (PullEvents/ConfirmEvents, the long poll, the lease)
and PUSH (callbacks to a real HTTP receiver on 127.0.0.2, the only address the servers allow).

The servers shorten VOD's times so that the tests are quick: a 2 s lease instead of 30 s, PUSH
retries from 0.3 s and a 1.5 s post timeout; the PullEvents wait stays VOD's 5 s.
"""

from __future__ import annotations

import json
import threading
import time

import pytest
import sqlalchemy as sa
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.vod.v20180717 import models

from vodimg.events import insert_event
from vodimg.storage.schema import events
from tests.e2e.receiver import Receiver, sign_is_valid
from tests.e2e.cluster import backend_server
from tests.e2e.tasks import b64, create_template, small_photo_png, submit, wait_finished

pytestmark = pytest.mark.slow
LEASE_SECONDS = 2.0
WAIT_SECONDS = 5.0
EVENT_ENV = {
    "VODIMG_URL_ALLOW": "127.0.0.2/32", "VODIMG_EVENT_LEASE_SECONDS": str(LEASE_SECONDS),
    "VODIMG_EVENT_POLL_SECONDS": "0.2", "VODIMG_PUSH_RETRY_SECONDS": "0.3", "VODIMG_PUSH_TIMEOUT_SECONDS": "1.5",
}
JPEG_OUT = {"EncodeConfig": {"Format": "JPEG", "Quality": 85}}
COMPLETE = "ProcessImageAsyncCompleteEvent"


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres),
                                        pytest.param("cluster", marks=pytest.mark.postgres)])
def event_server(request, tmp_path_factory):
    with backend_server(request, tmp_path_factory, "events", EVENT_ENV) as server:
        yield server


@pytest.fixture
def tenant(event_server):
    return event_server.new_tenant()


@pytest.fixture(scope="module")
def receiver():
    started_receiver = Receiver(hang_seconds=5.0).start()
    yield started_receiver
    started_receiver.stop()


def _one_process_behaviour(server) -> None:
    """Tests of one API process's own behaviour (its 5 s waits) run on the single-server
    parameters only: the cluster parameter would only repeat their waits (test-suite time)."""
    if getattr(server, "cluster", None) is not None:
        pytest.skip("one API process's own behaviour: covered by the sqlite and postgres parameters")


def _error(call) -> TencentCloudSDKException:
    with pytest.raises(TencentCloudSDKException) as raised:
        call()
    return raised.value


def _typed(model, params: dict):
    request = model()
    request.from_json_string(json.dumps(params))
    return request


def pull(tenant) -> list[dict]:
    return tenant.call("PullEvents", {"SubAppId": tenant.sub_app_id})["EventSet"] or []


def confirm(tenant, handles: list[str]) -> None:
    tenant.call("ConfirmEvents", {"SubAppId": tenant.sub_app_id, "EventHandles": handles})


def raise_events(server, sub_app_id: int, names: list[str]) -> None:
    """Events written straight into the server's database, as another process would."""
    with server.accounts()._db.write() as conn:
        for name in names:
            insert_event(conn, sub_app_id, COMPLETE, {"EventType": COMPLETE, COMPLETE: {"TaskId": name}})


def stored_events(server, sub_app_id: int) -> int:
    with server.accounts()._db.read() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(events)
                            .where(events.c.sub_app_id == sub_app_id)).scalar()


def task_ids(event_set: list[dict]) -> list[str]:
    return [event[COMPLETE]["TaskId"] for event in event_set]


def until(condition, timeout: float = 20.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"not true within {timeout} s")


# -- the configuration -------------------------------------------------------------------------------

def test_event_config_defaults_to_pull_and_modify_changes_only_what_it_gives(tenant, receiver):
    client = tenant.vod()
    describe = _typed(models.DescribeEventConfigRequest, {"SubAppId": tenant.sub_app_id})
    first = client.DescribeEventConfig(describe)
    assert (first.Mode, first.NotificationUrl, first.UploadMediaCompleteEventSwitch,
            first.DeleteMediaCompleteEventSwitch, first.PersistenceCompleteEventSwitch) == ("PULL", "", "OFF", "OFF", "OFF")
    client.ModifyEventConfig(_typed(models.ModifyEventConfigRequest, {
        "SubAppId": tenant.sub_app_id, "Mode": "PUSH", "NotificationUrl": receiver.url(), "SignKey": "Key123abc",
        "UploadMediaCompleteEventSwitch": "ON", "PersistenceCompleteEventSwitch": "ON"}))
    tenant.call("ModifyEventConfig", {"SubAppId": tenant.sub_app_id, "DeleteMediaCompleteEventSwitch": "ON"})
    raw = tenant.call("DescribeEventConfig", {"SubAppId": tenant.sub_app_id})
    assert {key: value for key, value in raw.items() if key != "RequestId"} == {
        "Mode": "PUSH", "NotificationUrl": receiver.url(), "UploadMediaCompleteEventSwitch": "ON",
        "DeleteMediaCompleteEventSwitch": "ON", "PersistenceCompleteEventSwitch": "ON"}
    assert "Key123abc" not in json.dumps(raw)  # the SignKey is never shown
    tenant.call("ModifyEventConfig", {"SubAppId": tenant.sub_app_id, "Mode": "PULL", "NotificationUrl": ""})
    assert client.DescribeEventConfig(describe).Mode == "PULL"


def test_bad_event_configurations_get_invalid_parameter_value_and_change_nothing(tenant):
    before = tenant.call("DescribeEventConfig", {"SubAppId": tenant.sub_app_id})
    cases = [
        ({"Mode": "BOTH"}, "Mode"),
        ({"Mode": "PUSH"}, "NotificationUrl is required"),
        ({"Mode": "PUSH", "NotificationUrl": ""}, "NotificationUrl is required"),
        ({"NotificationUrl": "ftp://127.0.0.2/events"}, "scheme"),
        ({"NotificationUrl": "http://127.0.0.1:8080/events"}, "loopback"),
        ({"NotificationUrl": "http://10.1.2.3/events"}, "private"),
        ({"NotificationUrl": "http://169.254.169.254/latest"}, "metadata"),
        ({"NotificationUrl": "http://127.0.0.2/" + "x" * 1100}, "NotificationUrl"),
        ({"SignKey": "k" * 33}, "SignKey"),
        ({"SignKey": "bad-key!"}, "SignKey"),
        ({"UploadMediaCompleteEventSwitch": "MAYBE"}, "UploadMediaCompleteEventSwitch"),
    ]
    for params, words in cases:
        error = _error(lambda: tenant.call("ModifyEventConfig", {"SubAppId": tenant.sub_app_id, **params}))
        assert error.code == "InvalidParameterValue", (params, error)
        assert words in error.message, (params, error.message)
    after = tenant.call("DescribeEventConfig", {"SubAppId": tenant.sub_app_id})
    assert {k: v for k, v in after.items() if k != "RequestId"} == {k: v for k, v in before.items() if k != "RequestId"}


# -- PULL ---------------------------------------------------------------------------------------------

def test_pull_returns_each_tasks_completion_event_typed_and_raw_and_confirm_removes_them(tenant, event_server):
    definition = create_template(tenant, JPEG_OUT)
    submitted = [submit(tenant, definition, Base64=b64(small_photo_png()), SessionContext=f"ctx-{i}") for i in range(3)]
    for task_id in submitted:
        wait_finished(tenant, task_id)
    # The SDK's typed model reads the event as the spec types it: the template's configuration.
    typed = tenant.vod().PullEvents(_typed(models.PullEventsRequest, {"SubAppId": tenant.sub_app_id}))
    assert len(typed.EventSet) == 3
    for event in typed.EventSet:
        assert event.EventType == COMPLETE and event.EventHandle
        assert event.ProcessImageAsyncCompleteEvent.EncodeConfig.Format == "JPEG"
        assert event.ProcessImageAsyncCompleteEvent.EncodeConfig.Quality == 85
    # Not confirmed: the same events come again after the lease, with new handles.
    time.sleep(LEASE_SECONDS + 0.2)
    again = pull(tenant)  # as raw JSON: the task record, as DescribeTaskDetail shows it
    assert sorted(task_ids(again)) == sorted(submitted)
    assert not {event["EventHandle"] for event in again} & {event.EventHandle for event in typed.EventSet}
    for event in again:
        task = event[COMPLETE]
        detail = tenant.call("DescribeTaskDetail", {"SubAppId": tenant.sub_app_id, "TaskId": task["TaskId"]})
        shown = detail["ProcessImageAsyncTask"]
        assert {key: task[key] for key in shown} == shown
        assert (task["Status"], task["ErrCode"], task["Progress"]) == ("FINISH", 0, 100)
        assert task["Output"]["FileInfo"]["MetaData"]["Width"] == 64 and task["SessionContext"].startswith("ctx-")
        assert task["EncodeConfig"] == JPEG_OUT["EncodeConfig"]  # and the template snapshot's members
    stale = _error(lambda: confirm(tenant, [typed.EventSet[0].EventHandle]))
    assert stale.code == "InvalidParameterValue" and typed.EventSet[0].EventHandle in stale.message
    tenant.vod().ConfirmEvents(_typed(models.ConfirmEventsRequest, {
        "SubAppId": tenant.sub_app_id, "EventHandles": [event["EventHandle"] for event in again]}))
    assert stored_events(event_server, tenant.sub_app_id) == 0


def test_a_waiting_pull_is_answered_as_soon_as_a_task_finishes(tenant):
    definition = create_template(tenant, JPEG_OUT)
    answer = {}

    def waiting_pull():
        started_at = time.monotonic()
        answer["events"] = pull(tenant)
        answer["at"] = time.monotonic()
        answer["waited"] = answer["at"] - started_at

    puller = threading.Thread(target=waiting_pull)
    puller.start()
    time.sleep(0.5)  # the pull is parked
    task_id = submit(tenant, definition, Base64=b64(small_photo_png(16)))
    puller.join(WAIT_SECONDS + 5)
    finished, _ = wait_finished(tenant, task_id)
    assert task_ids(answer["events"]) == [task_id]
    assert answer["waited"] < WAIT_SECONDS - 1.0, answer["waited"]  # woken, not timed out
    confirm(tenant, [answer["events"][0]["EventHandle"]])


def test_a_pull_with_nothing_ready_waits_the_full_wait_then_answers_an_empty_set(tenant, event_server):
    _one_process_behaviour(event_server)
    started_at = time.monotonic()
    typed = tenant.vod().PullEvents(_typed(models.PullEventsRequest, {"SubAppId": tenant.sub_app_id}))
    waited = time.monotonic() - started_at
    assert not typed.EventSet
    assert WAIT_SECONDS - 0.2 <= waited < WAIT_SECONDS + 2.0, waited


def test_waiting_pulls_hold_no_thread_of_the_server(event_server, tenant):
    """40 long polls at once, more than the server's 32 pool threads and its one writer thread
    (where PullEvents runs on SQLite): all wait together, and other calls are answered meanwhile."""
    _one_process_behaviour(event_server)
    from vodimg.wire.app import PROVIDER_THREADS

    waiters = [event_server.new_tenant() for _ in range(PROVIDER_THREADS + 8)]
    waited: list[float] = []

    def waiting_pull(who):
        started_at = time.monotonic()
        assert pull(who) == []
        waited.append(time.monotonic() - started_at)

    threads = [threading.Thread(target=waiting_pull, args=(who,)) for who in waiters]
    started_at = time.monotonic()
    for thread in threads:
        thread.start()
    time.sleep(1.5)
    answered_at = time.monotonic()
    create_template(tenant, JPEG_OUT)  # a write, on the same writer thread as PullEvents on SQLite
    raise_events(event_server, tenant.sub_app_id, ["meanwhile"])
    assert task_ids(pull(tenant)) == ["meanwhile"]
    assert time.monotonic() - answered_at < 2.0
    for thread in threads:
        thread.join(30)
    assert len(waited) == len(waiters) and all(WAIT_SECONDS - 0.2 <= w < WAIT_SECONDS + 3.0 for w in waited), waited
    assert time.monotonic() - started_at < 2 * WAIT_SECONDS


def test_events_of_another_process_reach_a_waiting_pull_by_polling(tenant, event_server):
    answer = {}
    puller = threading.Thread(target=lambda: answer.setdefault("events", pull(tenant)))
    puller.start()
    time.sleep(0.5)
    raise_events(event_server, tenant.sub_app_id, ["from-elsewhere"])
    written = time.monotonic()
    puller.join(WAIT_SECONDS + 5)
    assert task_ids(answer["events"]) == ["from-elsewhere"]
    assert time.monotonic() - written < 2.0


def test_at_most_16_events_per_pull_oldest_first(tenant, event_server):
    names = [f"e{i:02d}" for i in range(20)]
    raise_events(event_server, tenant.sub_app_id, names)
    first = pull(tenant)
    second = pull(tenant)
    assert task_ids(first) == names[:16] and task_ids(second) == names[16:]
    confirm(tenant, [event["EventHandle"] for event in first])
    confirm(tenant, [event["EventHandle"] for event in second])
    assert stored_events(event_server, tenant.sub_app_id) == 0


def test_confirm_refuses_bad_handles_and_then_confirms_nothing(tenant, event_server):
    other = event_server.new_tenant()
    raise_events(event_server, tenant.sub_app_id, ["mine-1", "mine-2"])
    raise_events(event_server, other.sub_app_id, ["theirs"])
    mine = [event["EventHandle"] for event in pull(tenant)]
    theirs = [event["EventHandle"] for event in pull(other)]
    too_many = _error(lambda: confirm(tenant, mine * 9))
    assert too_many.code == "InvalidParameterValue" and "EventHandles" in too_many.message
    for bad in (theirs[0], "no-such-handle"):
        error = _error(lambda: confirm(tenant, [mine[0], bad]))
        assert error.code == "InvalidParameterValue" and "EventHandles[1]" in error.message and bad in error.message
    assert stored_events(event_server, tenant.sub_app_id) == 2  # mine[0] was not confirmed either
    confirm(tenant, mine)
    twice = _error(lambda: confirm(tenant, mine[:1]))
    assert twice.code == "InvalidParameterValue" and "confirmed already" in twice.message
    assert stored_events(event_server, tenant.sub_app_id) == 0
    confirm(other, theirs)


def test_pulls_racing_from_8_threads_never_get_the_same_event_within_its_lease(tenant, event_server):
    names = [f"race-{i:03d}" for i in range(120)]
    raise_events(event_server, tenant.sub_app_id, names)
    received: list[tuple[str, float]] = []
    lock = threading.Lock()

    def racer():
        while True:
            with lock:
                if len({name for name, _ in received}) >= len(names):
                    return
            got = pull(tenant)
            at = time.monotonic()
            with lock:
                received.extend((name, at) for name in task_ids(got))
            if got:
                try:
                    confirm(tenant, [event["EventHandle"] for event in got])
                except TencentCloudSDKException:
                    pass  # its lease ran out under load: another racer got it again, allowed

    threads = [threading.Thread(target=racer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert {name for name, _ in received} == set(names)
    first_seen: dict[str, float] = {}
    for name, at in sorted(received, key=lambda item: item[1]):
        if name in first_seen:  # only once the first lease had run out
            assert at - first_seen[name] >= LEASE_SECONDS - 0.1, name
        first_seen.setdefault(name, at)


def test_an_application_in_push_mode_pulls_nothing(tenant, event_server, receiver):
    _one_process_behaviour(event_server)
    tenant.call("ModifyEventConfig", {"SubAppId": tenant.sub_app_id, "Mode": "PUSH",
                                      "NotificationUrl": receiver.url("/push-mode-pull")})
    raise_events(event_server, tenant.sub_app_id, ["pushed-not-pulled"])
    until(lambda: receiver.bodies("/push-mode-pull"))
    assert pull(tenant) == []


# -- PUSH ---------------------------------------------------------------------------------------------

def test_push_posts_each_task_event_signed_once(tenant, event_server, receiver):
    path = f"/signed-{tenant.sub_app_id}"
    tenant.call("ModifyEventConfig", {"SubAppId": tenant.sub_app_id, "Mode": "PUSH",
                                      "NotificationUrl": receiver.url(path), "SignKey": "MySignKey42"})
    definition = create_template(tenant, JPEG_OUT)
    task_id = submit(tenant, definition, Base64=b64(small_photo_png(16)), SessionContext="pushed")
    wait_finished(tenant, task_id)
    bodies = until(lambda: receiver.bodies(path))
    body = bodies[0]
    assert body["EventType"] == COMPLETE and "EventHandle" not in body
    assert body[COMPLETE]["TaskId"] == task_id and body[COMPLETE]["SessionContext"] == "pushed"
    assert body[COMPLETE]["Output"]["FileInfo"]["FileId"]
    assert sign_is_valid(body, "MySignKey42") and not sign_is_valid(body, "OtherKey")
    assert 590 <= body["T"] - time.time() <= 610  # 10 minutes ahead
    until(lambda: stored_events(event_server, tenant.sub_app_id) == 0)
    time.sleep(1.0)
    assert len(receiver.bodies(path)) == 1  # a 2xx is delivery: never posted again


def test_push_without_sign_key_sends_no_signature(tenant, event_server, receiver):
    path = f"/unsigned-{tenant.sub_app_id}"
    tenant.call("ModifyEventConfig", {"SubAppId": tenant.sub_app_id, "Mode": "PUSH", "NotificationUrl": receiver.url(path)})
    raise_events(event_server, tenant.sub_app_id, ["unsigned"])
    body = until(lambda: receiver.bodies(path))[0]
    assert "Sign" not in body and "T" not in body and body[COMPLETE]["TaskId"] == "unsigned"


@pytest.mark.parametrize("failures", [["500"], ["close"], ["hang"], ["302"], ["404", "500", "close"]])
def test_push_retries_a_failing_receiver_until_a_2xx_then_never_again(tenant, event_server, receiver, failures):
    path = f"/failing-{tenant.sub_app_id}"
    receiver.script[path] = list(failures)
    tenant.call("ModifyEventConfig", {"SubAppId": tenant.sub_app_id, "Mode": "PUSH", "NotificationUrl": receiver.url(path)})
    raise_events(event_server, tenant.sub_app_id, ["flaky"])
    until(lambda: receiver.bodies(path, answer="200"), timeout=30)
    until(lambda: stored_events(event_server, tenant.sub_app_id) == 0)
    time.sleep(1.0)
    attempts = receiver.bodies(path)
    assert len(attempts) == len(failures) + 1 and len(receiver.bodies(path, answer="200")) == 1
    assert all(body == attempts[0] for body in attempts)


def test_push_to_a_receiver_that_is_down_arrives_once_it_is_back(tenant, event_server):
    late = Receiver()
    late.start()
    port = late.port
    late.stop()  # nothing listens on the port now
    tenant.call("ModifyEventConfig", {"SubAppId": tenant.sub_app_id, "Mode": "PUSH",
                                      "NotificationUrl": f"http://127.0.0.2:{port}/late"})
    raise_events(event_server, tenant.sub_app_id, ["waited"])
    time.sleep(1.5)  # a few refused attempts
    assert stored_events(event_server, tenant.sub_app_id) == 1
    back = Receiver(port=port).start()
    try:
        body = until(lambda: back.bodies("/late"), timeout=30)[0]
        assert body[COMPLETE]["TaskId"] == "waited"
        until(lambda: stored_events(event_server, tenant.sub_app_id) == 0)
    finally:
        back.stop()


def test_the_readme_receiver_checks_the_signature_of_real_callbacks(tenant, event_server):
    import re
    import subprocess
    import sys

    from tests.e2e.server import REPO_ROOT

    readme = (REPO_ROOT / "README.md").read_text()
    code = re.search(r"<!-- receiver -->\n```python\n(.*?)```", readme, re.S).group(1)
    assert len(code.strip().splitlines()) <= 13  # ten lines of logic, and the imports
    with socket_port_on("127.0.0.2") as port:
        pass
    code = code.replace('("127.0.0.1", 8000)', f'("127.0.0.2", {port})')
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        time.sleep(0.5)
        tenant.call("ModifyEventConfig", {"SubAppId": tenant.sub_app_id, "Mode": "PUSH", "SignKey": "MySignKey123",
                                          "NotificationUrl": f"http://127.0.0.2:{port}/events"})
        raise_events(event_server, tenant.sub_app_id, ["from-the-readme"])
        assert process.stdout.readline().split() == [COMPLETE, "from-the-readme", "True"]
        until(lambda: stored_events(event_server, tenant.sub_app_id) == 0)
        tenant.call("ModifyEventConfig", {"SubAppId": tenant.sub_app_id, "SignKey": "NotTheReceiversKey"})
        raise_events(event_server, tenant.sub_app_id, ["forged"])
        assert process.stdout.readline().split() == [COMPLETE, "forged", "False"]  # answered 403: kept
        assert stored_events(event_server, tenant.sub_app_id) == 1
    finally:
        process.kill()
        process.wait()


def socket_port_on(host: str):
    import contextlib
    import socket

    @contextlib.contextmanager
    def reserved():
        with socket.socket() as sock:
            sock.bind((host, 0))
            yield sock.getsockname()[1]

    return reserved()
