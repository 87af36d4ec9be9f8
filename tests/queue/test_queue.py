"""The task table as a queue, on SQLite and PostgreSQL: submission checks, claim order, leases,
fencing, the reaper and the sweeper (no HTTP: the services directly)."""

from __future__ import annotations

import base64
import threading
import time

import pytest
import sqlalchemy as sa

from vodimg.config import Settings
from vodimg.domain.accounts import AccountService
from vodimg.errors import ApiError
from vodimg.queue import FINISH, PROCESSING, WAITING
from vodimg.services import build_services
from vodimg.storage.schema import events, media, tasks
from vodimg.worker.image_task import ImageTaskRunner
from vodimg.worker.runner import MAX_ATTEMPTS
from vodimg.worker.maintenance import Maintenance
import numpy as np

from tests.engine.images import encode

PNG_TEMPLATE = 20  # any preset works: the queue never runs the engine in these tests


@pytest.fixture
def services(database, tmp_path, monkeypatch):
    monkeypatch.setenv("VODIMG_TASK_LEASE_SECONDS", "0.3")
    settings = Settings.from_env_and_args(None)
    settings.data_dir = tmp_path / "data"
    return build_services(settings, database)


@pytest.fixture
def app(services) -> int:
    return AccountService(services.database).create_account()["SubAppId"]


def _submit(services, app, **params) -> str:
    image = base64.b64encode(encode(np.full((16, 16, 3), 128, np.uint8), ".png")).decode()
    return services.tasks.submit_image_task(app, {"Base64": image, "ImageTaskInput": {"Definition": PNG_TEMPLATE},
                                                  **params})


def _row(services, task_id):
    with services.database.read() as conn:
        return conn.execute(sa.select(tasks).where(tasks.c.task_id == task_id)).first()._mapping


def test_claims_take_the_highest_priority_then_the_oldest(services, app):
    low = _submit(services, app, TasksPriority=-5)
    first_normal = _submit(services, app)
    high = _submit(services, app, TasksPriority=10)
    second_normal = _submit(services, app)
    claimed = [services.queue.claim("w", "2026-01-01T00:00:00Z").task_id for _ in range(4)]
    assert claimed == [high, first_normal, second_normal, low]
    assert services.queue.claim("w", "2026-01-01T00:00:00Z") is None


def test_claims_take_only_the_task_types_asked_for(services, app):
    task_id = _submit(services, app)
    assert services.queue.claim("w", "2026-01-01T00:00:00Z", ("PullUpload",)) is None
    assert services.queue.claim("w", "2026-01-01T00:00:00Z", ("PullUpload", "ProcessImageAsync")).task_id == task_id


def test_concurrent_claims_never_hand_out_a_task_twice(services, app):
    submitted = {_submit(services, app) for _ in range(40)}
    claimed, lock = [], threading.Lock()

    def claim_all():
        while (task := services.queue.claim("w", "2026-01-01T00:00:00Z")) is not None:
            with lock:
                claimed.append(task.task_id)

    threads = [threading.Thread(target=claim_all) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claimed) == sorted(submitted)


def test_a_lost_lease_cannot_finish_the_task(services, app):
    task_id = _submit(services, app)
    old = services.queue.claim("old", "2026-01-01T00:00:00Z")
    time.sleep(0.4)  # the 0.3 s lease runs out
    [expired] = services.queue.expired()
    assert services.queue.requeue(expired)
    new = services.queue.claim("new", "2026-01-01T00:00:00Z")
    assert (new.task_id, new.attempt, new.failures) == (task_id, old.attempt + 1, 1)
    assert not services.queue.renew(task_id, old.attempt, 50)
    assert not services.queue.finish(task_id, old.attempt, {"err_code": 0, "message": "old"})
    assert services.queue.finish(task_id, new.attempt, {"err_code": 0, "message": "new"})
    row = _row(services, task_id)
    assert (row["status"], row["message"]) == (FINISH, "new")


def test_renew_extends_the_lease_and_records_progress(services, app):
    task_id = _submit(services, app)
    task = services.queue.claim("w", "2026-01-01T00:00:00Z")
    for _ in range(3):
        time.sleep(0.15)
        assert services.queue.renew(task_id, task.attempt, 40)
    assert services.queue.expired() == []
    assert _row(services, task_id)["progress"] == 40


def test_release_gives_a_task_back_without_counting_a_failure(services, app):
    task_id = _submit(services, app)
    task = services.queue.claim("w", "2026-01-01T00:00:00Z")
    assert services.queue.release(task_id, task.attempt, failed=False)
    row = _row(services, task_id)
    assert (row["status"], row["failures"], row["lease_until_ms"]) == (WAITING, 0, None)


def test_the_reaper_finishes_a_task_with_70000_after_the_last_attempt(services, app):
    runner = ImageTaskRunner(services.store, services.queue, services.media, None, services.url_policy,
                             None, "http://127.0.0.1:9000")
    maintenance = Maintenance(services.database, services.store, services.queue,
                              {"ProcessImageAsync": runner}, session_window_ms=1000)
    task_id = _submit(services, app)
    output = f"outputs/{app}/{task_id}.jpg"  # stored by an attempt that died before its FINISH
    for attempt in range(1, MAX_ATTEMPTS + 1):
        task = services.queue.claim("dies", "2026-01-01T00:00:00Z")
        assert (task.task_id, task.attempt) == (task_id, attempt)
        services.store.put(output, b"a result no media row names")
        time.sleep(0.35)
        assert maintenance.reap() == 1
        stored = [info.key for info in services.store.list(output)]
        assert stored == ([output] if attempt < MAX_ATTEMPTS else [])  # kept for the next attempt, then removed
    row = _row(services, task_id)
    assert (row["status"], row["err_code"]) == (FINISH, 70000)
    assert "on each of 3 attempts" in row["message"]
    with services.database.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(events)).scalar() == 1


def test_a_repeated_session_id_is_refused_and_nothing_is_stored(services, app):
    _submit(services, app, SessionId="batch-1")
    with pytest.raises(ApiError) as refused:
        _submit(services, app, SessionId="batch-1")
    assert refused.value.code == "InvalidParameterValue.SessionId"
    with services.database.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(tasks)).scalar() == 1
    other_app = AccountService(services.database).create_account()["SubAppId"]
    _submit(services, other_app, SessionId="batch-1")  # SessionIds are per application


def test_concurrent_submissions_with_one_session_id_make_one_task(services, app):
    outcomes, lock = [], threading.Lock()

    def submit():
        try:
            _submit(services, app, SessionId="race")
            outcome = "ok"
        except ApiError as error:
            outcome = error.code
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=submit) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["InvalidParameterValue.SessionId"] * 7 + ["ok"]


def test_a_session_id_is_free_again_after_its_window(services, app):
    services.tasks.settings = type(services.tasks.settings)(services.tasks.settings.public_base, 200)
    _submit(services, app, SessionId="again")
    time.sleep(0.25)
    _submit(services, app, SessionId="again")


def test_the_sweeper_removes_stored_inputs_whose_task_was_never_committed(services, app):
    kept = _submit(services, app)
    services.store.put("inputs/died-before-its-commit", b"bytes")  # an API process killed mid-submit
    maintenance = Maintenance(services.database, services.store, services.queue, {}, session_window_ms=1000)
    assert maintenance._sweep_orphan_inputs(older_than=3600) == 0  # young: perhaps committing right now
    assert maintenance._sweep_orphan_inputs(older_than=-1) == 1
    assert services.store.head("inputs/died-before-its-commit") is None
    assert services.store.head(f"inputs/{kept}") is not None


def test_the_sweeper_removes_the_input_of_a_finished_task_at_once(services, app):
    """A worker killed between a task's FINISH and deleting its Base64 input leaves the input:
    no attempt will read it again, so the next sweep removes it, young as it is."""
    finished, waiting = _submit(services, app), _submit(services, app)
    task = services.queue.claim("w", "2026-01-01T00:00:00Z")
    assert task.task_id == finished
    assert services.queue.finish(finished, task.attempt, {"err_code": 0, "message": "SUCCESS", "progress": 100})
    maintenance = Maintenance(services.database, services.store, services.queue, {}, session_window_ms=1000)
    assert maintenance._sweep_orphan_inputs(older_than=3600) == 1
    assert services.store.head(f"inputs/{finished}") is None
    assert services.store.head(f"inputs/{waiting}") is not None


def test_the_sweeper_removes_expired_media_and_its_bytes(services, app):
    from vodimg.domain.media import MediaFile, insert_media

    services.store.put("outputs/x.png", b"bytes")
    file = MediaFile("1234567890123456789", app, "x", "png", 0, "Upload", "", 5, "png", 1, 1, "0" * 32,
                     "image/png", "outputs/x.png", "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z",
                     "2026-01-01T00:00:01Z")
    with services.database.write() as conn:
        insert_media(conn, file)
    maintenance = Maintenance(services.database, services.store, services.queue, {}, session_window_ms=1000)
    assert maintenance.sweep()["media"] == 1
    assert services.store.head("outputs/x.png") is None
    with services.database.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(media)).scalar() == 0


def test_the_sweeper_removes_finished_tasks_older_than_3_days_and_their_input(services, app):
    from vodimg.domain.tasks import TASK_RETENTION_MS, input_key

    old, recent = _submit(services, app), _submit(services, app)
    with services.database.write() as conn:
        conn.execute(tasks.update().values(status=FINISH))
        conn.execute(tasks.update().where(tasks.c.task_id == old).values(
            created_ms=tasks.c.created_ms - TASK_RETENTION_MS - 1000))
    maintenance = Maintenance(services.database, services.store, services.queue, {}, session_window_ms=1000)
    assert maintenance.sweep()["tasks"] == 1
    with services.database.read() as conn:
        assert [row[0] for row in conn.execute(sa.select(tasks.c.task_id))] == [recent]
    # both inputs go: the old one with its task, the recent one as a finished task's
    assert services.store.head(input_key(old)) is None and services.store.head(input_key(recent)) is None
    with pytest.raises(ApiError) as gone:
        services.tasks.detail(app, old)
    assert gone.value.code == "InvalidParameterValue.TaskId"
