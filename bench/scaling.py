"""Scale-out benchmarks (issue "Scale-out", docs/scaling.md):

    python -m bench.scaling [--claims 20000] [--images 48] [--rounds 2] [--skip-workers]

1. Claim rate of the queue on PostgreSQL: no-op tasks claimed and finished (the worker's two
   statements, each one round trip) by 1, 8 and 64 concurrent connections (64 = 4 processes x 16
   threads), against the 1-connection rate of the same run. Also prints the claim's query plan.
2. Worker scaling: tasks per second of a CPU-heavy template (1920x1080 JPEG, quality, colour and
   sharpen on, denoise and super-resolution off) with 1 and 2 ``vodimg worker`` processes (one
   engine process each) behind an API-only ``vodimg serve`` on PostgreSQL, and the speed-up. The
   workers are warmed up, then stopped (SIGSTOP) while the queue is filled and let go; the rate
   counts from the first completion to the last, and the CPU of each kind of process (engine,
   worker, API, PostgreSQL) in that window is printed per task. Beside it, the same image through
   the engine alone (``process_image`` in 1 and 2 plain processes): the machine's own ceiling.
   Goal: at least 1.8 with 2 on a 2-core machine. Rounds alternate 1 and 2 workers so that the
   load of other programs falls on both alike; the best round of each counts.

PostgreSQL: VODIMG_TEST_POSTGRES_URL or the local server (database ``test``); fresh schemas,
dropped afterwards. Everything single-threaded (OMP_NUM_THREADS=1).
"""

from __future__ import annotations

import argparse
import base64
import multiprocessing
import os
import platform
import signal
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import sqlalchemy as sa  # noqa: E402

from bench.tasks import _postgres_url  # noqa: E402
from tests.conftest import fresh_postgres_schema  # noqa: E402
from vodimg.storage.schema import tasks  # noqa: E402

HEAVY = {"EnhanceConfig": {"ImageQualityEnhance": {"Switch": "ON", "Type": "normal"},
                           "ColorEnhance": {"Switch": "ON", "Type": "weak"},
                           "SharpEnhance": {"Switch": "ON", "Intensity": 0.3}},
         "EncodeConfig": {"Format": "JPEG", "Quality": 85}}
SCALING_GOAL = 1.8
CONNECTION_LAYOUTS = ((1, 1), (2, 4), (4, 16))  # (processes, threads each): 1, 8, 64 connections


# -- 1. claims per second ----------------------------------------------------------------------------

def _insert_noop_tasks(url: str, count: int) -> None:
    from vodimg.domain.accounts import AccountService
    from vodimg.storage.db import Database

    database = Database(url)
    database.migrate()
    app = AccountService(database).create_account()["SubAppId"]
    rows = [dict(task_id=f"{app}-ProcessImageAsync-{index:032x}t", sub_app_id=app, task_type="ProcessImageAsync",
                 status="WAITING", priority=index % 3, source="{}", input="{}", session_id="", session_context="",
                 ext_info="", progress=0, err_code=0, message="", attempt=0, failures=0,
                 create_time="2026-01-01T00:00:00Z", created_ms=0) for index in range(count)]
    with database.write() as conn:
        for start in range(0, count, 5000):
            conn.execute(tasks.insert(), rows[start:start + 5000])
        conn.execute(sa.text("ANALYZE tasks"))
    database.dispose()


def _claimer(url: str, threads: int, ready, go, results) -> None:
    from vodimg.queue import TaskQueue
    from vodimg.storage.db import Database

    database = Database(url)
    queue = TaskQueue(database)
    held = [database.engine.raw_connection() for _ in range(threads)]  # connect before the clock starts
    for fairy in held:
        fairy.close()
    done = [0] * threads

    def work(index: int) -> None:
        while (task := queue.claim(f"bench-{os.getpid()}-{index}", "2026-01-01T00:00:00Z")) is not None:
            queue.finish(task.task_id, task.attempt, {"err_code": 0, "message": "SUCCESS"})
            done[index] += 1

    ready.release()
    go.wait()
    workers = [threading.Thread(target=work, args=(index,)) for index in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    results.put((sum(done), time.time()))
    database.dispose()


def claim_rate(server_url: str, count: int, processes: int, threads: int) -> tuple[float, int]:
    """(tasks claimed and finished per second, tasks done) by processes x threads connections."""
    with fresh_postgres_schema(server_url, "vodimg_bench_claims") as url:
        _insert_noop_tasks(url, count)
        context = multiprocessing.get_context("spawn")
        ready, go, results = context.Semaphore(0), context.Event(), context.Queue()
        workers = [context.Process(target=_claimer, args=(url, threads, ready, go, results))
                   for _ in range(processes)]
        for process in workers:
            process.start()
        for _ in workers:
            ready.acquire()
        began = time.time()
        go.set()
        finished = [results.get() for _ in workers]
        for process in workers:
            process.join()
        done = sum(item[0] for item in finished)
        return done / (max(item[1] for item in finished) - began), done


def claim_plan(server_url: str) -> str:
    """EXPLAIN of the claim statement on a table of 20000 WAITING tasks."""
    from vodimg.queue import _claim_statement
    from vodimg.storage.db import Database

    with fresh_postgres_schema(server_url, "vodimg_bench_plan") as url:
        _insert_noop_tasks(url, 20000)
        database = Database(url)
        statement = database.compile(_claim_statement(("ProcessImageAsync",)))
        try:
            with database.transaction() as cursor:
                cursor.execute("EXPLAIN " + statement.sql, {**statement.defaults, "worker": "w", "begin_time": "t",
                                                            "lease_until": 0})
                plan = "\n".join(row[0] for row in cursor.fetchall())
                raise _RollBack(plan)
        except _RollBack as done:
            return str(done)
        finally:
            database.dispose()


class _RollBack(Exception):
    pass


# -- 2. worker scaling --------------------------------------------------------------------------------

def heavy_image() -> bytes:
    import cv2
    from skimage import data

    photo = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    return cv2.imencode(".jpg", cv2.resize(photo, (1920, 1080), interpolation=cv2.INTER_CUBIC),
                        [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


@dataclass
class WorkerRound:
    rate: float  # tasks per second, first to last completion
    cpu_ms: dict[str, float]  # CPU milliseconds per task, by kind of process


def worker_rate(root: Path, server_url: str, workers: int, images: int, image: str) -> WorkerRound:
    """Tasks per second of ``workers`` worker processes (one engine process each), warmed up, then
    stopped (SIGSTOP) while the queue is filled, so that neither the submissions' CPU nor a
    process's start-up falls in the measured window; the rate counts from the first completion to
    the last. Also the CPU each kind of process spent per task in that time."""
    from tests.e2e.cluster import Cluster
    from vodimg.storage.schema import events

    with fresh_postgres_schema(server_url, "vodimg_bench_scale") as url:
        cluster = Cluster(root / f"w{workers}-{time.monotonic_ns()}", url).start(apis=1, workers=workers)
        try:
            tenant = cluster.new_tenant()
            definition = tenant.call("CreateProcessImageAsyncTemplate", {
                "SubAppId": tenant.sub_app_id, "Name": "heavy", "ProcessImageConfigure": HEAVY})["Definition"]
            request = {"SubAppId": tenant.sub_app_id, "Base64": image, "ImageTaskInput": {"Definition": definition}}
            client = tenant.common()
            database = cluster.apis[0].accounts()._db
            _run_all(client, tenant, request, 4 * workers, database)  # warm up every engine process
            roles = _process_roles(cluster)
            stopped = [pid for kind in ("engine processes", "worker processes") for pid in roles[kind]]
            for pid in stopped:
                os.kill(pid, signal.SIGSTOP)
            with database.read() as conn:  # completion events after this one are the measured tasks'
                warmed = conn.execute(sa.select(sa.func.max(events.c.seq))).scalar()
            ids = _submit_all(tenant, request, images)
            time.sleep(0.5)  # the API process and PostgreSQL settle
            before = _cpu_seconds(roles)
            for pid in stopped:
                os.kill(pid, signal.SIGCONT)
            _wait_finished(ids, database)
            after = _cpu_seconds(roles)
            with database.read() as conn:
                first, last = conn.execute(sa.select(sa.func.min(events.c.created_ms), sa.func.max(events.c.created_ms))
                                           .where(events.c.seq > warmed)).one()
            cpu_ms = {kind: 1000 * (after[kind] - before[kind]) / images for kind in roles}
            return WorkerRound((images - 1) / ((last - first) / 1000), cpu_ms)
        finally:
            cluster.stop()


def _process_roles(cluster) -> dict[str, list[int]]:
    """The pids of each kind of process: the workers, their engine children, the API process, and
    every PostgreSQL process on the machine (the server, its backends and helpers)."""
    stats = {pid: _stat(pid) for pid in map(int, filter(str.isdigit, os.listdir("/proc")))}
    stats = {pid: stat for pid, stat in stats.items() if stat is not None}
    workers = [worker.process.pid for worker in cluster.workers]
    return {
        "engine processes": [pid for pid, (ppid, _, _) in stats.items() if ppid in workers],
        "worker processes": workers,
        "API process": [server.process.pid for server in cluster.apis],
        "PostgreSQL": [pid for pid, (_, name, _) in stats.items() if name == "postgres"],
    }


def _stat(pid: int) -> tuple[int, str, float] | None:
    """(parent pid, command name, CPU seconds: user + system) of a process, None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    name, fields = text[text.index("(") + 1 : text.rindex(")")], text[text.rindex(")") + 2 :].split()
    return int(fields[1]), name, (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_seconds(roles: dict[str, list[int]]) -> dict[str, float]:
    return {kind: sum(stat[2] for stat in map(_stat, pids) if stat is not None) for kind, pids in roles.items()}


def engine_rate(processes: int, image: bytes, count: int) -> float:
    """Images per second of ``processes`` processes each running the engine alone (process_image,
    no queue, no service) ``count`` times on the image: the machine's own ceiling for the speed-up."""
    context = multiprocessing.get_context("spawn")
    ready, go = context.Barrier(processes + 1), context.Event()
    runners = [context.Process(target=_engine_loop, args=(image, count, ready, go)) for _ in range(processes)]
    for runner in runners:
        runner.start()
    ready.wait()
    started = time.monotonic()
    go.set()
    for runner in runners:
        runner.join()
    return processes * count / (time.monotonic() - started)


def _engine_loop(image: bytes, count: int, ready, go) -> None:
    import cv2

    from vodimg.engine import process_image

    cv2.setNumThreads(1)
    for _ in range(2):
        process_image(image, HEAVY)  # warm: imports, first-run allocations
    ready.wait()
    go.wait()
    for _ in range(count):
        process_image(image, HEAVY)


def _run_all(client, tenant, request: dict, count: int, database) -> None:
    """Submit ``count`` tasks from 4 clients at once, then wait until all FINISH."""
    _wait_finished(_submit_all(tenant, request, count), database)


def _submit_all(tenant, request: dict, count: int) -> list[str]:
    ids: list[str] = []

    def submit(share: int) -> None:
        own = tenant.common()
        for _ in range(share):
            ids.append(own.call_json("ProcessImageAsync", request)["Response"]["TaskId"])

    threads = [threading.Thread(target=submit, args=(share,)) for share in _shares(count, 4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return ids


def _wait_finished(ids: list[str], database) -> None:
    """Wait until every task of ``ids`` is FINISH with ErrCode 0 (read from the database: polling the
    API would take CPU from the workers being measured)."""
    deadline = time.monotonic() + 600
    while True:
        with database.read() as conn:
            rows = conn.execute(sa.select(tasks.c.status, tasks.c.err_code).where(tasks.c.task_id.in_(ids))).all()
        if all(status == "FINISH" for status, _ in rows):
            assert all(code == 0 for _, code in rows), rows
            return
        if time.monotonic() > deadline:
            raise RuntimeError("the tasks did not finish within 600 s")
        time.sleep(0.02)


def _shares(count: int, parts: int) -> list[int]:
    return [count // parts + (1 if index < count % parts else 0) for index in range(parts)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--claims", type=int, default=20000, help="no-op tasks per claim-rate run")
    parser.add_argument("--images", type=int, default=48, help="1080p tasks per worker-scaling round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--skip-claims", action="store_true")
    parser.add_argument("--skip-workers", action="store_true")
    args = parser.parse_args()
    server = _postgres_url()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}; shared with other programs: absolute rates are rough, "
          "ratios are against a baseline of the same run")
    if not args.skip_claims:
        print("\nclaim plan (20000 WAITING tasks):\n" + claim_plan(server))
        rows = []
        for processes, threads in CONNECTION_LAYOUTS:
            count = args.claims if processes * threads > 1 else max(2000, args.claims // 5)
            rows.append((processes, threads, *claim_rate(server, count, processes, threads)))
        base = rows[0][2]
        print("\n| connections (processes x threads) | tasks | claimed+finished/s | vs 1 connection |\n|---|---|---|---|")
        for processes, threads, rate, done in rows:
            print(f"| {processes * threads} ({processes} x {threads}) | {done} | {rate:.0f} | {rate / base:.2f} |")
    if not args.skip_workers:
        raw = heavy_image()
        image = base64.b64encode(raw).decode()
        best: dict[int, WorkerRound] = {}
        engine_best = {1: 0.0, 2: 0.0}
        with tempfile.TemporaryDirectory() as workdir:
            for round_ in range(args.rounds):
                for workers in (1, 2):
                    engine = engine_rate(workers, raw, args.images // 2)
                    engine_best[workers] = max(engine_best[workers], engine)
                    measured = worker_rate(Path(workdir), server, workers, args.images, image)
                    print(f"round {round_ + 1}, {workers} worker process(es): {measured.rate:.3f} tasks/s; "
                          f"engine alone in {workers} process(es): {engine:.3f} images/s", flush=True)
                    if workers not in best or measured.rate > best[workers].rate:
                        best[workers] = measured
        speedup, ceiling = best[2].rate / best[1].rate, engine_best[2] / engine_best[1]
        print(f"\n| 1920x1080 JPEG, quality+colour+sharpen, {args.images} tasks | per second (best of {args.rounds}) "
              f"| speed-up |\n|---|---|---|")
        print(f"| engine alone, 1 process (no service) | {engine_best[1]:.3f} | 1.00 |")
        print(f"| engine alone, 2 processes (the machine's ceiling) | {engine_best[2]:.3f} | {ceiling:.2f} |")
        print(f"| 1 worker process (baseline) | {best[1].rate:.3f} | 1.00 |")
        print(f"| 2 worker processes | {best[2].rate:.3f} | {speedup:.2f} (goal >= {SCALING_GOAL}: "
              f"{'met' if speedup >= SCALING_GOAL else 'NOT met'}; {speedup / ceiling:.0%} of the ceiling) |")
        kinds = list(best[1].cpu_ms)
        print("\nCPU ms per task in the measured window, by process (engine alone: "
              f"{1000 / engine_best[1]:.1f} ms an image)\n\n| workers | " + " | ".join(kinds) + " | all |")
        print("|---|" + "---|" * (len(kinds) + 1))
        for workers, measured in sorted(best.items()):
            print(f"| {workers} | " + " | ".join(f"{measured.cpu_ms[kind]:.1f}" for kind in kinds)
                  + f" | {sum(measured.cpu_ms.values()):.1f} |")


if __name__ == "__main__":
    main()
