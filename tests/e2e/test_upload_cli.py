"""``vodimg upload`` against ``vodimg serve`` on loopback: the three steps with the official clients,
a multipart upload, JSON lines out, and a bad file reported without stopping the others."""

from __future__ import annotations

import json
import subprocess

import httpx
import pytest

from tests.e2e.media import noisy_png
from tests.e2e.server import REPO_ROOT, started, vodimg_command
from tests.e2e.tasks import small_photo_jpeg

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = started(tmp_path_factory.mktemp("upload-cli") / "data", extra_args=("--engine-processes", "0"))
    yield server
    server.stop()
    server.close_accounts()


def _upload(server, *args: str, env_key: bool = True) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "VODIMG_ENDPOINT": server.endpoint}
    if env_key:
        env.update(VODIMG_SECRET_ID=server.secret_id, VODIMG_SECRET_KEY=server.secret_key)
    return subprocess.run([*vodimg_command(), "upload", "--no-progress", *args], capture_output=True, text=True,
                          env=env, cwd=REPO_ROOT, timeout=120)


def test_upload_prints_file_id_and_media_url_per_file(server, tmp_path):
    small, big, bad = tmp_path / "small.jpg", tmp_path / "big.png", tmp_path / "program.exe"
    small.write_bytes(small_photo_jpeg())
    big.write_bytes(noisy_png(800))  # about 1.9 MB: multipart
    bad.write_bytes(b"MZ not an image")
    done = _upload(server, str(small), str(bad), str(big))
    assert done.returncode == 1
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["File"] for line in lines] == [str(small), str(big)]
    for line, path in zip(lines, (small, big)):
        assert len(line["FileId"]) == 19 and httpx.get(line["MediaUrl"]).content == path.read_bytes()
    [error] = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    assert error["File"] == str(bad) and error["Error"]["Code"] == "InvalidParameterValue.MediaType"


def test_upload_without_a_key_says_how_to_give_one(server, tmp_path):
    done = _upload(server, str(tmp_path / "x.jpg"), env_key=False)
    assert done.returncode == 2 and "--secret-id" in done.stderr


def test_upload_with_options_instead_of_environment(server, tmp_path):
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(small_photo_jpeg())
    done = _upload(server, "--secret-id", server.secret_id, "--secret-key", server.secret_key,
                   "--media-name", "named", str(photo), env_key=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["MediaUrl"].endswith("/named.jpg")
