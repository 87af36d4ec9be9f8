"""Object-store throughput and memory: the S3 store against moto's server (and Swift's s3api when
``--swift`` is given), with the local directory store as the baseline measured in the same run.

    python -m bench.objectstore_s3 [--megabytes 64] [--small 200] [--swift]

Uses the test helpers that start the servers on loopback (moto needs the ``test`` extra; Swift is
installed into ``~/.cache/vodimg-tests`` on first use). Reports, per store: a streamed put of
``--megabytes`` MiB in 64 KiB chunks (multipart on S3) and its Python peak memory (tracemalloc, a
separate run), a streamed get of it, and ``--small`` puts of 10 KiB objects (put-once PUTs). Ratios
are against the local store of the same run; absolute figures depend on the machine's load.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import tracemalloc
import uuid
from pathlib import Path

from tests.objectstore.servers import start_moto, start_swift
from vodimg.objectstore import S3Options
from vodimg.objectstore.local import LocalObjectStore
from vodimg.objectstore.s3 import S3ObjectStore, make_client

CHUNK = 64 * 1024


def chunks(total: int):
    block = os.urandom(CHUNK)
    for sent in range(0, total, CHUNK):
        yield block[: min(CHUNK, total - sent)]


def measure(store, total: int, small: int) -> dict[str, float]:
    started = time.perf_counter()
    store.put("bench/big", chunks(total))
    put_seconds = time.perf_counter() - started
    started = time.perf_counter()
    received = sum(len(piece) for piece in store.open("bench/big"))
    get_seconds = time.perf_counter() - started
    assert received == total
    tracemalloc.start()
    store.put("bench/big-traced", chunks(total))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    body = os.urandom(10 * 1024)
    started = time.perf_counter()
    for index in range(small):
        store.put(f"bench/small/{index:05d}", body)
    small_seconds = time.perf_counter() - started
    mib = total / 2**20
    return {"put MiB/s": mib / put_seconds, "get MiB/s": mib / get_seconds,
            "put peak MiB": peak / 2**20, "small puts/s": small / small_seconds}


def s3_store(server) -> S3ObjectStore:
    for name, value in server.environment().items():
        os.environ[name] = value
    return S3ObjectStore(make_client(S3Options()), server.new_bucket(), f"bench-{uuid.uuid4().hex[:8]}/")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--megabytes", type=int, default=64)
    parser.add_argument("--small", type=int, default=200)
    parser.add_argument("--swift", action="store_true", help="also measure OpenStack Swift's s3api")
    args = parser.parse_args()
    total = args.megabytes * 2**20
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        rows = {"local (baseline)": measure(LocalObjectStore(work / "objects"), total, args.small)}
        stops = []
        try:
            moto, stop = start_moto(work)
            stops.append(stop)
            rows["s3 on moto"] = measure(s3_store(moto), total, args.small)
            if args.swift:
                swift, stop = start_swift(work / "swift")
                stops.append(stop)
                rows["s3 on swift"] = measure(s3_store(swift), total, args.small)
        finally:
            for stop in stops:
                stop()
    print(f"{args.megabytes} MiB streamed put/get, {args.small} puts of 10 KiB; ratios against the local store")
    columns = list(next(iter(rows.values())))
    print(f"{'store':18}" + "".join(f"{column:>22}" for column in columns))
    baseline = rows["local (baseline)"]
    for name, row in rows.items():
        cells = "".join(f"{row[c]:>12.1f} ({row[c] / baseline[c]:5.2f}x)" for c in columns)
        print(f"{name:18}{cells}")


if __name__ == "__main__":
    main()
