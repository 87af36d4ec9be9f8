"""Engine pool overhead: one image through a pool child against process_image in this process.

    python -m bench.engine_pool [--rounds N]

For each input (a 64x64 PNG re-encode, the latency goal's case; a 640x480 and a 1920x1080 JPEG
re-encode), the median and 90th percentile of the wall time per image, called directly, through a bare
child and through ``EnginePool(1)``, one call of each in turn in the same run, and the difference
(the pool's cost: pipes, the child's stderr redirection, the limits' polling), and the same
through a bare child process on the same pipe (the least any child process costs: under load
mostly the scheduler's delay in waking it). Also: how long a
new child takes until its first image is done, and the recovery after a child is killed.
Everything is single-threaded; absolute times move with the machine's load, the differences
much less.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import time

# Set before numpy is imported here, as in the pool's children. (The children import this module
# again as their __main__: so nothing heavy at the top.)
for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="calls per input, in units of 200/40/10 (default 5)")
    args = parser.parse_args()

    import cv2

    from vodimg.engine import Limits, process_image
    from vodimg.worker.engine_pool import EnginePool

    cv2.setNumThreads(1)
    inputs = _inputs()
    limits = Limits()
    started = time.perf_counter()
    with EnginePool(1, limits) as pool:
        pool.run(inputs[0][1], {})
        first = time.perf_counter() - started
        print(f"engine pool overhead, one call of each in turn; wall ms per image (median / p90)\n")
        print(f"{'input':<20} {'bytes':>7} {'direct':>13} {'bare child':>13} {'pool':>13} "
              f"{'pool - direct':>14} {'pool - bare':>12}")  # fmt: skip
        bare = _BareChild()
        for name, data, calls in inputs:
            direct, bared, pooled = [], [], []
            for _ in range(args.rounds * calls):  # in turn, so all see the same load
                direct.append(_time(lambda: process_image(data, {}, limits)))
                bared.append(_time(lambda: bare.run(data)))
                pooled.append(_time(lambda: pool.run(data, {})))
            d50, b50, p50 = (statistics.median(times) for times in (direct, bared, pooled))
            print(f"{name:<20} {len(data):>7} {_ms(direct):>13} {_ms(bared):>13} {_ms(pooled):>13} "
                  f"{(p50 - d50) * 1e3:>11.2f} ms {(p50 - b50) * 1e3:>9.2f} ms")  # fmt: skip
        bare.close()
        print(f"\nnew child, start to first 64x64 image done: {first * 1e3:.0f} ms")
        [pid] = pool.child_pids()
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
        killed = time.perf_counter()
        try:
            pool.run(inputs[0][1], {})
        except Exception as err:  # the crash, reported on the image that was running
            print(f"after kill -9: {type(err).__name__}: {err}")
        pool.run(inputs[0][1], {})
        print(f"kill -9 of a child to the next image done: {(time.perf_counter() - killed) * 1e3:.0f} ms")


class _BareChild:
    """The least a child process can cost: the same pipe, no limits, no stderr capture."""

    def __init__(self):
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        self._conn, child_conn = context.Pipe()  # what the pool uses
        self._process = context.Process(target=_bare_child, args=(child_conn,), daemon=True)
        self._process.start()

    def run(self, data: bytes) -> bytes:
        self._conn.send({})
        self._conn.send_bytes(data)
        self._conn.recv()
        return self._conn.recv_bytes()

    def close(self) -> None:
        self._conn.close()
        self._process.join(5)


def _bare_child(conn) -> None:
    import cv2

    from vodimg.engine import process_image

    cv2.setNumThreads(1)
    while True:
        try:
            configure = conn.recv()
            data = conn.recv_bytes()
        except EOFError:
            return
        result = process_image(data, configure)
        conn.send(("done", result.format, result.width, result.height))
        conn.send_bytes(result.data)


def _inputs() -> list[tuple[str, bytes, int]]:
    import cv2
    from skimage import data

    photo = cv2.cvtColor(data.coffee(), cv2.COLOR_RGB2BGR)
    small = cv2.imencode(".png", photo[:64, :64])[1].tobytes()
    vga = cv2.imencode(".jpg", cv2.resize(photo, (640, 480)), [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
    hd = cv2.imencode(".jpg", cv2.resize(photo, (1920, 1080)), [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
    return [("64x64 PNG", small, 200), ("640x480 JPEG q90", vga, 40), ("1920x1080 JPEG q90", hd, 10)]


def _time(call) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def _ms(times: list[float]) -> str:
    ordered = sorted(times)
    return f"{statistics.median(ordered) * 1e3:.2f} / {ordered[int(len(ordered) * 0.9)] * 1e3:.2f}"


if __name__ == "__main__":
    main()
