"""Super-resolution quality and speed against bicubic and Lanczos, measured in the same run.

    python -m bench.quality_sr            # about three minutes on a busy 2-core machine
    python -m bench.quality_sr --quick    # two photos, smaller crops

Sources: centre crops of scikit-image's bundled colour photos (tests/engine/images.PHOTOS; none
was used to fit the ``standard`` filters), downscaled two ways: antialiased bicubic (the usual SR
benchmark protocol, what most image software does) and box/area (OpenCV INTER_AREA), each also
saved as JPEG quality 90 (x2 only), since most real sources are JPEGs. Metrics on
luminance (Y of YCrCb), 4-pixel border ignored. Speed: seconds per input megapixel, warm, one
thread (the service runs one worker process per core), wall and CPU time.
"""

from __future__ import annotations

import argparse
import time
from typing import Callable

import cv2
import numpy as np
from PIL import Image
from skimage.metrics import structural_similarity

from tests.engine.images import PHOTOS, photo, psnr
from vodimg.engine import ncnn_model
from vodimg.engine.frame import Frame, StepContext
from vodimg.engine.steps import superres

BORDER = 4
GOALS = {"hq": (3.0, 10.0), "standard": (1.0, 0.5)}  # (dB over bicubic, s per input MP)


def bicubic_downscaled(bgr: np.ndarray, factor: int) -> np.ndarray:
    rgb = Image.fromarray(np.ascontiguousarray(bgr[..., ::-1]))
    small = rgb.resize((bgr.shape[1] // factor, bgr.shape[0] // factor), Image.Resampling.BICUBIC)
    return np.ascontiguousarray(np.asarray(small)[..., ::-1])


def area_downscaled(bgr: np.ndarray, factor: int) -> np.ndarray:
    return cv2.resize(bgr, (bgr.shape[1] // factor, bgr.shape[0] // factor), interpolation=cv2.INTER_AREA)


def jpeg90(bgr: np.ndarray) -> np.ndarray:
    ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return cv2.imdecode(data, cv2.IMREAD_COLOR)


SOURCES = {
    "bicubic-down": bicubic_downscaled,
    "area-down": area_downscaled,
    "bicubic-down + JPEG q90": lambda bgr, factor: jpeg90(bicubic_downscaled(bgr, factor)),
    "area-down + JPEG q90": lambda bgr, factor: jpeg90(area_downscaled(bgr, factor)),
}


def luma(bgr: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2YCrCb)[BORDER:-BORDER, BORDER:-BORDER, 0]


def scores(out: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    a, b = luma(out), luma(truth)
    return psnr(a, b), float(structural_similarity(a, b, data_range=255))


def interpolate(flag: int) -> Callable[[np.ndarray, tuple[int, int]], np.ndarray]:
    return lambda bgr, size: cv2.resize(bgr, size, interpolation=flag)


def step(sr_type: str, options: dict) -> Callable[[np.ndarray, tuple[int, int]], np.ndarray]:
    def run(bgr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        frame = Frame(bgr=bgr)
        if sr_type in ("lq", "hq"):
            return superres.apply(frame, {"Switch": "ON", "Type": sr_type, "Size": 2}, StepContext()).bgr
        opts = {"Switch": "ON", "Type": sr_type, **options}
        if opts.get("Mode") == "fixed":
            opts.update(Width=size[0], Height=size[1])
        return superres.apply_advanced(frame, opts, StepContext()).bgr

    return run


def methods(factor: int) -> dict[str, Callable]:
    found = {"bicubic": interpolate(cv2.INTER_CUBIC), "lanczos": interpolate(cv2.INTER_LANCZOS4)}
    if factor == 2:
        found.update({"lq": step("lq", {}), "hq": step("hq", {})})
        found.update({f"standard {m}": step("standard", {"Mode": m}) for m in ("percent", "fixed")})
        found.update({f"super {m}": step("super", {"Mode": m}) for m in ("percent", "fixed")})
    else:
        found.update({f"{t} percent": step(t, {"Mode": "percent", "Percent": float(factor)}) for t in ("standard", "super")})
    return found


def quality_table(names: tuple[str, ...], crop: int, factor: int) -> None:
    print(f"\n## x{factor} quality, {len(names)} photos, {crop}x{crop} centre crops (Y-PSNR dB / SSIM)")
    sources = list(SOURCES.items()) if factor == 2 else list(SOURCES.items())[:2]
    for down_name, down in sources:
        results: dict[str, list[tuple[float, float]]] = {}
        for name in names:
            truth = centre_crop(photo(name), crop)
            low = down(truth, factor)
            for method, run in methods(factor).items():
                out = run(low, (truth.shape[1], truth.shape[0]))
                results.setdefault(method, []).append(scores(out, truth))
        base = np.mean([p for p, _ in results["bicubic"]])
        print(f"\n{down_name}: | method | Y-PSNR | SSIM | gain over bicubic (dB) | worst photo gain |")
        for method, values in results.items():
            p = np.array([v[0] for v in values])
            s = np.mean([v[1] for v in values])
            worst = np.min(p - np.array([v[0] for v in results["bicubic"]]))
            print(f"| {method:<16} | {p.mean():6.2f} | {s:.4f} | {p.mean() - base:+6.2f} | {worst:+6.2f} |")


def centre_crop(bgr: np.ndarray, size: int) -> np.ndarray:
    h, w = bgr.shape[:2]
    size = min(size, h, w) // 4 * 4
    y0, x0 = (h - size) // 2, (w - size) // 2
    return np.ascontiguousarray(bgr[y0 : y0 + size, x0 : x0 + size])


def speed_table(side: int) -> None:
    """Wall and CPU seconds per input megapixel, best of three warm runs, one thread.

    On a shared machine wall time includes waiting for a core; CPU time is what one idle core
    would take, so the goals are judged on it (both are printed)."""
    cv2.setNumThreads(1)
    low = cv2.resize(photo("astronaut"), (side, side), interpolation=cv2.INTER_AREA)
    megapixels = side * side / 1e6
    print(f"\n## speed, {side}x{side} input, x2, warm, one thread, seconds per input megapixel")
    print("| method | wall s/MP | CPU s/MP | goal | x bicubic (CPU) |")
    runs = {"bicubic": lambda: cv2.resize(low, (2 * side, 2 * side), interpolation=cv2.INTER_CUBIC)}
    runs["lanczos"] = lambda: cv2.resize(low, (2 * side, 2 * side), interpolation=cv2.INTER_LANCZOS4)
    for sr_type in ("lq", "hq", "standard", "super"):
        runs[sr_type] = lambda t=sr_type: step(t, {"Mode": "percent"})(low, (2 * side, 2 * side))
    span2 = ncnn_model.NcnnModel(ncnn_model.SPAN_X2, threads=2)
    runs["hq, 2 threads"] = lambda: ncnn_model.run_tiled(span2, low)
    base = None
    for name, run in runs.items():
        run()  # warm: loads the model
        samples = [timed(run) for _ in range(3)]
        wall, cpu = min(w for w, _ in samples), min(c for _, c in samples)
        base = base or cpu
        goal = GOALS.get(name)
        goal_text = f"< {goal[1]:.1f}" if goal else ""
        print(f"| {name:<14} | {wall / megapixels:7.3f} | {cpu / megapixels:7.3f} | {goal_text:<5} | {cpu / base:8.1f} |")


def timed(run: Callable[[], object]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two photos, smaller crops")
    args = parser.parse_args()
    names = PHOTOS[:2] if args.quick else PHOTOS
    crop = 192 if args.quick else 320
    quality_table(names, crop, 2)
    quality_table(names, crop, 4)
    speed_table(256 if args.quick else 512)
    print("\ngoals: hq >= +3.0 dB over bicubic and < 10 s/MP; standard >= +1.0 dB and < 0.5 s/MP")


if __name__ == "__main__":
    main()
