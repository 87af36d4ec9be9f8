"""The short fault run (bench/faults.py): PostgreSQL of its own + moto's S3 + 2 API-only processes
+ 2 workers; 100 tasks while 5 processes are killed with kill -9 and restarted and PostgreSQL
restarts once. Nothing may be lost, duplicated, orphaned or delivered twice."""

from __future__ import annotations

import os

import pytest

from bench.faults import Unavailable, _as_server_user, postgres_bin, run

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def test_kill_9_and_a_postgres_restart_lose_and_duplicate_nothing(tmp_path, moto_s3):
    try:
        postgres_bin()
        _as_server_user()
    except Unavailable as missing:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{missing} (CI=true: PostgreSQL is required)")
        pytest.skip(str(missing))
    report = run(tmp_path, tasks=100, kills=5, every=2.5, apis=2, workers=2)
    print(report.table())
    assert report.kills == 5 and report.pg_restarts == 1
    assert report.tasks == 100
    assert (report.lost, report.duplicated, report.orphaned) == (0, 0, 0), report
    assert (report.events_missing, report.events_duplicated) == (0, 0), report
