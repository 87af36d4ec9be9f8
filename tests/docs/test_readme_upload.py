"""The README's upload example runs as written against a real server: ApplyUpload, the upload with
``cos-python-sdk-v5``, CommitUpload, ProcessImageAsync on the FileId, and the download (the only
change: the server's port)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from PIL import Image

from tests.docs.readme import sdk_script
from tests.e2e.server import started
from tests.e2e.tasks import small_photo_jpeg

pytestmark = pytest.mark.slow


def test_the_readme_upload_process_download_example_works(tmp_path):
    server = started(tmp_path / "data", extra_args=("--engine-processes", "1"))
    try:
        tenant = server.new_tenant()
        script = sdk_script("Uploading images: ApplyUpload, the COS upload, CommitUpload", tenant, server.endpoint)
        (tmp_path / "holiday.jpg").write_bytes(small_photo_jpeg(96))
        result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                                timeout=300)
        assert result.returncode == 0, result.stderr
        with Image.open(tmp_path / "holiday-2x.jpg") as output:
            assert output.size == (192, 192)  # preset 10: 2x super-resolution
    finally:
        server.stop()
        server.close_accounts()
