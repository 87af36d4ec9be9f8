"""``vodimg process`` end to end, in a subprocess, on real image files."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from tests.engine.images import encode, photo
from vodimg.engine import codec

REPO = Path(__file__).resolve().parents[2]


def vodimg_process(*args: str | Path, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vodimg", "process", *map(str, args)],
        cwd=cwd, capture_output=True, text=True, timeout=120,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), **(env or {})},
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


def test_a_hang_is_stopped_by_the_time_limit_and_warnings_name_their_image(tmp_path):
    from tests.worker.test_engine_pool import png_with_trailing_data

    (tmp_path / "slow.png").write_bytes(png_with_trailing_data(8))  # 16 s of native inflating
    whole = encode(photo("coffee"), ".jpg", 90)
    (tmp_path / "cut.jpg").write_bytes(whole[: len(whole) // 2] + b"\xff\xd9")  # libjpeg warns
    (tmp_path / "coffee.jpg").write_bytes(whole)
    config = write_config(tmp_path, {})

    started = time.monotonic()
    done = vodimg_process("--config", config, "--out", "out", "--jobs", "2", "slow.png", "cut.jpg",
                          "coffee.jpg", cwd=tmp_path, env={"VODIMG_MAX_SECONDS": "1"})  # fmt: skip

    assert time.monotonic() - started < 12
    assert done.returncode == 1
    assert sorted(done.stderr.strip().splitlines()) == [
        "vodimg process: cut.jpg: warning: Corrupt JPEG data: premature end of data segment",
        "vodimg process: slow.png: processing took longer than the limit of 1 s (VODIMG_MAX_SECONDS); "
        "the engine process was stopped",
    ]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["coffee.jpg", "cut.jpg"]


def test_paths_are_printed_above_the_bar_which_moves_within_an_image(tmp_path):
    """The issue: paths were printed onto the bar's line (``55%|████| 1.7/3 [00:01]out/a.jpg``).
    Run in a pseudo-terminal, as a person sees it; the first image takes a second or two."""
    (tmp_path / "big.jpg").write_bytes(encode(photo("coffee")[:400, :400], ".jpg", 90))
    (tmp_path / "a.jpg").write_bytes(encode(photo("rocket")[:64, :64], ".jpg", 90))
    (tmp_path / "b.png").write_bytes(encode(photo("chelsea")[:64, :64], ".png"))
    config = write_config(tmp_path, {"EnhanceConfig": {"SuperResolution": {"Switch": "ON", "Type": "hq", "Size": 2}}})

    returncode, screen = run_in_terminal(
        [sys.executable, "-m", "vodimg", "process", "--config", str(config), "--out", str(tmp_path / "out"),
         "--jobs", "1", "big.jpg", "a.jpg", "b.png"], cwd=tmp_path,
    )  # fmt: skip

    assert returncode == 0, screen
    lines = visible_lines(screen)
    for name in ("big.jpg", "a.jpg", "b.png"):
        assert str(tmp_path / "out" / name) in lines, lines
    assert re.search(r"\| 0\.[1-9]/3 \[", screen), screen  # moved while on the first image
    assert "3.0/3" in lines[-1]


def run_in_terminal(command: list[str], cwd: Path) -> tuple[int, str]:
    """Run with stdout and stderr on one pseudo-terminal 200 columns wide; all it printed."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 200, 0, 0))
    child = subprocess.Popen(command, cwd=cwd, stdin=slave, stdout=slave, stderr=slave,
                             env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)})  # fmt: skip
    os.close(slave)
    output = bytearray()
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
    os.close(master)
    return child.wait(120), output.decode("utf-8", "replace")


def visible_lines(screen: str) -> list[str]:
    """What a terminal shows line by line: a carriage return goes back to column 0 and what is
    written next overwrites what was there."""
    screen = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen)
    lines, line, column = [], [], 0
    for char in screen:
        if char == "\n":
            lines.append("".join(line).rstrip())
            line, column = [], 0
        elif char == "\r":
            column = 0
        else:
            if column < len(line):
                line[column] = char
            else:
                line.append(char)
            column += 1
    if line:
        lines.append("".join(line).rstrip())
    return [text for text in lines if text]


def test_ctrl_c_stops_the_run_at_once(tmp_path):
    """SIGINT to the whole process group, as a terminal sends it: the engine processes ignore it,
    the command stops them and exits 130 without waiting for the image."""
    import signal

    from tests.worker.test_engine_pool import gone, png_with_trailing_data

    (tmp_path / "slow.png").write_bytes(png_with_trailing_data(8))  # 16 s of native inflating
    config = write_config(tmp_path, {})
    command = [sys.executable, "-m", "vodimg", "process", "--config", str(config), "--out", "out", "slow.png"]
    child = subprocess.Popen(command, cwd=tmp_path, stderr=subprocess.PIPE, text=True, start_new_session=True,
                             env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)})  # fmt: skip
    time.sleep(2.0)  # started, and the engine process is inflating
    engines = children_of(child.pid)
    assert engines
    started = time.monotonic()
    os.killpg(child.pid, signal.SIGINT)
    assert child.wait(10) == 130
    assert time.monotonic() - started < 5
    assert all(gone(pid) for pid in engines)
    assert "interrupted" in child.stderr.read()
    assert not (tmp_path / "out" / "slow.png").exists()


def children_of(parent: int) -> list[int]:
    """The engine processes ``parent`` started (not multiprocessing's resource tracker)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes()
        except (OSError, IndexError):  # ended meanwhile
            continue
        if ppid == parent and b"spawn_main" in command:
            found.append(int(entry.name))
    return found
