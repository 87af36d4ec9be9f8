"""ImageQualityEnhance on JPEG artefacts: PSNR gain over the decoded JPEG, against waifu2x.

    python -m bench.quality_jpeg [--out bench/out]

Photos held out of every choice made for the step (astronaut, coffee, chelsea: scikit-image's,
measurement only), saved as JPEG quality 30 and 50 with OpenCV (4:2:0, as most cameras and
sites do). Rows: PSNR of the decoded JPEG, of each Type, and of the baseline measured in this
run: the packaged waifu2x photo denoise models (levels 0-3, x2 then area-averaged back to x1),
the best level by mean PSNR picked per quality. Everything on one thread.
Goal: ``strong`` at least +1.0 dB over the decoded JPEG at quality 30 (mean over the photos),
and at least the best baseline at both qualities.
Writes ``jpeg_artefacts.png`` (a crop: JPEG q30 | weak | strong | waifu2x | original).
"""

from __future__ import annotations

import argparse
import os
import time

import cv2
import numpy as np

from tests.engine.images import photo, psnr
from vodimg.engine import ncnn_model
from vodimg.engine.frame import Frame, StepContext
from vodimg.engine.steps import quality

PHOTOS = ("astronaut", "coffee", "chelsea")
QUALITIES = (30, 50)
TYPES = ("weak", "normal", "strong")
WAIFU2X_LEVELS = (0, 1, 2, 3)
GOAL_DB = 1.0


def jpeg(bgr: np.ndarray, q: int) -> np.ndarray:
    ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, q])
    assert ok
    return cv2.imdecode(data, cv2.IMREAD_COLOR)


def waifu2x_x1(bgr: np.ndarray, level: int) -> np.ndarray:
    """The baseline: waifu2x photo x2 with denoise ``level``, area-averaged back to the size."""
    model = ncnn_model.load_model(ncnn_model.waifu2x_photo(level))
    upscaled = ncnn_model.run_tiled(model, bgr)
    return cv2.resize(upscaled, (bgr.shape[1], bgr.shape[0]), interpolation=cv2.INTER_AREA)


def step(kind: str):
    return lambda bgr: quality.apply(Frame(bgr=bgr), {"Switch": "ON", "Type": kind}, StepContext()).bgr


def measure() -> tuple[list, dict]:
    """Rows (quality, photo, jpeg PSNR, {method: PSNR}) and CPU seconds per megapixel by method."""
    rows, seconds = [], {}
    methods = {t: step(t) for t in TYPES} | {f"waifu2x{n}": (lambda b, n=n: waifu2x_x1(b, n)) for n in WAIFU2X_LEVELS}
    for q in QUALITIES:
        for name in PHOTOS:
            clean = photo(name)
            compressed = jpeg(clean, q)
            scores = {}
            for key, fn in methods.items():
                started = time.process_time()
                scores[key] = psnr(fn(compressed), clean)
                megapixels = compressed.shape[0] * compressed.shape[1] / 1e6
                seconds.setdefault(key, []).append((time.process_time() - started) / megapixels)
            rows.append((q, name, psnr(compressed, clean), scores))
    return rows, seconds


def report(rows: list, seconds: dict) -> bool:
    print("ImageQualityEnhance on JPEG artefacts (PSNR dB, held-out photos; baseline: best waifu2x "
          "photo denoise level at x1, picked per quality in this run)")
    print(f"{'q':>3} {'photo':<10} {'JPEG':>6} {'weak':>6} {'normal':>6} {'strong':>6} "
          f"{'w2x0':>6} {'w2x1':>6} {'w2x2':>6} {'w2x3':>6} {'strong-JPEG':>11} {'strong-best':>11}")
    met = True
    for q in QUALITIES:
        sel = [r for r in rows if r[0] == q]
        mean = lambda key: float(np.mean([r[3][key] for r in sel]))  # noqa: E731
        best = max((f"waifu2x{n}" for n in WAIFU2X_LEVELS), key=mean)
        for _, name, base, s in sel + [(q, "mean", float(np.mean([r[2] for r in sel])), {k: mean(k) for k in sel[0][3]})]:
            cells = " ".join(f"{s[k]:6.2f}" for k in list(TYPES) + [f"waifu2x{n}" for n in WAIFU2X_LEVELS])
            print(f"{q:>3} {name:<10} {base:6.2f} {cells} {s['strong'] - base:+11.2f} {s['strong'] - s[best]:+11.2f}")
        gain = mean("strong") - float(np.mean([r[2] for r in sel]))
        over_best = mean("strong") - mean(best)
        print(f"    quality {q}: best baseline {best} ({mean(best):.2f} dB); strong {gain:+.2f} dB over JPEG, "
              f"{over_best:+.2f} dB over the best baseline")
        met &= over_best >= 0.0 and (q != 30 or gain >= GOAL_DB)
    print("CPU s per megapixel (one thread, median): " + ", ".join(
        f"{k} {np.median(v):.2f}" for k, v in seconds.items()))
    q30 = [r for r in rows if r[0] == 30]
    gain30 = float(np.mean([r[3]["strong"] - r[2] for r in q30]))
    verdict = "MET" if met else "NOT MET"
    print(f"Goal: strong >= +{GOAL_DB:.1f} dB over the decoded JPEG at quality 30 (mean {gain30:+.2f} dB) "
          f"and >= the best waifu2x baseline at quality 30 and 50 -> {verdict}")
    return met


def contact_sheet(out_dir: str) -> str:
    clean = photo("astronaut")[60:260, 130:370]  # face and helmet rim: blocks and ringing show
    compressed = jpeg(photo("astronaut"), 30)[60:260, 130:370]
    full = jpeg(photo("astronaut"), 30)
    images = [compressed, step("weak")(full)[60:260, 130:370], step("strong")(full)[60:260, 130:370],
              waifu2x_x1(full, 3)[60:260, 130:370], clean]
    labels = ["JPEG q30", "weak", "strong", "waifu2x denoise 3", "original"]
    tiles = []
    for image, label in zip(images, labels):
        tile = np.full((image.shape[0] + 24, image.shape[1], 3), 255, np.uint8)
        tile[24:] = image
        cv2.putText(tile, label, (4, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        tiles += [tile, np.full((tile.shape[0], 6, 3), 255, np.uint8)]
    sheet = cv2.resize(np.hstack(tiles[:-1]), None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "jpeg_artefacts.png")
    cv2.imwrite(path, sheet)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.quality_jpeg")
    parser.add_argument("--out", default="bench/out", help="folder for the contact sheet")
    args, _ = parser.parse_known_args(argv)
    cv2.setNumThreads(1)
    report(*measure())
    print(f"contact sheet: {contact_sheet(args.out)}")


if __name__ == "__main__":
    main()
