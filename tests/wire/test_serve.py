"""``vodimg serve`` as a user runs it: keys, authentication off, rate limit, HTTPS and tccli
(tccli over HTTPS after ``vodimg tls trust``, as the README says: tests/docs/test_readme_tccli.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import certifi
import httpx
import pytest
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException

from tests.e2e.server import REPO_ROOT, Server, new_key, started, vodimg_command
from tests.wire.raw import ACTION, answer, error_code, tc3_post


def _vodimg(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*vodimg_command(), *args], capture_output=True, text=True,
                          cwd=REPO_ROOT, env=env, timeout=60)


@pytest.mark.slow
def test_first_start_prints_a_key_once_and_it_works(tmp_path):
    server = Server(tmp_path / "data").start()
    try:
        key = server.printed_key()
        assert key is not None and key["SecretId"].startswith("AKID"), server.output()
        key_file = server.data_dir / "first-start-key.json"
        assert json.loads(key_file.read_text()) == key and key_file.stat().st_mode & 0o077 == 0
        server.secret_id, server.secret_key = key["SecretId"], key["SecretKey"]
        assert server.common().call_json(ACTION, {})["Response"]["TotalCount"] >= 1
        server.stop()
        server.start()
        assert server.printed_key() is None  # only the first start prints it
        assert server.common().call_json(ACTION, {})["Response"]["TotalCount"] >= 1
    finally:
        server.stop()


@pytest.mark.slow
def test_no_auth_accepts_skip_and_any_key_and_warns(tmp_path):
    server = started(tmp_path / "data", extra_args=("--no-auth",))
    try:
        assert "authentication is OFF" in server.output()
        headers = {"Content-Type": "application/json", "X-TC-Action": ACTION,
                   "X-TC-Version": "2018-07-17", "Authorization": "SKIP"}
        assert "Error" not in answer(httpx.post(server.url, content=b"{}", headers=headers))
        stranger_id, stranger_key = new_key()
        assert server.common(secret_id=stranger_id, secret_key=stranger_key).call_json(ACTION, {})
        # Still a protocol: versions and actions are checked.
        assert error_code(tc3_post(server, version="2020-01-01")) == "NoSuchVersion"
    finally:
        server.stop()


@pytest.mark.slow
def test_auth_off_by_environment(tmp_path):
    server = started(tmp_path / "data", extra_env={"VODIMG_AUTH": "off"})
    try:
        headers = {"Content-Type": "application/json", "X-TC-Action": ACTION,
                   "X-TC-Version": "2018-07-17", "Authorization": "SKIP"}
        assert "Error" not in answer(httpx.post(server.url, content=b"{}", headers=headers))
    finally:
        server.stop()


@pytest.mark.slow
def test_rate_limit_per_account_and_action(tmp_path):
    server = started(tmp_path / "data", extra_env={"VODIMG_RATE_LIMIT": "5"})
    try:
        codes = [error_code(tc3_post(server)) for _ in range(12)]
        assert codes.count(None) >= 5 and codes.count("RequestLimitExceeded") >= 1, codes
        # Another action has its own budget.
        other = tc3_post(server, b'{"Definition": 1}', action="DeleteProcessImageAsyncTemplate")
        assert error_code(other) != "RequestLimitExceeded"
        with pytest.raises(TencentCloudSDKException) as caught:
            for _ in range(12):
                server.common().call_json(ACTION, {})
        assert caught.value.code == "RequestLimitExceeded"
        time.sleep(1.2)
        assert error_code(tc3_post(server)) is None
    finally:
        server.stop()


def test_bad_settings_exit_with_a_message(tmp_path):
    env = {**os.environ, "VODIMG_PORT": "http"}
    result = _vodimg("serve", "--data-dir", str(tmp_path), env=env)
    assert result.returncode == 2 and "VODIMG_PORT" in result.stderr
    result = _vodimg("serve", "--data-dir", str(tmp_path), "--port", "9100", "--tls-cert", "x.pem",
                     "--tls-key", "x.key", env={k: v for k, v in os.environ.items() if not k.startswith("VODIMG_")})
    assert result.returncode == 2 and "--tls-port" in result.stderr


@pytest.mark.slow
def test_https_with_the_local_ca(tmp_path):
    server = started(tmp_path / "data", tls=True)
    try:
        ca = _vodimg("tls", "ca-path", "--data-dir", str(server.data_dir)).stdout.strip()
        assert Path(ca).is_file() and Path(ca).parent == (server.data_dir / "tls").resolve()
        client = server.common(https=True, certification=ca)
        assert client.call_json(ACTION, {"Limit": 1})["Response"]["TotalCount"] >= 1
        # HTTP keeps working beside HTTPS, and a client that does not trust the CA is refused.
        assert server.common().call_json(ACTION, {})["Response"]["TotalCount"] >= 1
        untrusting = server.common(https=True, certification=certifi.where() + ".missing")
        with pytest.raises(TencentCloudSDKException) as caught:
            untrusting.call_json(ACTION, {})
        assert caught.value.code == "ClientNetworkError"
    finally:
        server.stop()


@pytest.mark.slow
def test_several_api_processes_share_the_ports(tmp_path):
    server = started(tmp_path / "data", tls=True, extra_args=("--workers", "2"))
    try:
        assert "2 API processes" in server.output()
        ca = str(server.data_dir / "tls" / "ca.pem")
        for _ in range(10):
            assert server.common().call_json(ACTION, {})["Response"]["TotalCount"] >= 1
            assert server.common(https=True, certification=ca).call_json(ACTION, {})["Response"]["TotalCount"] >= 1
        # A template created through one process is seen through every other.
        created = server.common().call_json("CreateProcessImageAsyncTemplate", {
            "ProcessImageConfigure": {"EncodeConfig": {"Quality": 70}}})["Response"]["Definition"]
        for _ in range(6):
            listed = server.common().call_json(ACTION, {"Definitions": [created]})["Response"]
            assert listed["TotalCount"] == 1
        workers = subprocess.run(["pgrep", "-P", str(server.process.pid)], capture_output=True, text=True).stdout.split()
        assert len(workers) >= 2
        server.stop()
        time.sleep(0.5)
        assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()
                    and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()]
    finally:
        server.stop()


@pytest.mark.slow
def test_tccli_over_plain_http_with_configured_endpoint(tmp_path, server):
    # tccli sends the endpoint "http://127.0.0.1:PORT" as its Host and signs that: no TLS needed.
    tccli = shutil.which("tccli", path=str(Path(sys.executable).parent))
    env = {**os.environ, "HOME": str(tmp_path)}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([tccli, *args], capture_output=True, text=True, env=env, timeout=120)

    assert run("configure", "set", "secretId", server.secret_id, "secretKey", server.secret_key,
               "region", "ap-guangzhou").returncode == 0
    assert run("configure", "set", "vod.endpoint", f"http://127.0.0.1:{server.port}").returncode == 0
    created = run("vod", "CreateProcessImageAsyncTemplate", "--Name", "from tccli",
                  "--ProcessImageConfigure", '{"EncodeConfig": {"Format": "WebP", "Quality": 75}}')
    assert created.returncode == 0, created.stdout + created.stderr
    definition = json.loads(created.stdout)["Definition"]
    listed = run("vod", "DescribeProcessImageAsyncTemplates", "--Definitions", f"[{definition}]")
    item = json.loads(listed.stdout)["ProcessImageAsyncTemplateSet"][0]
    assert (item["Name"], item["ProcessImageConfigure"]["EncodeConfig"]) == ("from tccli", {"Format": "WebP", "Quality": 75})


@pytest.mark.slow
@pytest.mark.postgres
def test_unexpected_failure_is_internal_error_logged_with_request_id(tmp_path, postgres_url):
    import sqlalchemy as sa

    server = started(tmp_path / "data", database_url=postgres_url)
    engine = sa.create_engine(postgres_url)
    try:
        assert server.common().call_json(ACTION, {})["Response"]["TotalCount"] >= 1
        with engine.begin() as conn:  # the database breaks under the running server (Describe
            # reads the application's templates_version on every call, the templates when it changed)
            conn.execute(sa.text("ALTER TABLE applications RENAME TO applications_gone"))
        body = answer(tc3_post(server))
        assert body["Error"]["Code"] == "InternalError"
        assert body["RequestId"] in body["Error"]["Message"]
        assert "Traceback" not in body["Error"]["Message"] and "applications" not in body["Error"]["Message"]
        deadline = time.monotonic() + 5
        while f"InternalError RequestId={body['RequestId']}" not in server.output() and time.monotonic() < deadline:
            time.sleep(0.05)
        log = server.output()
        assert f"InternalError RequestId={body['RequestId']}" in log and "Traceback" in log
        with pytest.raises(TencentCloudSDKException) as caught:
            server.common().call_json(ACTION, {})
        assert caught.value.code == "InternalError"
    finally:
        server.stop()
        engine.dispose()
