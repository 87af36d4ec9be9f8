"""Crash safety of the task queue, proven by killing real processes (DESIGN.md section 5):

- kill -9 of ``vodimg serve`` in the middle of a batch, then a restart: every task FINISH exactly
  once, with one media row, one stored output and one completion event each; the engine children
  of the killed service end too;
- kill -9 of one engine child: its task is tried again and succeeds;
- a lease that runs out while its worker is frozen (SIGSTOP): another worker takes the task over,
  and the frozen worker's finish, once it thaws, is refused by the fencing token.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from vodimg.storage.schema import events, media, tasks
from tests.e2e.server import REPO_ROOT, started, vodimg_command
from tests.e2e.tasks import b64, create_template, small_photo_png, submit, wait_finished
from tests.e2e.test_tasks_sdk import SLOW, _noisy_png

pytestmark = pytest.mark.slow
QUICKISH = {"EnhanceConfig": {"Denoise": {"Switch": "ON", "Type": "strong"}}, "EncodeConfig": {"Format": "PNG"}}


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _outcome(server, sub_app_id: int) -> dict:
    """Per task of the application: (status, err_code, media rows, events)."""
    database = server.accounts()._db
    with database.read() as conn:
        rows = conn.execute(sa.select(tasks.c.task_id, tasks.c.status, tasks.c.err_code, tasks.c.output)
                            .where(tasks.c.sub_app_id == sub_app_id)).all()
        media_rows = conn.execute(sa.select(media.c.file_id, media.c.storage_key)
                                  .where(media.c.sub_app_id == sub_app_id)).all()
        event_rows = conn.execute(sa.select(events.c.content).where(events.c.sub_app_id == sub_app_id)).all()
    return {"tasks": rows, "media": media_rows, "events": [row[0] for row in event_rows]}


def _stored_outputs(server, sub_app_id: int) -> list[str]:
    root = server.data_dir / "objects" / "outputs" / str(sub_app_id)
    return sorted(path.name for path in root.iterdir() if not path.name.startswith(".")) if root.exists() else []


def test_kill_9_during_a_batch_then_restart_finishes_every_task_exactly_once(tmp_path):
    # A short lease: the killed service's tasks are taken again soon after the restart.
    server = started(tmp_path / "data", extra_args=("--engine-processes", "2"),
                     extra_env={"VODIMG_TASK_LEASE_SECONDS": "3"})
    try:
        tenant = server.new_tenant()
        definition = create_template(tenant, QUICKISH)
        submitted = [submit(tenant, definition, Base64=b64(_noisy_png(256 + 8 * i))) for i in range(24)]
        _wait(lambda: sum(1 for row in _outcome(server, tenant.sub_app_id)["tasks"] if row[1] == "FINISH") >= 3,
              60, "a few tasks to finish")
        children = _children(server.process.pid)
        assert len(children) >= 2
        server.process.kill()
        server.process.wait()
        _wait(lambda: not any(_alive(pid) for pid in children), 10, "the engine children to end")
        server.start()  # the same data directory: the killed tasks' leases run out and they run again
        for task_id in submitted:
            answer, _ = wait_finished(tenant, task_id, timeout=180)
            assert answer["ProcessImageAsyncTask"]["ErrCode"] == 0, answer
        outcome = _outcome(server, tenant.sub_app_id)
        assert sorted(row[0] for row in outcome["tasks"]) == sorted(submitted)
        assert len(outcome["media"]) == len(submitted) == len({row[0] for row in outcome["media"]})
        assert len(outcome["events"]) == len(submitted)
        assert sorted(f"{task_id}.png" for task_id in submitted) == _stored_outputs(server, tenant.sub_app_id)
    finally:
        server.stop()
        server.close_accounts()


def test_a_killed_engine_child_is_replaced_and_its_task_tried_again(tmp_path):
    server = started(tmp_path / "data", extra_args=("--engine-processes", "1"))
    try:
        tenant = server.new_tenant()
        task_id = _running_slow_task(tenant, 500)
        [child] = _children(server.process.pid)[:1] or [None]
        busy = [pid for pid in _children(server.process.pid) if _cpu_busy(pid)]
        os.kill(busy[0] if busy else child, signal.SIGKILL)
        answer, _ = wait_finished(tenant, task_id, timeout=120)
        assert answer["ProcessImageAsyncTask"]["ErrCode"] == 0, answer["ProcessImageAsyncTask"]["Message"]
        with server.accounts()._db.read() as conn:
            attempt, failures = conn.execute(sa.select(tasks.c.attempt, tasks.c.failures)
                                             .where(tasks.c.task_id == task_id)).one()
        assert (attempt, failures) == (2, 1)
        quick = submit(tenant, create_template(tenant, {"EncodeConfig": {"Format": "PNG"}}), Base64=b64(small_photo_png()))
        assert wait_finished(tenant, quick)[0]["ProcessImageAsyncTask"]["ErrCode"] == 0
    finally:
        server.stop()
        server.close_accounts()


def _running_slow_task(tenant, side: int) -> str:
    """A slow task (seconds of work on a ``side`` x ``side`` noisy photo), once it is PROCESSING."""
    task_id = submit(tenant, create_template(tenant, SLOW), Base64=b64(_noisy_png(side)))
    _wait(lambda: tenant.call("DescribeTaskDetail", {"TaskId": task_id, "SubAppId": tenant.sub_app_id})
          ["Status"] == "PROCESSING", 30, "the task to start")
    return task_id


def _cpu_busy(pid: int) -> bool:
    def ticks():
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    try:
        before = ticks()
        time.sleep(0.2)
        return ticks() > before
    except OSError:
        return False


def test_a_frozen_workers_finish_is_refused_after_another_took_the_task_over(tmp_path):
    env = {"VODIMG_TASK_LEASE_SECONDS": "1.5"}
    server = started(tmp_path / "data", extra_args=("--engine-processes", "1"), extra_env=env)
    other = None
    try:
        tenant = server.new_tenant()
        task_id = _running_slow_task(tenant, 420)
        os.kill(server.process.pid, signal.SIGSTOP)  # its engine child goes on; its lease runs out
        log = open(tmp_path / "worker.log", "wb")
        other = subprocess.Popen([*vodimg_command(), "worker", "--data-dir", str(server.data_dir),
                                  "--engine-processes", "1"], stdout=log, stderr=subprocess.STDOUT,
                                 env={**server.environment(), **env}, cwd=REPO_ROOT)
        database = server.accounts()._db

        def finished():
            with database.read() as conn:
                return conn.execute(sa.select(tasks.c.status, tasks.c.attempt, tasks.c.err_code)
                                    .where(tasks.c.task_id == task_id)).one()
        status, attempt, err_code = _wait(lambda: (row := finished())[0] == "FINISH" and row, 120,
                                          "the second worker to finish the task")
        assert (attempt, err_code) == (2, 0)
        os.kill(server.process.pid, signal.SIGCONT)
        time.sleep(3)  # the thawed worker's engine result arrives and its finish is refused
        outcome = _outcome(server, tenant.sub_app_id)
        assert len(outcome["media"]) == 1 and len(outcome["events"]) == 1
        assert finished() == ("FINISH", 2, 0)
        assert "lost before finishing" in server.output()
    finally:
        if server.process is not None:
            os.kill(server.process.pid, signal.SIGCONT)
        if other is not None:
            other.terminate()
            other.wait(30)
        server.stop()
        server.close_accounts()


def test_an_image_over_the_time_limit_is_stopped_and_the_next_task_runs(tmp_path):
    server = started(tmp_path / "data", extra_args=("--engine-processes", "1"), extra_env={"VODIMG_MAX_SECONDS": "1"})
    try:
        tenant = server.new_tenant()
        slow = submit(tenant, create_template(tenant, SLOW), Base64=b64(_noisy_png(900)))
        quick = submit(tenant, create_template(tenant, {"EncodeConfig": {"Format": "PNG"}}), Base64=b64(small_photo_png()))
        answer, _ = wait_finished(tenant, slow, timeout=60)
        task = answer["ProcessImageAsyncTask"]
        assert task["ErrCode"] == 60000 and "longer than the limit" in task["Message"], task["Message"]
        assert wait_finished(tenant, quick)[0]["ProcessImageAsyncTask"]["ErrCode"] == 0
    finally:
        server.stop()
        server.close_accounts()


def test_sigterm_when_idle_exits_promptly_and_says_so(tmp_path):
    server = started(tmp_path / "data", extra_args=("--engine-processes", "1"))
    try:
        children = _children(server.process.pid)
        began = time.monotonic()
        server.process.terminate()
        assert server.process.wait(10) == 0
        assert time.monotonic() - began < 1.5
        output = server.output()
        assert "vodimg: shutting down" in output and output.rstrip().endswith("vodimg: stopped")
        _wait(lambda: not any(_alive(pid) for pid in children), 5, "the engine children to end")
    finally:
        server.process = None
        server.close_accounts()


def test_sigterm_lets_a_running_image_finish_within_the_drain_time(tmp_path):
    server = started(tmp_path / "data", extra_args=("--engine-processes", "1"), extra_env={"VODIMG_DRAIN_SECONDS": "60"})
    try:
        tenant = server.new_tenant()
        task_id = _running_slow_task(tenant, 500)
        database = server.accounts()._db
        server.process.terminate()
        assert server.process.wait(60) == 0
        assert "finishing 1 running tasks" in server.output()
        with database.read() as conn:
            status, err_code = conn.execute(sa.select(tasks.c.status, tasks.c.err_code)
                                            .where(tasks.c.task_id == task_id)).one()
        assert (status, err_code) == ("FINISH", 0)
    finally:
        server.process = None
        server.close_accounts()


def test_sigterm_gives_back_what_does_not_finish_within_the_drain_time(tmp_path):
    server = started(tmp_path / "data", extra_args=("--engine-processes", "1"), extra_env={"VODIMG_DRAIN_SECONDS": "0.2"})
    try:
        tenant = server.new_tenant()
        task_id = _running_slow_task(tenant, 700)
        database = server.accounts()._db
        server.process.terminate()
        assert server.process.wait(30) == 0
        with database.read() as conn:
            status, failures = conn.execute(sa.select(tasks.c.status, tasks.c.failures)
                                            .where(tasks.c.task_id == task_id)).one()
        assert (status, failures) == ("WAITING", 0)
        server.start()
        assert wait_finished(tenant, task_id, timeout=120)[0]["ProcessImageAsyncTask"]["ErrCode"] == 0
    finally:
        server.stop()
        server.close_accounts()
