"""Event delivery: from a task's FINISH to its event's arrival, and PUSH throughput.

    python -m bench.events_latency [--tasks 500] [--baseline-tasks 100] [--push-events 2000]

Runs a real ``vodimg serve`` (SQLite, one engine process, the API and worker in one process) and
measures, over ``--tasks`` tiny image tasks submitted one after another:

- PULL: FINISH to the answer of a PullEvents that was waiting when the task finished;
- PUSH: FINISH to the POST's arrival at a receiver on loopback (127.0.0.2);
- baseline: FINISH to the moment a client polling DescribeTaskDetail every 20 ms sees FINISH
  (what a client does without events).

FINISH is the worker's finishing transaction: the event's ``created_ms``, stamped inside it (the
tasks table's FinishTime has one-second resolution). A trigger the benchmark adds to the server's
database copies each event's TaskId and ``created_ms`` aside, because delivered events are deleted.

Throughput: ``--push-events`` events written at once (by this process: the server finds them by
polling) and posted to a receiver that answers at once, against a baseline of the same POSTs
through the same guarded HTTP client at the same concurrency, from a process of its own, without
the database (the bare cost of the HTTP posts).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import orjson
import sqlalchemy as sa

from vodimg.events import insert_event
from vodimg.netguard import UrlPolicy, post_json_async
from vodimg.netguard.addresses import parse_allow
from tests.e2e.receiver import Receiver
from tests.e2e.server import started
from tests.e2e.tasks import b64, create_template, small_photo_png, submit

COMPLETE = "ProcessImageAsyncCompleteEvent"
CONCURRENCY = 16
SERVER_ENV = {"VODIMG_URL_ALLOW": "127.0.0.2/32", "VODIMG_EVENT_POLL_SECONDS": "0.05",
              "VODIMG_PUSH_CONCURRENCY": str(CONCURRENCY), "OMP_NUM_THREADS": "1"}
TRIGGER = """
CREATE TRIGGER IF NOT EXISTS bench_event_times AFTER INSERT ON events BEGIN
  INSERT INTO bench_event_times VALUES (json_extract(NEW.content, '$.{0}.TaskId'), NEW.created_ms);
END""".format(COMPLETE)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def install_trigger(database) -> None:
    with database.write() as conn:
        conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS bench_event_times (task_id TEXT, created_ms INTEGER)")
        conn.exec_driver_sql(TRIGGER)


def created_ms(database, task_id: str) -> int:
    with database.read() as conn:
        return conn.execute(sa.text("SELECT created_ms FROM bench_event_times WHERE task_id = :t"),
                            {"t": task_id}).scalar()


def wait_for(condition, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.0005)
    raise RuntimeError("timed out")


def measure_pull(tenant, database, definition: int, image: str, count: int) -> list[float]:
    arrivals: dict[str, float] = {}
    done = threading.Event()

    def puller() -> None:
        while not done.is_set():
            got = tenant.call("PullEvents", {"SubAppId": tenant.sub_app_id})["EventSet"] or []
            now = time.time()
            for event in got:
                arrivals.setdefault(event[COMPLETE]["TaskId"], now)
            if got:
                tenant.call("ConfirmEvents", {"SubAppId": tenant.sub_app_id,
                                              "EventHandles": [event["EventHandle"] for event in got]})

    thread = threading.Thread(target=puller, daemon=True)
    thread.start()
    latencies = []
    for _ in range(count):
        time.sleep(0.01)  # the puller is back in its waiting PullEvents
        task_id = submit(tenant, definition, Base64=image)
        wait_for(lambda: task_id in arrivals)
        latencies.append(arrivals[task_id] * 1000 - created_ms(database, task_id))
    done.set()
    return latencies


def measure_push(tenant, database, receiver: Receiver, definition: int, image: str, count: int) -> list[float]:
    path = f"/latency-{tenant.sub_app_id}"
    tenant.call("ModifyEventConfig", {"SubAppId": tenant.sub_app_id, "Mode": "PUSH",
                                      "NotificationUrl": receiver.url(path), "SignKey": "BenchKey1"})
    latencies = []
    for _ in range(count):
        task_id = submit(tenant, definition, Base64=image)
        wait_for(lambda: any(body[COMPLETE]["TaskId"] == task_id for body in receiver.bodies(path)[-3:]))
        arrived = next(at for where, body, at, _ in reversed(receiver.received)
                       if where == path and body[COMPLETE]["TaskId"] == task_id)
        latencies.append(arrived * 1000 - created_ms(database, task_id))
    return latencies


def measure_polling(tenant, database, definition: int, image: str, count: int) -> list[float]:
    latencies = []
    for _ in range(count):
        task_id = submit(tenant, definition, Base64=image)
        while True:
            answer = tenant.call("DescribeTaskDetail", {"SubAppId": tenant.sub_app_id, "TaskId": task_id})
            if answer["Status"] == "FINISH":
                break
            time.sleep(0.02)
        latencies.append(time.time() * 1000 - created_ms(database, task_id))
    return latencies


def measure_push_throughput(server, tenant, receiver: Receiver, count: int) -> float:
    path = f"/throughput-{tenant.sub_app_id}"
    tenant.call("ModifyEventConfig", {"SubAppId": tenant.sub_app_id, "Mode": "PUSH", "NotificationUrl": receiver.url(path)})
    database = server.accounts()._db
    with database.write() as conn:
        for index in range(count):
            insert_event(conn, tenant.sub_app_id, COMPLETE, {"EventType": COMPLETE, COMPLETE: {"TaskId": f"t{index}"}})
    started_at = time.monotonic()
    wait_for(lambda: len(receiver.bodies(path)) >= count, timeout=600)
    return count / (time.monotonic() - started_at)


def measure_bare_posts(receiver: Receiver, count: int) -> float:
    """In a process of its own, as the delivery loop is (not sharing the receiver's GIL)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(bare_posts, receiver.url("/bare"), count).result()


def bare_posts(url: str, count: int) -> float:
    policy = UrlPolicy(allow=parse_allow("127.0.0.2/32"))
    body = orjson.dumps({"EventType": COMPLETE, COMPLETE: {"TaskId": "bare"}})

    async def run() -> float:
        semaphore = asyncio.Semaphore(CONCURRENCY)

        async def one() -> None:
            async with semaphore:
                await post_json_async(url, body, policy)

        started_at = time.monotonic()
        await asyncio.gather(*(one() for _ in range(count)))
        return count / (time.monotonic() - started_at)

    return asyncio.run(run())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--baseline-tasks", type=int, default=100)
    parser.add_argument("--push-events", type=int, default=2000)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    receiver = Receiver().start()
    with tempfile.TemporaryDirectory() as scratch:
        server = started(Path(scratch) / "data", extra_args=("--engine-processes", "1"), extra_env=SERVER_ENV)
        try:
            database = server.accounts()._db
            install_trigger(database)
            image = b64(small_photo_png(16))
            tenants = [server.new_tenant() for _ in range(4)]
            definitions = [create_template(t, {"EncodeConfig": {"Format": "JPEG", "Quality": 80}}) for t in tenants]
            print(f"vodimg events benchmark: {args.tasks} tasks each way, Python {platform.python_version()}, "
                  f"{os.cpu_count()} CPUs (shared with other work: absolute figures are load-dependent)", flush=True)
            polling = measure_polling(tenants[2], database, definitions[2], image, args.baseline_tasks)
            pulled = measure_pull(tenants[0], database, definitions[0], image, args.tasks)
            pushed = measure_push(tenants[1], database, receiver, definitions[1], image, args.tasks)
            bare = measure_bare_posts(receiver, args.push_events)
            throughput = measure_push_throughput(server, tenants[3], receiver, args.push_events)
        finally:
            server.stop()
            server.close_accounts()
            receiver.stop()
    base_p50 = statistics.median(polling)
    print()
    print("| FINISH to arrival | tasks | p50 ms | p99 ms | p50 vs polling |")
    print("|---|---|---|---|---|")
    for name, values in (("polling DescribeTaskDetail every 20 ms (baseline)", polling),
                         ("waiting PullEvents, same process", pulled), ("PUSH to a receiver on loopback", pushed)):
        p50 = statistics.median(values)
        print(f"| {name} | {len(values)} | {p50:.1f} | {percentile(values, 0.99):.1f} | {p50 / base_p50:.2f}x |")
    print()
    print("| PUSH throughput | events | events/s | vs bare POSTs |")
    print("|---|---|---|---|")
    print(f"| bare guarded POSTs, {CONCURRENCY} at once, no database (baseline) | {args.push_events} | {bare:.0f} | 1.00x |")
    print(f"| PUSH delivery loop ({CONCURRENCY} at once, lease + delete per event) | {args.push_events} | "
          f"{throughput:.0f} | {throughput / bare:.2f}x |")
    print()
    print(f"Goals: PullEvents p50 <= 10 ms: {'met' if statistics.median(pulled) <= 10 else 'NOT met'}; "
          f"PUSH p50 <= 50 ms: {'met' if statistics.median(pushed) <= 50 else 'NOT met'}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
