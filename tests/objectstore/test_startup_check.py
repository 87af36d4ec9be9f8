"""The start-up check from the command line: ``vodimg serve`` and ``vodimg worker`` with a missing
bucket or a wrong key stop at once with one clear line and exit status 2; and the S3 settings."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.e2e.server import REPO_ROOT, free_port, vodimg_command
from vodimg.config import ConfigError, Settings


def run_vodimg(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("VODIMG_", "AWS_"))}
    return subprocess.run([*vodimg_command(), *args], env={**clean, **env}, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)


def test_serve_with_a_missing_bucket_exits_2_with_one_line(moto_s3, tmp_path):
    done = run_vodimg(["serve", "--port", str(free_port()), "--data-dir", str(tmp_path / "data"),
                       "--storage-url", "s3://no-such-bucket/media"], moto_s3.environment())
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip().splitlines() == [
        f"vodimg serve: object store: S3 bucket 'no-such-bucket' does not exist at {moto_s3.endpoint} "
        "(create it, or fix --storage-url / VODIMG_STORAGE_URL)"]
    assert "API endpoint" not in done.stdout


def test_worker_with_a_wrong_secret_exits_2_with_one_line(swift_s3, tmp_path):
    bucket = swift_s3.new_bucket()
    env = {**swift_s3.environment(), "AWS_SECRET_ACCESS_KEY": "wrong"}
    done = run_vodimg(["worker", "--data-dir", str(tmp_path / "data"), "--storage-url", f"s3://{bucket}"], env)
    assert done.returncode == 2, done.stdout + done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"vodimg worker: object store: S3 at {swift_s3.endpoint} refused the credentials "
                           "(SignatureDoesNotMatch): check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")


def test_worker_starts_on_a_good_bucket_and_leaves_no_probe(swift_s3, tmp_path):
    bucket = swift_s3.new_bucket()
    env = {**swift_s3.environment(), "VODIMG_ENGINE_PROCESSES": "1"}
    process = subprocess.Popen([*vodimg_command(), "worker", "--data-dir", str(tmp_path / "data"),
                                "--storage-url", f"s3://{bucket}/prefix"], cwd=REPO_ROOT, text=True,
                               env={**{k: v for k, v in os.environ.items() if not k.startswith("VODIMG_")}, **env},
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        lines = iter(process.stdout.readline, "")
        assert any("vodimg: worker with 1 engine processes" in line for line in lines)
    finally:
        process.terminate()
        process.wait(30)
    assert swift_s3.client().list_objects_v2(Bucket=bucket).get("KeyCount") == 0


@pytest.mark.parametrize("env, message", [
    ({"VODIMG_S3_ADDRESSING": "sideways"}, "VODIMG_S3_ADDRESSING must be path or virtual"),
    ({"VODIMG_S3_PRESIGNED_DOWNLOADS": "on"}, "needs an s3:// --storage-url"),
    ({"VODIMG_S3_PRESIGNED_DOWNLOADS": "maybe"}, "use on or off"),
    ({"VODIMG_STORAGE_URL": "s3://b", "VODIMG_S3_PRESIGN_SECONDS": "0"}, "between 1 and 604800"),
    ({"VODIMG_S3_ENDPOINT": "127.0.0.1:9000"}, "must start with http:// or https://"),
])
def test_bad_s3_settings_are_config_errors(env, message):
    with pytest.raises(ConfigError, match=message):
        Settings.from_env_and_args(env=env)


def test_s3_settings_from_the_environment():
    settings = Settings.from_env_and_args(env={
        "VODIMG_STORAGE_URL": "s3://bucket/media", "VODIMG_S3_ENDPOINT": "http://127.0.0.1:9000",
        "VODIMG_S3_ADDRESSING": "virtual", "VODIMG_S3_PRESIGNED_DOWNLOADS": "on", "VODIMG_S3_PRESIGN_SECONDS": "60"})
    assert settings.s3_options.endpoint == "http://127.0.0.1:9000"
    assert settings.s3_options.addressing == "virtual"
    assert settings.presign_seconds == 60
    assert Settings.from_env_and_args(env={"VODIMG_STORAGE_URL": "s3://bucket"}).presign_seconds is None
