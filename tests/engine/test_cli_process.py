"""``vodimg process`` end to end, in a subprocess, on real image files."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from tests.engine.images import encode, photo
from vodimg.engine import codec

REPO = Path(__file__).resolve().parents[2]


def vodimg_process(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vodimg", "process", *map(str, args)],
        cwd=cwd, capture_output=True, text=True, timeout=120,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)},
    )  # fmt: skip


def write_config(tmp_path: Path, configure: dict) -> Path:
    path = tmp_path / "conf.json"
    path.write_text(json.dumps(configure))
    return path


def test_good_images_are_written_and_a_corrupt_one_gets_one_error_line(tmp_path):
    (tmp_path / "coffee.jpg").write_bytes(encode(photo("coffee"), ".jpg", 90))
    (tmp_path / "rocket.png").write_bytes(encode(photo("rocket"), ".png"))
    truncated = encode(photo("chelsea"), ".jpg", 90)
    (tmp_path / "broken.jpg").write_bytes(truncated[: len(truncated) // 3])
    config = write_config(tmp_path, {"EncodeConfig": {"Format": "webp", "Quality": 50}})

    done = vodimg_process("--config", config, "--out", tmp_path / "out", "--jobs", "2",
                          "coffee.jpg", "rocket.png", "broken.jpg", cwd=tmp_path)  # fmt: skip

    assert done.returncode == 1
    errors = done.stderr.strip().splitlines()
    assert len(errors) == 1 and "broken.jpg" in errors[0] and "truncated" in errors[0]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["coffee.webp", "rocket.webp"]
    assert sorted(done.stdout.split()) == sorted(str(tmp_path / "out" / n) for n in ("coffee.webp", "rocket.webp"))
    written = Image.open(tmp_path / "out" / "coffee.webp")
    assert written.format == "WEBP" and written.size == (600, 400)


def test_output_matches_the_engine_and_defaults_to_the_source_format(tmp_path):
    source = encode(photo("coffee"), ".jpg", 80)
    (tmp_path / "coffee.jpg").write_bytes(source)
    config = write_config(tmp_path, {"EncodeConfig": {"Quality": 50}})
    done = vodimg_process("--config", config, "--out", "out", "coffee.jpg", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    written = (tmp_path / "out" / "coffee.jpg").read_bytes()
    assert codec.estimate_jpeg_quality(Image.open(io.BytesIO(written)).quantization) == 40
    decoded = np.asarray(Image.open(io.BytesIO(written)))
    assert decoded.shape == (400, 600, 3)


def test_an_invalid_config_refuses_the_run_naming_the_parameter(tmp_path):
    (tmp_path / "coffee.jpg").write_bytes(encode(photo("coffee"), ".jpg", 90))
    config = write_config(tmp_path, {"EnhanceConfig": {"SharpEnhance": {"Switch": "ON", "Intensity": 3}}})
    done = vodimg_process("--config", config, "--out", "out", "coffee.jpg", cwd=tmp_path)
    assert done.returncode == 2
    assert "ProcessImageConfigure.EnhanceConfig.SharpEnhance.Intensity" in done.stderr
    assert not (tmp_path / "out").exists()


def test_bad_json_and_clashing_names_are_usage_errors(tmp_path):
    (tmp_path / "conf.json").write_text("{not json")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    done = vodimg_process("--config", "conf.json", "--out", "out", "a/x.jpg", cwd=tmp_path)
    assert done.returncode == 2 and "not valid JSON" in done.stderr
    config = write_config(tmp_path, {})
    done = vodimg_process("--config", config, "--out", "out", "a/x.jpg", "b/x.png", cwd=tmp_path)
    assert done.returncode == 2 and "would both be written" in done.stderr


def test_workers_report_progress_within_an_image(tmp_path):
    """The bar moves while one long image (super-resolution) is processed, not only after it."""
    import queue

    from vodimg.cli import process
    from vodimg.engine.limits import Limits

    image = tmp_path / "coffee.jpg"
    image.write_bytes(encode(photo("coffee")[:128, :128], ".jpg", 90))
    reports: queue.Queue = queue.Queue()
    process._init_worker(reports)
    try:
        configure = {"EnhanceConfig": {"SuperResolution": {"Switch": "ON", "Type": "hq", "Size": 2}}}
        written, error = process.process_file(image, tmp_path, configure, Limits())
    finally:
        process._progress_queue = None
    assert error is None and written.exists()
    fractions = _drain(reports, str(image))
    assert len(fractions) >= 3
    assert fractions == sorted(fractions) and 0.0 < fractions[0] < fractions[-1] <= 1.0


def _drain(reports, name: str) -> list[float]:
    found = []
    while not reports.empty():
        image, fraction = reports.get_nowait()
        assert image == name
        found.append(fraction)
    return found
