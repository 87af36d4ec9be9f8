"""Fault harness (issue "Scale-out", docs/scaling.md):

    python -m bench.faults [--tasks 500] [--kills 20] [--every 3] [--apis 2] [--workers 3]

Starts its own PostgreSQL cluster (``initdb``/``pg_ctl`` from /usr/lib/postgresql/*/bin, on a free
port in a temporary directory: the machine's own server is left alone), moto's S3 server, and a
scale-out deployment (``--apis`` API-only ``vodimg serve`` processes and ``--workers`` ``vodimg
worker`` processes, tests/e2e/cluster.py). Then, all at once:

- submits ``--tasks`` tasks through random API processes: ProcessImageAsync with three templates and
  inputs by Base64, by Url (an image host on 127.0.0.2) and by FileId (an earlier task's output),
  one in ten a PullUpload, and one upload (ApplyUpload, the COS PUT, CommitUpload) per 20 tasks;
  half of them of an application in PULL mode and half of one in PUSH mode (a receiver on
  127.0.0.2 answering 200; upload events switched on for both). Each task carries a unique
  SessionId, so a submission whose answer was lost (its API process killed) is retried safely: a
  repeat is refused with InvalidParameterValue.SessionId;
- pulls and confirms the PULL application's events through random API processes;
- kills a random API or worker process with kill -9 every ``--every`` seconds (``--kills`` in all)
  and starts it again, and restarts PostgreSQL once (``pg_ctl restart -m immediate``: a crash).

Then it waits until every task is FINISH and every event is delivered, and checks: each
submission made exactly one task, FINISH exactly once (one completion event; no task lost); one
output object and one media row per successful task, one media row per committed upload; no
orphan objects (every object under ``outputs/`` and ``pulls/`` has its media row, every row its
object, nothing under ``inputs/`` is left after one sweep, as every worker runs each minute); every event (task completions, PullComplete,
NewFileUpload) pulled and confirmed (PULL) or posted with a 2xx (PUSH), none twice after a
confirmation or a 2xx. It prints the table. Upload objects a killed API process left uncommitted
are noted, not counted: the sweeper removes them with their session an hour after ApplyUpload.
The short run of the test suite (tests/e2e/test_faults.py) uses ``run()`` with 100 tasks and 5 kills.
"""

from __future__ import annotations

import argparse
import base64
import glob
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import sqlalchemy as sa

from tests.e2e.cluster import Cluster
from tests.e2e.imagehost import ImageHost
from tests.e2e.receiver import Receiver
from tests.e2e.server import free_port
from tests.e2e.tasks import small_photo_jpeg, small_photo_png

COMPLETE = "ProcessImageAsyncCompleteEvent"
# What an event is about: its type's member and the identifier in it.
EVENT_SUBJECT = {COMPLETE: (COMPLETE, "TaskId"), "PullComplete": ("PullCompleteEvent", "TaskId"),
                 "NewFileUpload": ("FileUploadEvent", "FileId")}


def event_subject(event: dict) -> str:
    member, name = EVENT_SUBJECT[event["EventType"]]
    return event[member][name]
TEMPLATES = ({"EncodeConfig": {"Format": "PNG"}},
             {"EncodeConfig": {"Format": "JPEG", "Quality": 80}},
             {"EnhanceConfig": {"ColorEnhance": {"Switch": "ON", "Type": "weak"},
                                "SharpEnhance": {"Switch": "ON", "Intensity": 0.3}},
              "EncodeConfig": {"Format": "JPEG", "Quality": 85}})
ENVIRONMENT = {  # short leases and retries: a killed process's work comes back within seconds
    "VODIMG_TASK_LEASE_SECONDS": "3", "VODIMG_EVENT_LEASE_SECONDS": "3", "VODIMG_URL_ALLOW": "127.0.0.2/32",
    "VODIMG_PUSH_RETRY_SECONDS": "0.3", "VODIMG_PUSH_TIMEOUT_SECONDS": "2", "VODIMG_DRAIN_SECONDS": "2",
}


class Unavailable(RuntimeError):
    """PostgreSQL's binaries or moto are missing: the harness cannot run here."""


# -- a PostgreSQL cluster of our own ------------------------------------------------------------------

def postgres_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl")) or ([shutil.which("pg_ctl")] if shutil.which("pg_ctl") else [])
    if not found:
        raise Unavailable("pg_ctl/initdb not found (/usr/lib/postgresql/*/bin or PATH)")
    return Path(found[-1]).parent


def _as_server_user() -> list[str]:
    """initdb and postgres refuse to run as root: as root, run them as the ``postgres`` user."""
    if os.geteuid() != 0:
        return []
    import pwd

    runuser = shutil.which("runuser")
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        runuser = None
    if runuser is None:
        raise Unavailable("running as root, and runuser or the user 'postgres' (to run PostgreSQL as) is missing")
    return [runuser, "-u", "postgres", "--"]


@dataclass
class Postgres:
    """A throwaway cluster in its own temporary directory (owned by the server's user)."""
    directory: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="vodimg-faults-pg-")))
    port: int = field(default_factory=free_port)

    def __post_init__(self) -> None:
        self.bin = postgres_bin()
        self.data = self.directory / "pgdata"
        self.prefix = _as_server_user()
        if self.prefix:
            shutil.chown(self.directory, "postgres", "postgres")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _ctl(self, *args: str) -> None:
        subprocess.run([*self.prefix, str(self.bin / "pg_ctl"), "-D", str(self.data), "-w", "-t", "60", *args],
                       check=True, capture_output=True)

    def start(self) -> "Postgres":
        subprocess.run([*self.prefix, str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                        "--no-sync", "-E", "UTF8"], check=True, capture_output=True)
        options = (f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c max_connections=300 "
                   # fsync off: a commit still reaches the OS before it is answered, so a crash of
                   # PostgreSQL (not of the machine) loses nothing; synchronous_commit stays on
                   "-c fsync=off -c full_page_writes=off")
        self._ctl("-o", options, "-l", str(self.directory / "postgres.log"), "start")
        self._options = options
        return self

    def restart(self) -> None:
        """A crash and a restart: connections are cut, recovery replays the WAL."""
        self._ctl("-m", "immediate", "-o", self._options, "-l", str(self.directory / "postgres.log"), "restart")

    def stop(self) -> None:
        try:
            self._ctl("-m", "fast", "stop")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.directory, ignore_errors=True)


# -- the run ---------------------------------------------------------------------------------------

@dataclass
class Report:
    tasks: int = 0
    uploads: int = 0
    kills: int = 0
    pg_restarts: int = 0
    lost: int = 0  # submissions without a FINISHed task, or FINISHed without a completion event row history
    duplicated: int = 0  # submissions with more than one task; tasks finished (evented) more than once
    failed: int = 0  # tasks that FINISHed with an error (3 attempts lost to kills)
    orphaned: int = 0  # objects without their row; rows without their object
    events_missing: int = 0
    events_duplicated: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def table(self) -> str:
        head = ("tasks", "uploads", "kills", "PostgreSQL restarts", "lost", "duplicated", "failed (ErrCode)", "orphaned",
                "events missing", "events duplicated", "seconds")
        values = (self.tasks, self.uploads, self.kills, self.pg_restarts, self.lost, self.duplicated, self.failed, self.orphaned,
                  self.events_missing, self.events_duplicated, f"{self.seconds:.0f}")
        return ("| " + " | ".join(head) + " |\n|" + "---|" * len(head) + "\n| "
                + " | ".join(str(value) for value in values) + " |")

    @property
    def clean(self) -> bool:
        return not (self.lost or self.duplicated or self.orphaned or self.events_missing or self.events_duplicated)


class _Run:
    def __init__(self, root: Path, tasks: int, kills: int, every: float, apis: int, workers: int, seed: int):
        self.root, self.count, self.kills, self.every = root, tasks, kills, every
        self.apis, self.worker_count = apis, workers
        self.random = random.Random(seed)
        self.report = Report(tasks=tasks)
        self.lock = threading.Lock()
        self.submitted: dict[str, str | None] = {}  # SessionId -> TaskId (None: accepted, answer lost)
        self.confirmed: Counter = Counter()  # TaskId -> confirmed pulls
        self.pulled_after_confirm: Counter = Counter()
        self.submitting_done = threading.Event()
        self.uploads_done = 0
        self.stop_pulling = threading.Event()

    # -- set-up -----------------------------------------------------------------------------------

    def start(self) -> None:
        from tests.objectstore.servers import start_moto

        self.postgres = Postgres().start()
        self.moto, self._stop_moto = start_moto(self.root)
        bucket = self.moto.new_bucket()
        self.bucket = bucket
        self.images = ImageHost(files={"/photo.png": small_photo_png(48), "/photo.jpg": small_photo_jpeg(64)}).start()
        self.receiver = Receiver().start()
        self.cluster = Cluster(self.root / "cluster", self.postgres.url, f"s3://{bucket}/media",
                               {**self.moto.environment(), **ENVIRONMENT})
        self.cluster.start(apis=self.apis, workers=self.worker_count, engine_processes=1)
        tenant = self.cluster.new_tenant()
        self.pull_app = tenant.sub_app_id
        self.push_app = tenant.add_application()
        self.tenant = tenant
        tenant.call("ModifyEventConfig", {"SubAppId": self.push_app, "Mode": "PUSH",
                                          "NotificationUrl": self.receiver.url(f"/push-{self.push_app}"),
                                          "SignKey": "FaultKey1", "UploadMediaCompleteEventSwitch": "ON"})
        tenant.call("ModifyEventConfig", {"SubAppId": self.pull_app, "UploadMediaCompleteEventSwitch": "ON"})
        self.definitions = {app: [self._call("CreateProcessImageAsyncTemplate", {
            "SubAppId": app, "Name": f"t{index}", "ProcessImageConfigure": configure})["Definition"]
            for index, configure in enumerate(TEMPLATES)] for app in (self.pull_app, self.push_app)}
        self.database = self.cluster.apis[0].accounts()._db
        self.seed_files = {app: self._seed_file(app) for app in (self.pull_app, self.push_app)}

    def _seed_file(self, app: int) -> str:
        """A media file of ``app`` for FileId inputs: the output of a first task."""
        task_id = self._call("ProcessImageAsync", {"SubAppId": app, "Base64": base64.b64encode(small_photo_png(40)).decode(),
                                                   "ImageTaskInput": {"Definition": self.definitions[app][0]},
                                                   "SessionId": f"seed-{app}"})["TaskId"]
        self.submitted[f"seed-{app}"] = task_id
        while True:
            answer = self._call("DescribeTaskDetail", {"SubAppId": app, "TaskId": task_id})
            if answer["Status"] == "FINISH":
                return answer["ProcessImageAsyncTask"]["Output"]["FileInfo"]["FileId"]
            time.sleep(0.1)

    def _call(self, action: str, params: dict, retry_on=()) -> dict:
        """``action`` through a random API process; retried (on any process) while processes die."""
        from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException

        deadline = time.monotonic() + 120
        while True:
            index = self.random.randrange(len(self.cluster.apis))
            try:
                return self.cluster.on(self.tenant, index).call(action, params)
            except TencentCloudSDKException as error:
                if error.code in retry_on:
                    raise
                transient = error.code in ("ClientNetworkError", "InternalError", "RequestLimitExceeded") or \
                    "ClientNetworkError" in str(error)
                if not transient or time.monotonic() > deadline:
                    raise
            except (httpx.HTTPError, OSError):
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.2)

    # -- load -------------------------------------------------------------------------------------

    def _request(self, index: int) -> dict:
        app = (self.pull_app, self.push_app)[index % 2]
        request = {"SubAppId": app, "SessionId": f"s{index}", "SessionContext": f"c{index}",
                   "ImageTaskInput": {"Definition": self.definitions[app][index % len(TEMPLATES)]}}
        kind = index % 3
        if kind == 0:
            request["Base64"] = base64.b64encode(small_photo_png(32 + index % 16)).decode()
        elif kind == 1:
            request["Url"] = self.images.url("/photo.jpg" if index % 2 else "/photo.png")
        else:
            request["FileId"] = self.seed_files[app]
        return request

    def upload(self, index: int) -> None:
        """ApplyUpload, the COS PUT (official COS SDK) and CommitUpload, each through a random API
        process and retried while processes die; a repeated commit whose first answer was lost
        counts as done."""
        from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
        from tests.e2e.media import cos_client

        app = (self.pull_app, self.push_app)[index % 2]
        data = small_photo_jpeg(40 + index % 24)
        while True:
            applied = self._call("ApplyUpload", {"SubAppId": app, "MediaType": "jpg", "MediaName": f"u{index}"})
            server = self.cluster.apis[self.random.randrange(len(self.cluster.apis))]
            try:
                cos_client(server, applied).put_object(Bucket=applied["StorageBucket"],
                                                       Key=applied["MediaStoragePath"], Body=data)
            except Exception:  # noqa: BLE001 - that API process died: a new session on another
                time.sleep(0.2)
                continue
            try:
                self._call("CommitUpload", {"SubAppId": app, "VodSessionKey": applied["VodSessionKey"]},
                           retry_on=("InvalidParameterValue.VodSessionKey",))
            except TencentCloudSDKException as error:
                if error.code != "InvalidParameterValue.VodSessionKey":
                    raise
            with self.lock:
                self.uploads_done += 1
            return

    def _pull_request(self, index: int) -> dict:
        app = (self.pull_app, self.push_app)[index % 2]
        return {"SubAppId": app, "MediaUrl": self.images.url("/photo.jpg"), "MediaName": f"p{index}",
                "SessionId": f"s{index}", "SessionContext": f"c{index}"}

    def submit_all(self, clients: int = 4) -> None:
        from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException

        def share(indexes) -> None:
            for index in indexes:
                if index % 20 == 7:
                    self.upload(index)
                action, request = ("PullUpload", self._pull_request(index)) if index % 10 == 3 else \
                    ("ProcessImageAsync", self._request(index))
                try:
                    task_id = self._call(action, request,
                                         retry_on=("InvalidParameterValue.SessionId",))["TaskId"]
                except TencentCloudSDKException as error:
                    if error.code != "InvalidParameterValue.SessionId":
                        raise
                    task_id = None  # an earlier try was accepted; its answer was lost with its process
                with self.lock:
                    self.submitted[f"s{index}"] = task_id

        threads = [threading.Thread(target=share, args=(range(part, self.count, clients),)) for part in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.submitting_done.set()

    def pull_loop(self) -> None:
        """PullEvents and ConfirmEvents of the PULL application until told to stop."""
        from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException

        while not self.stop_pulling.is_set():
            try:
                answer = self._call("PullEvents", {"SubAppId": self.pull_app})
            except Exception:  # noqa: BLE001 - retried: processes are being killed
                continue
            found = answer.get("EventSet") or []
            if not found:
                continue
            task_ids = [event_subject(event) for event in found]
            with self.lock:
                for task_id in task_ids:
                    if self.confirmed[task_id]:
                        self.pulled_after_confirm[task_id] += 1
            try:
                self.cluster.on(self.tenant, self.random.randrange(len(self.cluster.apis))).call(
                    "ConfirmEvents", {"SubAppId": self.pull_app, "EventHandles": [e["EventHandle"] for e in found]})
            except (TencentCloudSDKException, httpx.HTTPError, OSError):
                continue  # not confirmed (or the answer was lost): pulled again after the lease
            with self.lock:
                for task_id in task_ids:
                    self.confirmed[task_id] += 1

    def kill_loop(self) -> None:
        restart_at = self.kills // 2
        for number in range(self.kills):
            time.sleep(self.every)
            processes = [("api", server) for server in self.cluster.apis] + \
                        [("worker", worker) for worker in self.cluster.workers]
            kind, victim = self.random.choice(processes)
            victim.process.kill()
            victim.process.wait()
            victim.process = None
            victim.start()  # the same port, database, store and data directory
            self.report.kills += 1
            if number == restart_at:
                self.postgres.restart()
                self.report.pg_restarts += 1

    # -- the checks -------------------------------------------------------------------------------

    def wait_settled(self, timeout: float = 300) -> None:
        from vodimg.storage.schema import events, tasks

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with self.database.read() as conn:
                    open_tasks = conn.execute(sa.select(sa.func.count()).select_from(tasks)
                                              .where(tasks.c.status != "FINISH")).scalar()
                    open_events = conn.execute(sa.select(sa.func.count()).select_from(events)).scalar()
            except Exception:  # noqa: BLE001 - PostgreSQL may just be restarting
                time.sleep(0.5)
                continue
            if open_tasks == 0 and open_events == 0:
                return
            time.sleep(0.5)
        self.report.notes.append(f"not settled after {timeout:g} s")

    def check(self) -> None:
        from vodimg.storage.schema import media, tasks

        with self.database.read() as conn:
            rows = conn.execute(sa.select(tasks.c.task_id, tasks.c.session_id, tasks.c.status, tasks.c.err_code,
                                          tasks.c.output, tasks.c.sub_app_id)).all()
            media_rows = conn.execute(sa.select(media.c.file_id, media.c.storage_key, media.c.sub_app_id)).all()
        by_session = Counter(row.session_id for row in rows if row.session_id)
        report = self.report
        report.duplicated += sum(count - 1 for count in by_session.values() if count > 1)
        report.lost += sum(1 for session in self.submitted if by_session[session] == 0)
        report.lost += sum(1 for row in rows if row.status != "FINISH")
        succeeded = [row for row in rows if row.status == "FINISH" and row.err_code == 0]
        report.failed = sum(1 for row in rows if row.status == "FINISH" and row.err_code != 0)
        # One output object and one media row per successful task, and nothing else stored.
        keys = {item.key for item in self._objects()}
        media_keys = Counter(key for _file, key, _app in media_rows)
        for row in succeeded:
            own = [key for key in media_keys if f"/{row.task_id}." in key or key.endswith(f"/{row.task_id}")]
            if len(own) != 1 or media_keys[own[0]] != 1:
                report.duplicated += abs(len(own) - 1) or 1
        derived = {key for key in keys if key.startswith(("outputs/", "pulls/"))}
        report.orphaned += len(derived - set(media_keys))  # outputs and pulled files without their row
        report.orphaned += len(set(media_keys) - keys)  # rows whose object is missing
        report.orphaned += len([key for key in keys if key.startswith("inputs/")])
        uploaded = [key for key in media_keys if key.startswith("uploads/")]
        report.lost += max(0, self.uploads_done - len(uploaded))
        report.duplicated += max(0, len(uploaded) - self.uploads_done)
        leftovers = {key for key in keys if key.startswith("uploads/")} - set(media_keys)
        if leftovers:  # a put retried after its API process died: swept with its session after an hour
            report.notes.append(f"{len(leftovers)} uncommitted upload objects (removed by the sweeper with "
                                "their upload session, an hour after ApplyUpload)")
        # Events: every task's completion event once, by PULL (confirmed) or PUSH (a 2xx).
        pushed = Counter(event_subject(body) for body in self.receiver.bodies(f"/push-{self.push_app}"))
        subjects = [(row.sub_app_id, row.task_id) for row in rows]
        subjects += [(app, file_id) for file_id, key, app in media_rows if key.startswith("uploads/")]
        for sub_app_id, subject in subjects:
            mode = "PUSH" if sub_app_id == self.push_app else "PULL"
            delivered = pushed[subject] if mode == "PUSH" else self.confirmed[subject]
            if delivered == 0:
                report.events_missing += 1
                report.notes.append(f"{mode} event of {subject} never delivered")
            if delivered > 1:
                report.events_duplicated += delivered - 1
                report.notes.append(f"{mode} event of {subject} delivered {delivered} times")
        for task_id, times in self.pulled_after_confirm.items():
            report.events_duplicated += times
            report.notes.append(f"PULL event of {task_id} pulled {times} more times after its confirmation")
        report.tasks = len(self.submitted) - len(self.seed_files)
        report.uploads = self.uploads_done

    def _store(self):
        """The cluster's S3 store (moto's settings are read when it is opened)."""
        from vodimg.objectstore import open_store

        env = os.environ.copy()
        os.environ.update(self.moto.environment())
        try:
            return open_store(f"s3://{self.bucket}/media")
        finally:
            os.environ.clear()
            os.environ.update(env)

    def _objects(self):
        return list(self._store().list(""))

    def sweep(self) -> None:
        """One sweep, as every worker runs each minute; what it removes is noted, not counted."""
        from vodimg.queue import TaskQueue
        from vodimg.worker.maintenance import Maintenance

        removed = Maintenance(self.database, self._store(), TaskQueue(self.database), {},
                              session_window_ms=24 * 3600 * 1000).sweep()
        if removed["inputs"]:
            self.report.notes.append(f"{removed['inputs']} Base64 input(s) of finished tasks (a worker killed between "
                                     "a FINISH and deleting its input) removed by the sweep")

    def stop(self) -> None:
        for part in ("cluster", "receiver", "images"):
            if hasattr(self, part):
                getattr(self, part).stop()
        if hasattr(self, "_stop_moto"):
            self._stop_moto()
        if hasattr(self, "postgres"):
            self.postgres.stop()


def run(root: Path, tasks: int = 500, kills: int = 20, every: float = 3.0, apis: int = 2, workers: int = 3,
        seed: int = 1) -> Report:
    """One fault run in ``root``; the Report of its checks."""
    harness = _Run(root, tasks, kills, every, apis, workers, seed)
    began = time.monotonic()
    try:
        harness.start()
        puller = threading.Thread(target=harness.pull_loop, daemon=True)
        killer = threading.Thread(target=harness.kill_loop)
        puller.start()
        killer.start()
        harness.submit_all()
        killer.join()
        harness.wait_settled()
        harness.stop_pulling.set()
        puller.join(15)
        time.sleep(1.0)  # PUSH posts in flight land
        harness.sweep()
        harness.check()
        harness.report.seconds = time.monotonic() - began
        return harness.report
    except Exception:
        if hasattr(harness, "cluster"):
            print(harness.cluster.logs()[-6000:], file=sys.stderr)
        raise
    finally:
        harness.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--every", type=float, default=3.0, help="seconds between kills")
    parser.add_argument("--apis", type=int, default=2)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory(prefix="vodimg-faults-") as workdir:
        report = run(Path(workdir), args.tasks, args.kills, args.every, args.apis, args.workers, args.seed)
    print(report.table())
    for note in report.notes:
        print("note:", note)
    print("clean" if report.clean else "NOT clean")
    sys.exit(0 if report.clean else 1)


if __name__ == "__main__":
    main()
