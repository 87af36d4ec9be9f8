"""Task queue benchmarks (issue "ProcessImageAsync end to end"):

    python -m bench.tasks [--latency 200] [--throughput 1000] [--queue 3000] [--skip-postgres]

1. Latency from ProcessImageAsync to FINISH as DescribeTaskDetail sees it: a 64x64 PNG and a
   re-encode template, the embedded default (SQLite, in-process worker), one task at a time,
   polled every millisecond. Goal: p50 at most 20 ms.
2. Throughput: ``--throughput`` such tasks submitted by 8 concurrent SDK clients, 2 engine
   processes, embedded (SQLite) and on PostgreSQL: tasks per second from the first submission to the
   last FINISH.
3. The queue alone on PostgreSQL: no-op tasks claimed and finished per second by 2 worker processes,
   against procrastinate (``pip install -e .[bench]``) doing no-op jobs on the same server in the
   same run. Goal: at least 2x procrastinate.

PostgreSQL: VODIMG_TEST_POSTGRES_URL or the local server (database ``test``); each part uses a fresh
schema, dropped afterwards.
"""

from __future__ import annotations

import argparse
import base64
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import sqlalchemy as sa

from tests.conftest import DEFAULT_POSTGRES_URL, fresh_postgres_schema
from tests.e2e.server import started
from tests.e2e.tasks import small_photo_png
from vodimg.storage.schema import tasks

REENCODE = {"EncodeConfig": {"Format": "PNG"}}


def _postgres_url() -> str:
    return os.environ.get("VODIMG_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def _serve(data_dir: Path, database_url: str | None = None, engine_processes: int = 2):
    server = started(data_dir, database_url=database_url, extra_args=("--engine-processes", str(engine_processes)))
    tenant = server.new_tenant()
    definition = tenant.call("CreateProcessImageAsyncTemplate", {"SubAppId": tenant.sub_app_id, "Name": "bench",
                                                               "ProcessImageConfigure": REENCODE})["Definition"]
    return server, tenant, definition


def _request(tenant, definition: int, image: str) -> dict:
    return {"SubAppId": tenant.sub_app_id, "Base64": image, "ImageTaskInput": {"Definition": definition}}


# -- 1. latency ------------------------------------------------------------------------------------

def latency(count: int, workdir: Path) -> dict:
    server, tenant, definition = _serve(workdir / "latency")
    client = tenant.common()
    image = base64.b64encode(small_photo_png(64)).decode()
    try:
        for _ in range(10):  # warm up: connections, engine children, caches
            _submit_and_wait(client, tenant, definition, image)
        times = [_submit_and_wait(client, tenant, definition, image) for _ in range(count)]
    finally:
        server.stop()
        server.close_accounts()
    return {"p50": statistics.median(times) * 1000, "p99": _percentile(times, 0.99) * 1000, "n": count}


def _submit_and_wait(client, tenant, definition: int, image: str) -> float:
    began = time.perf_counter()
    task_id = client.call_json("ProcessImageAsync", _request(tenant, definition, image))["Response"]["TaskId"]
    while client.call_json("DescribeTaskDetail", {"SubAppId": tenant.sub_app_id, "TaskId": task_id})[
            "Response"]["Status"] != "FINISH":
        if time.perf_counter() - began > 60:
            raise RuntimeError(f"task {task_id} did not finish within 60 s")
        time.sleep(0.001)
    return time.perf_counter() - began


# -- 2. throughput -----------------------------------------------------------------------------------

def throughput(count: int, workdir: Path, database_url: str | None, label: str) -> float:
    server, tenant, definition = _serve(workdir / f"throughput-{label}", database_url)
    image = base64.b64encode(small_photo_png(64)).decode()
    database = server.accounts()._db
    clients = 8

    def submit_share(share: int) -> None:
        client = tenant.common()
        for _ in range(share):
            client.call_json("ProcessImageAsync", _request(tenant, definition, image))

    try:
        began = time.perf_counter()
        threads = [threading.Thread(target=submit_share, args=(count // clients,)) for _ in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        total = count // clients * clients
        while _finished(database, tenant.sub_app_id) < total:
            if time.perf_counter() - began > 600:
                raise RuntimeError("the tasks did not finish within 600 s")
            time.sleep(0.01)
        elapsed = time.perf_counter() - began
    finally:
        server.stop()
        server.close_accounts()
    return total / elapsed


def _finished(database, sub_app_id: int) -> int:
    with database.read() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(tasks).where(
            tasks.c.sub_app_id == sub_app_id, tasks.c.status == "FINISH")).scalar()


# -- 3. the queue alone --------------------------------------------------------------------------------

def _our_worker(url: str, ready, go, results) -> None:
    from vodimg.queue import TaskQueue
    from vodimg.storage.db import Database

    queue = TaskQueue(Database(url))
    queue.counts()  # connect before the clock starts
    ready.release()
    go.wait()
    done = 0
    while (task := queue.claim("bench", "2026-01-01T00:00:00Z")) is not None:
        queue.finish(task.task_id, task.attempt, {"err_code": 0, "message": "SUCCESS"})
        done += 1
    results.put((done, time.time()))


def our_queue(count: int, server_url: str) -> float:
    from vodimg.domain.accounts import AccountService
    from vodimg.storage.db import Database

    with fresh_postgres_schema(server_url, "vodimg_bench") as url:
        database = Database(url)
        database.migrate()
        app = AccountService(database).create_account()["SubAppId"]
        with database.write() as conn:
            conn.execute(tasks.insert(), [dict(
                task_id=f"{app}-ProcessImageAsync-{index:032x}t", sub_app_id=app, task_type="ProcessImageAsync",
                status="WAITING", priority=0, source="{}", input="{}", session_id="", session_context="",
                ext_info="", progress=0, err_code=0, message="", attempt=0, failures=0,
                create_time="2026-01-01T00:00:00Z", created_ms=0) for index in range(count)])
        database.dispose()
        return _drain(count, _our_worker, (url,))


def _procrastinate_app(url: str, asynchronous: bool = False):
    """procrastinate on the test schema of ``url``, with its no-op task: the sync connector to
    defer tasks, the async one to run a worker."""
    import procrastinate

    schema = url.rsplit("search_path%3D", 1)[1]
    base = url.split("?", 1)[0].replace("postgresql+psycopg://", "postgresql://")
    connector = procrastinate.PsycopgConnector if asynchronous else procrastinate.SyncPsycopgConnector
    app = procrastinate.App(connector=connector(conninfo=base, kwargs={"options": f"-csearch_path={schema}"}))

    @app.task(name="noop")
    def noop() -> None:
        return None

    return app, noop


def _procrastinate_worker(url: str, ready, go, results) -> None:
    import asyncio

    app, _noop = _procrastinate_app(url, asynchronous=True)

    async def run() -> None:
        async with app.open_async():
            ready.release()
            await asyncio.get_running_loop().run_in_executor(None, go.wait)
            await app.run_worker_async(concurrency=1, wait=False, install_signal_handlers=False)

    asyncio.run(run())
    results.put((0, time.time()))


def procrastinate_queue(count: int, server_url: str) -> float:
    with fresh_postgres_schema(server_url, "vodimg_bench_procrastinate") as url:
        app, noop = _procrastinate_app(url)
        with app.open():
            app.schema_manager.apply_schema()
            noop.batch_defer(*({} for _ in range(count)))
        return _drain(count, _procrastinate_worker, (url,))


def _drain(count: int, target, args) -> float:
    """Tasks per second of 2 worker processes, timed from when both are connected and ready."""
    context = multiprocessing.get_context("spawn")
    ready, go, results = context.Semaphore(0), context.Event(), context.Queue()
    processes = [context.Process(target=target, args=(*args, ready, go, results)) for _ in range(2)]
    for process in processes:
        process.start()
    for _ in processes:
        ready.acquire()
    began = time.time()
    go.set()
    ended = max(results.get()[1] for _ in processes)
    for process in processes:
        process.join()
    return count / (ended - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency", type=int, default=200)
    parser.add_argument("--throughput", type=int, default=1000)
    parser.add_argument("--queue", type=int, default=3000)
    parser.add_argument("--skip-postgres", action="store_true")
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as workdir:
        work = Path(workdir)
        lat = latency(args.latency, work)
        print(f"\n| latency, 64x64 PNG re-encode, embedded | p50 | p99 | goal |\n|---|---|---|---|")
        print(f"| ProcessImageAsync -> FINISH ({lat['n']} tasks) | {lat['p50']:.1f} ms | {lat['p99']:.1f} ms | "
              f"p50 <= 20 ms: {'met' if lat['p50'] <= 20 else 'NOT met'} |")
        rows = [("embedded (SQLite)", throughput(args.throughput, work, None, "sqlite"))]
        if not args.skip_postgres:
            with fresh_postgres_schema(_postgres_url(), "vodimg_bench_tp") as url:
                rows.append(("PostgreSQL", throughput(args.throughput, work, url, "postgres")))
        print(f"\n| throughput, {args.throughput} tasks, 8 clients, 2 engine processes | tasks/s |\n|---|---|")
        for label, rate in rows:
            print(f"| {label} | {rate:.0f} |")
    if args.skip_postgres:
        return
    ours = our_queue(args.queue, _postgres_url())
    theirs = procrastinate_queue(args.queue, _postgres_url())
    print(f"\n| queue alone, PostgreSQL, {args.queue} no-op tasks, 2 worker processes | tasks/s | ratio |\n|---|---|---|")
    print(f"| procrastinate {__import__('procrastinate').__version__} (baseline) | {theirs:.0f} | 1.00 |")
    print(f"| vodimg queue | {ours:.0f} | {ours / theirs:.2f} (goal >= 2: {'met' if ours >= 2 * theirs else 'NOT met'}) |")


if __name__ == "__main__":
    sys.exit(main())
