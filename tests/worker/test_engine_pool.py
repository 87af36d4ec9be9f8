"""The engine pool with real child processes and real images: results, errors, limits, crashes."""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.engine.images import encode, photo
from vodimg.engine import (
    InvalidConfig,
    InvalidImage,
    LimitExceeded,
    Limits,
    ProcessingTimeout,
    UnsupportedImage,
    process_image,
)
from vodimg.worker.engine_pool import EngineCrashed, EnginePool, MemoryLimitExceeded, PoolClosed

REPO = Path(__file__).resolve().parents[2]
SUPER_RESOLUTION = {"EnhanceConfig": {"SuperResolution": {"Switch": "ON", "Type": "hq", "Size": 2}}}


def png_with_trailing_data(mib: int) -> bytes:
    """A 16x16 PNG whose compressed data goes on with about ``mib`` GiB of zeros after its rows:
    libpng inflates all of it in native code (about 2 s per GiB) before the engine sees a pixel."""
    rows = b"".join(b"\x00" + bytes(3 * 16) for _ in range(16))
    zipper = zlib.compressobj(9)
    head = zipper.compress(rows + bytes(1 << 20)) + zipper.flush(zlib.Z_FULL_FLUSH)
    block = zipper.compress(bytes(1 << 20)) + zipper.flush(zlib.Z_FULL_FLUSH)  # 1 MiB of zeros, same every time
    body = head + block * ((mib << 20) // len(block)) + zipper.flush()
    header = struct.pack(">IIBBBBB", 16, 16, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", body) + _chunk(b"IEND", b"")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def small_png() -> bytes:
    return encode(photo("coffee")[:64, :64], ".png")


def gone(pid: int) -> bool:
    """The process has ended (a zombie waiting for its new parent to reap it counts)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


# Shared by the tests that leave the child alive; 500 000 output pixels keeps a 600x400 photo in.
LIMITS = Limits(max_seconds=60, max_output_pixels=500_000)


@pytest.fixture(scope="module")
def pool():
    with EnginePool(1, LIMITS) as engine_pool:
        yield engine_pool


def test_an_image_comes_back_as_the_engine_makes_it(pool):
    source = encode(photo("coffee"), ".jpg", 90)
    configure = {"EncodeConfig": {"Format": "WebP", "Quality": 60}}
    result = pool.run(source, configure)
    direct = process_image(source, configure)
    assert result.image == direct
    assert result.image.format == "WebP" and (result.image.width, result.image.height) == (600, 400)
    assert result.warnings == ()


def _animated_gif() -> bytes:
    import io

    from PIL import Image

    frames = [Image.new("RGB", (8, 8), colour) for colour in ("red", "blue")]
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:])
    return out.getvalue()


@pytest.mark.parametrize(
    "data, configure, error",
    [
        (b"not an image at all", {}, InvalidImage),
        (encode(photo("coffee"), ".jpg")[:3000], {}, InvalidImage),
        (_animated_gif(), {}, UnsupportedImage),
        (encode(photo("coffee"), ".jpg"), SUPER_RESOLUTION, LimitExceeded),  # 1200x800 out
        (small_png(), {"BeautyConfig": {"BeautyEffectItems": [{"Type": "Nope", "Switch": "ON"}]}}, InvalidConfig),
    ],
)
def test_each_engine_error_comes_back_with_its_class_and_message(pool, data, configure, error):
    with pytest.raises(error) as direct:
        process_image(data, configure, LIMITS)
    with pytest.raises(error) as from_pool:
        pool.run(data, configure)
    assert type(from_pool.value) is type(direct.value) and str(from_pool.value) == str(direct.value)
    assert isinstance(from_pool.value.warnings, tuple)


def test_a_child_runs_one_thread_of_work():
    """OMP/OpenBLAS variables are set before numpy and OpenCV are imported in the child: its only
    threads are the main one and the parent watch (numpy alone would add one per extra core)."""
    with EnginePool(1, LIMITS) as pool:
        pool.run(small_png(), {})
        [pid] = pool.child_pids()
        assert len(os.listdir(f"/proc/{pid}/task")) == 2


def test_progress_is_forwarded_rising_within_an_image(pool):
    fractions: list[float] = []
    caller = threading.get_ident()
    threads: set[int] = set()

    def progress(fraction: float) -> None:
        fractions.append(fraction)
        threads.add(threading.get_ident())

    source = encode(photo("coffee")[:320, :320], ".jpg", 90)
    pool.run(source, SUPER_RESOLUTION, progress)
    assert len(fractions) >= 2
    assert fractions == sorted(fractions) and 0.0 < fractions[0] < fractions[-1] <= 1.0
    assert threads == {caller}


def test_codec_warnings_are_those_of_this_image(pool):
    whole = encode(photo("coffee"), ".jpg", 90)
    cut_short = whole[: len(whole) // 2] + b"\xff\xd9"  # libjpeg fills in the rest, warning
    result = pool.run(cut_short, {})
    assert result.image.width == 600
    assert result.warnings == ("Corrupt JPEG data: premature end of data segment",)
    assert pool.run(whole, {}).warnings == ()  # the next image starts clean

    png = bytearray(small_png())
    png[png.find(b"IDAT") + 20] ^= 0xFF  # corrupt compressed rows: OpenCV's libpng complains
    with pytest.raises(InvalidImage) as raised:
        pool.run(bytes(png), {})
    assert any(line.startswith("libpng error:") for line in raised.value.warnings)


def test_the_time_limit_holds_inside_native_decoding_and_the_pool_goes_on():
    """The issue: a PNG with gigabytes of extra data after its rows cost 16 s with a 3 s limit."""
    limit = 0.5
    with EnginePool(1, Limits(max_seconds=limit)) as pool:
        pool.run(small_png(), {})  # started and warm
        [first] = pool.child_pids()
        started = time.monotonic()
        with pytest.raises(ProcessingTimeout) as raised:
            pool.run(png_with_trailing_data(8), {})  # about 16 s of inflating
        elapsed = time.monotonic() - started
        assert "limit of 0.5 s" in str(raised.value) and "stopped" in str(raised.value)
        assert limit <= elapsed < limit + 2.0
        assert gone(first)
        assert pool.run(small_png(), {}).image.format == "PNG"
        assert pool.child_pids() != [first]


def test_a_child_killed_mid_image_is_a_crash_and_is_replaced():
    with EnginePool(1, Limits(max_seconds=60)) as pool:
        pool.run(small_png(), {})  # started and warm
        [victim] = pool.child_pids()
        killer = threading.Timer(0.5, os.kill, (victim, signal.SIGKILL))
        killer.start()
        with pytest.raises(EngineCrashed) as raised:
            pool.run(png_with_trailing_data(8), {})
        killer.join()
        assert "died while processing" in str(raised.value) and "SIGKILL" in str(raised.value)
        assert pool.run(small_png(), {}).image.width == 64
        [replacement] = pool.child_pids()
        assert replacement != victim


def test_a_child_over_the_memory_limit_is_killed():
    limit = 200 * 1024 * 1024  # an idle child holds about 60 MiB; this image needs 400
    rgba = np.zeros((7000, 7000, 4), np.uint8)
    rgba[..., 3] = 255
    big = encode(rgba, ".png")
    with EnginePool(1, Limits(max_seconds=60), memory_limit_bytes=limit) as pool:
        [first] = pool.child_pids()
        with pytest.raises(MemoryLimitExceeded) as raised:
            pool.run(big, {})
        assert "more than 200 MiB of memory" in str(raised.value)
        assert "VODIMG_MAX_MEMORY_BYTES" in str(raised.value)
        assert isinstance(raised.value, LimitExceeded)
        assert gone(first)
        assert pool.run(small_png(), {}).image.width == 64


def test_two_children_work_at_once():
    pool = EnginePool(2, Limits(max_seconds=60))
    for _ in range(2):
        pool.run(small_png(), {})  # both children ready
    pids = pool.child_pids()
    assert len(pids) == 2
    outcome: list[Exception] = []
    threads = [threading.Thread(target=_catch, args=(outcome, pool.run, png_with_trailing_data(8), {}))
               for _ in range(2)]  # fmt: skip
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    before = {pid: cpu_ticks(pid) for pid in pids}
    time.sleep(0.7)
    after = {pid: cpu_ticks(pid) for pid in pids}
    pool.close()  # no need to wait for the 16 s images
    for thread in threads:
        thread.join(10)
    assert all(after[pid] > before[pid] for pid in pids), (before, after)
    assert len(outcome) == 2 and all(isinstance(err, PoolClosed) for err in outcome)


def test_close_kills_the_children_and_refuses_new_images():
    pool = EnginePool(2, Limits(max_seconds=60))
    pids = pool.child_pids()
    outcome: list[Exception] = []
    runner = threading.Thread(target=lambda: _catch(outcome, pool.run, png_with_trailing_data(8), {}))
    runner.start()
    time.sleep(0.5)
    pool.close()
    pool.close()  # idempotent
    runner.join(10)
    assert not runner.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], PoolClosed)
    assert all(gone(pid) for pid in pids) and pool.child_pids() == []
    with pytest.raises(PoolClosed):
        pool.run(small_png(), {})


def _catch(outcome: list, function, *args) -> None:
    try:
        function(*args)
    except Exception as err:  # noqa: BLE001 - the test looks at it
        outcome.append(err)


PARENT_SCRIPT = """
import sys
from vodimg.engine import Limits
from vodimg.worker.engine_pool import EnginePool

if __name__ == "__main__":
    data = open(sys.argv[1], "rb").read()
    pool = EnginePool(2, Limits(max_seconds=600))
    pool.run(data[:0] or open(sys.argv[2], "rb").read(), {})
    print(*pool.child_pids(), flush=True)
    pool.run(data, {})
"""


def test_children_end_when_the_parent_is_killed(tmp_path):
    (tmp_path / "slow.png").write_bytes(png_with_trailing_data(8))
    (tmp_path / "small.png").write_bytes(small_png())
    (tmp_path / "parent.py").write_text(PARENT_SCRIPT)
    parent = subprocess.Popen(
        [sys.executable, str(tmp_path / "parent.py"), str(tmp_path / "slow.png"), str(tmp_path / "small.png")],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    try:
        pids = [int(pid) for pid in parent.stdout.readline().split()]
        assert len(pids) == 2
        time.sleep(0.5)  # one child is deep in libpng now
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 3.0
        while not all(gone(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert all(gone(pid) for pid in pids)
    finally:
        parent.kill()
        parent.wait(10)


def test_the_memory_limit_is_a_setting():
    assert Limits().max_memory_bytes == 2 * 1024**3
    assert Limits.from_env({"VODIMG_MAX_MEMORY_BYTES": "1048576"}).max_memory_bytes == 1048576
    with pytest.raises(ValueError, match="VODIMG_MAX_MEMORY_BYTES"):
        Limits.from_env({"VODIMG_MAX_MEMORY_BYTES": "lots"})
    with EnginePool(1, Limits(max_memory_bytes=123 * 1024 * 1024)) as pool:
        assert pool.memory_limit_bytes == 123 * 1024 * 1024


FORGETFUL_SCRIPT = """
import sys
from vodimg.engine import Limits
from vodimg.worker.engine_pool import EnginePool

if __name__ == "__main__":
    pool = EnginePool(1, Limits(max_seconds=600))
    pool.run(open(sys.argv[1], "rb").read(), {})  # the child is up, ignoring SIGTERM
    print(*pool.child_pids(), flush=True)
"""


def test_a_pool_left_open_does_not_hold_up_the_interpreter_exit(tmp_path):
    """multiprocessing's exit handler would wait forever for children that ignore its SIGTERM."""
    (tmp_path / "forgetful.py").write_text(FORGETFUL_SCRIPT)
    (tmp_path / "small.png").write_bytes(small_png())
    done = subprocess.run([sys.executable, str(tmp_path / "forgetful.py"), str(tmp_path / "small.png")],
                          capture_output=True, text=True,
                          timeout=30, env={**os.environ, "PYTHONPATH": str(REPO)})  # fmt: skip
    assert done.returncode == 0, done.stderr
    pids = [int(pid) for pid in done.stdout.split()]
    assert len(pids) == 1 and all(gone(pid) for pid in pids)
