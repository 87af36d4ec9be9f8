"""The README's upload example runs as written against a real server: ApplyUpload, the upload with
``cos-python-sdk-v5``, CommitUpload, ProcessImageAsync on the FileId, and the download (the only
change: the server's port)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from PIL import Image

from tests.docs.readme import python_blocks
from tests.e2e.server import started
from tests.e2e.tasks import small_photo_jpeg

pytestmark = pytest.mark.slow


def test_the_readme_upload_process_download_example_works(tmp_path):
    server = started(tmp_path / "data", extra_args=("--engine-processes", "1"))
    try:
        tenant = server.new_tenant()
        (setup,) = python_blocks("Using it from the official SDK")
        (flow,) = python_blocks("Uploading images: ApplyUpload, the COS upload, CommitUpload")
        keys = (f"SECRET_ID, SECRET_KEY, SUB_APP_ID = {tenant.secret_id!r}, {tenant.secret_key!r}, "
                f"{tenant.sub_app_id}\n")
        script = (keys + setup + flow).replace("127.0.0.1:9000", server.endpoint)
        (tmp_path / "holiday.jpg").write_bytes(small_photo_jpeg(96))
        result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                                timeout=300)
        assert result.returncode == 0, result.stderr
        with Image.open(tmp_path / "holiday-2x.jpg") as output:
            assert output.size == (192, 192)  # preset 10: 2x super-resolution
    finally:
        server.stop()
        server.close_accounts()
