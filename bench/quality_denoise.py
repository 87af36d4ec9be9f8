"""Denoise quality and speed against well-tuned OpenCV non-local means.

    python -m bench.quality_denoise

On photos held out of training (astronaut, coffee, chelsea; measurement only), two kinds of noise:
- white Gaussian noise, sigma 15 and 25;
- realistic camera noise: signal-dependent Poisson-Gaussian (``with_camera_noise``: shot noise
  variance a * intensity plus read noise b, on the 0-1 scale) at two levels, ``moderate``
  (a 0.004, read 0.01: sigma about 12 at mid-grey) and ``high`` (a 0.012, read 0.02: about 20),
  each also followed by JPEG quality 90 as a camera or phone saves it.
Columns: PSNR of the noisy input, of ``cv2.fastNlMeansDenoisingColored`` with h/hColor chosen per
case by a grid search in this run (best mean PSNR over the photos; the grid is relative to the
true sigma, or for camera noise to the mean estimated sigma), and of our ``weak`` and ``strong``
Types (noise level estimated from the image, as in service); then CPU ms per megapixel,
everything on one thread.
Goals: ``strong`` at least +1.0 dB over tuned NL-means (mean over the photos) at Gaussian sigma 15
and at both camera-noise levels (without and, reported, with JPEG q90).
"""

from __future__ import annotations

import itertools
import time

import cv2
import numpy as np

from tests.engine.images import photo, psnr, with_camera_noise, with_gaussian_noise
from vodimg.engine.frame import Frame, StepContext
from vodimg.engine.steps import denoise

PHOTOS = ("astronaut", "coffee", "chelsea")
H_FACTORS = (0.3, 0.4, 0.5, 0.65, 0.8, 0.95)  # NL-means h = factor * sigma
HCOLOR_FACTORS = (0.3, 0.5, 0.8, 1.1)
GOAL_DB = 1.0
CAMERA_LEVELS = {"moderate": (0.004, 0.01), "high": (0.012, 0.02)}


def jpeg(bgr: np.ndarray, q: int) -> np.ndarray:
    return cv2.imdecode(cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, q])[1], cv2.IMREAD_COLOR)


# (label, make noisy, true sigma or None, is it judged against the goal)
CASES = [
    ("gauss 15", lambda c: with_gaussian_noise(c, 15, seed=1), 15.0, True),
    ("gauss 25", lambda c: with_gaussian_noise(c, 25, seed=1), 25.0, False),
] + [
    (f"camera {name}{' +q90' if q else ''}",
     (lambda c, a=a, r=r, q=q: jpeg(with_camera_noise(c, a, r, seed=1), q) if q else with_camera_noise(c, a, r, seed=1)),
     None, True)
    for name, (a, r) in CAMERA_LEVELS.items() for q in (None, 90)
]  # fmt: skip


def nlm(bgr: np.ndarray, h: float, h_color: float) -> np.ndarray:
    return cv2.fastNlMeansDenoisingColored(bgr, None, h, h_color, 7, 21)


def tune_nlm(cases, sigma: float) -> tuple[float, float]:
    """(h, hColor) with the best mean PSNR over the cases at this sigma."""
    def mean_psnr(params):
        return np.mean([psnr(nlm(noisy, *params), clean) for clean, noisy in cases])

    grid = [(hf * sigma, cf * sigma) for hf, cf in itertools.product(H_FACTORS, HCOLOR_FACTORS)]
    return max(grid, key=mean_psnr)


def ms_per_megapixel(fn, bgr: np.ndarray) -> tuple[float, np.ndarray]:
    start = time.process_time()
    out = fn(bgr)
    return (time.process_time() - start) * 1000.0 / (bgr.shape[0] * bgr.shape[1] / 1e6), out


def step(kind: str):
    return lambda bgr: denoise.apply(Frame(bgr=bgr), {"Switch": "ON", "Type": kind}, StepContext()).bgr


def main() -> None:
    cv2.setNumThreads(1)
    step("strong")(photo("coffee")[:64, :64])  # load the model outside the timings
    rows, speed = [], {"nlm": [], "weak": [], "strong": []}
    for label, make, sigma, judged in CASES:
        cases = [(photo(n), make(photo(n))) for n in PHOTOS]
        scale = sigma or float(np.mean([denoise.estimate_sigma(noisy) for _, noisy in cases]))
        h, h_color = tune_nlm(cases, scale)
        for name, (clean, noisy) in zip(PHOTOS, cases):
            methods = {"nlm": lambda b: nlm(b, h, h_color), "weak": step("weak"), "strong": step("strong")}
            scores = {}
            for key, fn in methods.items():
                ms, out = ms_per_megapixel(fn, noisy)
                speed[key].append(ms)
                scores[key] = psnr(out, clean)
            rows.append((label, name, psnr(noisy, clean), h, h_color, scores, judged))
    print_table(rows, speed)


def print_table(rows, speed) -> None:
    print("Denoise against tuned NL-means (PSNR dB, held-out photos)")
    print(f"{'noise':<20} {'photo':<10} {'noisy':>6} {'NLM h/hC':>11} {'NLM':>6} "
          f"{'weak':>6} {'strong':>6} {'strong-NLM':>10}")
    verdicts = []
    for label in dict.fromkeys(r[0] for r in rows):
        sel = [r for r in rows if r[0] == label]
        for _, name, noisy, h, hc, s, _ in sel:
            print(f"{label:<20} {name:<10} {noisy:6.2f} {h:5.1f}/{hc:<5.1f} {s['nlm']:6.2f} "
                  f"{s['weak']:6.2f} {s['strong']:6.2f} {s['strong'] - s['nlm']:+10.2f}")
        mean = lambda k: float(np.mean([r[5][k] for r in sel]))  # noqa: E731
        gain = mean("strong") - mean("nlm")
        print(f"{label:<20} {'mean':<10} {np.mean([r[2] for r in sel]):6.2f} {'':>11} {mean('nlm'):6.2f} "
              f"{mean('weak'):6.2f} {mean('strong'):6.2f} {gain:+10.2f}")
        if sel[0][6]:
            verdicts.append((label, gain))
    print("\nCPU ms per megapixel (one thread, median): " + ", ".join(
        f"{k} {np.median(v):.0f}" for k, v in speed.items()))
    for label, gain in verdicts:
        verdict = "MET" if gain >= GOAL_DB else f"NOT MET (short by {GOAL_DB - gain:.2f} dB)"
        print(f"Goal: strong >= +{GOAL_DB:.1f} dB over tuned NL-means, {label}: mean {gain:+.2f} dB -> {verdict}")


if __name__ == "__main__":
    main()
