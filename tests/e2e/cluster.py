"""A scale-out deployment on loopback: API-only ``vodimg serve`` processes and ``vodimg worker``
processes sharing one PostgreSQL database and one object store (DESIGN.md section 8).

Used by the multi-process end-to-end tests, ``bench/scaling.py`` and ``bench/faults.py``. Every
process gets the same database URL, storage URL, public URL (the first API process's, standing in
for the reverse proxy) and default key; each may be killed and started again on its own.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.e2e.server import REPO_ROOT, START_TIMEOUT, Server, Tenant, free_port, new_key, vodimg_command

WORKER_READY = "vodimg: worker with"


@dataclass
class WorkerProcess:
    """One ``vodimg worker`` process."""
    data_dir: Path
    args: tuple[str, ...]
    env: dict[str, str]
    process: subprocess.Popen | None = None
    log_path: Path | None = None
    starts: int = 0

    def start(self, wait: bool = True) -> "WorkerProcess":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}-worker-{self.starts}.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen([*vodimg_command(), "worker", "--data-dir", str(self.data_dir), *self.args],
                                            stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=REPO_ROOT)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"vodimg worker exited with {self.process.returncode}:\n{self.output()}")
            if WORKER_READY in self.output():
                return
            time.sleep(0.05)
        raise RuntimeError(f"vodimg worker did not start within {START_TIMEOUT} s:\n{self.output()}")

    def output(self) -> str:
        return self.log_path.read_text("utf-8", "replace") if self.log_path else ""

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """kill -9 (its engine children notice their parent is gone and exit)."""
        if self.alive():
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.alive():
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        self.process = None


@dataclass
class Cluster:
    root: Path
    database_url: str
    storage_url: str | None = None  # None: a local directory shared by all processes
    extra_env: dict[str, str] = field(default_factory=dict)
    apis: list[Server] = field(default_factory=list)
    workers: list[WorkerProcess] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.secret_id, self.secret_key = new_key()
        self.ports = []
        if self.storage_url is None:
            self.storage_url = str(self.root / "objects")

    def common_args(self) -> tuple[str, ...]:
        return ("--database-url", self.database_url, "--storage-url", self.storage_url,
                "--public-url", f"http://127.0.0.1:{self.ports[0]}")

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VODIMG_")}
        env.update(VODIMG_RATE_LIMIT="0", VODIMG_SECRET_ID=self.secret_id, VODIMG_SECRET_KEY=self.secret_key,
                   OMP_NUM_THREADS="1", **self.extra_env)
        return env

    def start(self, apis: int = 2, workers: int = 2, engine_processes: int = 1) -> "Cluster":
        self.ports = [free_port() for _ in range(apis)]
        for index, port in enumerate(self.ports):
            self.apis.append(Server(self.root / f"api{index}", self.secret_id, self.secret_key,
                                    database_url=self.database_url, port=port,
                                    extra_args=("--engine-processes", "0", *self.common_args()[2:]),
                                    extra_env=dict(self.environment())))
        self.apis[0].start()  # the first migrates and creates the default account; the rest at once
        for server in self.apis[1:]:
            server.start()
        for index in range(workers):
            self.add_worker(engine_processes, index)
        return self

    def add_worker(self, engine_processes: int = 1, index: int | None = None, wait: bool = True) -> WorkerProcess:
        index = len(self.workers) if index is None else index
        worker = WorkerProcess(self.root / f"worker{index}",
                               ("--engine-processes", str(engine_processes), *self.common_args()),
                               self.environment())
        self.workers.append(worker.start(wait))
        return worker

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        for server in self.apis:
            server.stop()
            server.close_accounts()

    def new_tenant(self) -> Tenant:
        return self.apis[0].new_tenant()

    def on(self, tenant: Tenant, index: int) -> Tenant:
        """The same account, talking to API process ``index``."""
        return Tenant(self.apis[index], tenant.app_id, tenant.sub_app_id, tenant.secret_id, tenant.secret_key)

    def logs(self) -> str:
        parts = [f"--- api {server.port}\n{server.output()[-3000:]}" for server in self.apis]
        parts += [f"--- worker {index}\n{worker.output()[-3000:]}" for index, worker in enumerate(self.workers)]
        return "\n".join(parts)


@contextlib.contextmanager
def cluster_api(request, root: Path, prefix: str, extra_env: dict[str, str]):
    """For the end-to-end tests' ``cluster`` parameter: PostgreSQL (a fresh schema) + moto's S3 +
    two API-only processes + two ``vodimg worker`` processes (one engine process each). Yields the
    SECOND API process (the first stands in for the proxy's public URL), with ``.cluster`` set."""
    from tests.conftest import fresh_postgres_schema

    moto = request.getfixturevalue("moto_s3")
    bucket = moto.new_bucket()
    with fresh_postgres_schema(request.getfixturevalue("postgres_server_url"), prefix) as url:
        cluster = Cluster(root, url, f"s3://{bucket}/media", {**moto.environment(), **extra_env})
        try:
            cluster.start(apis=2, workers=2, engine_processes=1)
            server = cluster.apis[1]
            server.cluster = cluster
            server.s3 = (moto, bucket, "media")  # as the media tests' S3 server describes its bucket
            yield server
        finally:
            cluster.stop()


@contextlib.contextmanager
def backend_server(request, tmp_path_factory, name: str, extra_env: dict[str, str]):
    """The end-to-end modules' server for the backend ``request.param`` names: ``sqlite`` (the
    embedded default), ``postgres`` (a fresh schema), ``s3`` (SQLite + a bucket on moto's server) or
    ``cluster`` (``cluster_api``); one engine process. ``server.s3`` is (moto, bucket, prefix) or None."""
    from tests.conftest import fresh_postgres_schema
    from tests.e2e.server import started

    backend = request.param
    root = tmp_path_factory.mktemp(f"{name}-{backend}")
    if backend == "cluster":
        with cluster_api(request, root, f"vodimg_{name}_cluster", extra_env) as server:
            yield server
        return
    with contextlib.ExitStack() as stack:
        database_url, s3, args, env = None, None, ["--engine-processes", "1"], dict(extra_env)
        if backend == "postgres":
            database_url = stack.enter_context(
                fresh_postgres_schema(request.getfixturevalue("postgres_server_url"), f"vodimg_{name}"))
        if backend == "s3":
            moto = request.getfixturevalue("moto_s3")
            s3 = (moto, moto.new_bucket(), "media")
            args += ["--storage-url", f"s3://{s3[1]}/{s3[2]}"]
            env.update(moto.environment())
        server = started(root / "data", database_url=database_url, extra_args=tuple(args), extra_env=env)
        server.s3 = s3
        try:
            yield server
        finally:
            server.stop()
            server.close_accounts()
