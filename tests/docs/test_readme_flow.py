"""The README's SDK examples run as written against a real server: create a template, then submit
an image, poll it to FINISH and download the output (the only change: the server's port)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from vodimg.engine import process_image
from vodimg.domain.presets import PRESETS_BY_DEFINITION
from tests.docs.readme import sdk_script
from tests.e2e.server import started
from tests.e2e.tasks import small_photo_jpeg

pytestmark = pytest.mark.slow


def test_the_readme_submit_poll_download_example_works(tmp_path):
    server = started(tmp_path / "data", extra_args=("--engine-processes", "1"))
    try:
        tenant = server.new_tenant()
        script = sdk_script("Processing an image: submit, poll, download", tenant, server.endpoint)
        source = small_photo_jpeg(160)
        (tmp_path / "photo.jpg").write_bytes(source)
        result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                                timeout=300)
        assert result.returncode == 0, result.stderr
        assert "FINISH 100" in result.stdout and result.stdout.splitlines()[0].startswith("10000")
        [output] = tmp_path.glob("photo-enhanced.*")
        assert output.read_bytes() == process_image(source, PRESETS_BY_DEFINITION[20].configure).data
    finally:
        server.stop()
        server.close_accounts()
