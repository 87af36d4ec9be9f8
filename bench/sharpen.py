"""SharpEnhance on faces and hair: contact sheets and halo / texture measures.

    python -m bench.sharpen --out bench/out

Sheets (PNG, in --out): crops of a face with hair (scikit-image's astronaut) and of fur (the
cat), at Intensity 0, 0.25, 0.5 and 1.0, without and with super-resolution (``lq`` x2, as in the
spec's ModifyProcessImageAsyncTemplate example), shown at the same size (the crops without
super-resolution enlarged x2 by bicubic for viewing).

Table, per photo and Intensity, next to a plain unsharp mask of the same amount (baseline,
measured in the same run):

- detail: Laplacian variance of luma, relative to the input's;
- overshoot: how far the output luma leaves the [min, max] of the input's 3x3 neighbourhood,
  as the share of pixels more than 2 levels outside it and the 99.9th percentile in levels.
  Bound: share <= 0.1 %, p99.9 <= 3 levels. A rim along an edge is seen once it differs from
  its side by about 1-2 % of the luminance (the Weber fraction), 2.5-5 levels at mid-grey, so
  3 levels is at the edge of visibility; a plain unsharp mask of the same amount overshoots by
  12-80 levels;
- plateaus: the share of pixels whose output luma equals its 3x3 neighbourhood's max or min
  exactly while the input's did not (the "painted" look: texture pushed to flat local extremes);
  bound at Intensity 1.0: <= 13 %, as tested (a hard clamp to the 3x3 range gives 19-22 %).

Everything runs on one thread.
"""

from __future__ import annotations

import argparse
import os

import cv2
import numpy as np

from bench.contact_sheets import labelled, save, table
from tests.engine.images import photo
from vodimg.engine.frame import Frame, StepContext
from vodimg.engine.steps import sharpen, superres

cv2.setNumThreads(1)
INTENSITIES = (0.25, 0.5, 1.0)
SR_OPTIONS = {"Switch": "ON", "Type": "lq", "Size": 2}
CROPS = {  # (photo, rows, columns): a face with hair, and fur
    "face": ("astronaut", slice(20, 200), slice(150, 320)),
    "fur": ("chelsea", slice(40, 220), slice(120, 300)),
}
ZOOM = {  # windows of the crops shown enlarged: hair over the forehead and cheek, fur around an eye
    "face": (slice(40, 100), slice(40, 100)),
    "fur": (slice(20, 80), slice(40, 100)),
}
OVERSHOOT_LEVELS = 2  # beyond the 3x3 range by more than this counts as overshoot
MAX_OVERSHOOT_SHARE = 0.001
MAX_OVERSHOOT_P999 = 3
MAX_PLATEAUS = 0.13  # at Intensity 1.0
_3X3 = np.ones((3, 3), np.uint8)


def luma(bgr: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)


def overshoot(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Levels by which each output luma leaves the input's 3x3 neighbourhood range (0 inside)."""
    y0, y1 = luma(before), luma(after).astype(np.int16)
    above = y1 - cv2.dilate(y0, _3X3).astype(np.int16)
    below = cv2.erode(y0, _3X3).astype(np.int16) - y1
    return np.maximum(np.maximum(above, below), 0)


def plateau_share(before: np.ndarray, after: np.ndarray) -> float:
    """Share of pixels at their 3x3 neighbourhood's exact max or min in the output but not in the input."""
    def at_extreme(y):
        return (y == cv2.dilate(y, _3X3)) | (y == cv2.erode(y, _3X3))
    return float((at_extreme(luma(after)) & ~at_extreme(luma(before))).mean())


def detail(bgr: np.ndarray) -> float:
    return float(cv2.Laplacian(luma(bgr), cv2.CV_64F).var())


def plain_unsharp(bgr: np.ndarray, amount: float) -> np.ndarray:
    blurred = cv2.GaussianBlur(bgr, (5, 5), sharpen.SIGMA)
    return cv2.addWeighted(bgr, 1.0 + amount, blurred, -amount, 0.0)


def sharpened(bgr: np.ndarray, intensity: float) -> np.ndarray:
    return sharpen.apply(Frame(bgr=bgr), {"Switch": "ON", "Intensity": intensity}, StepContext()).bgr


def crop(name: str) -> np.ndarray:
    source, rows, columns = CROPS[name]
    return np.ascontiguousarray(photo(source)[rows, columns])


def zoomed(bgr: np.ndarray, side: int) -> np.ndarray:
    """``bgr`` enlarged to ``side`` px wide by pixel repetition (shows the pixels as they are)."""
    factor = side // bgr.shape[1]
    return cv2.resize(bgr, None, fx=factor, fy=factor, interpolation=cv2.INTER_NEAREST)


def sheets(out_dir: str) -> None:
    labels = ["input"] + [f"Intensity {i:g}" for i in INTENSITIES]
    for name in CROPS:
        src = crop(name)
        upscaled = superres.apply(Frame(bgr=src), SR_OPTIONS, StepContext()).bgr
        for zoom_name, window in (("", None), ("_zoom", ZOOM[name])):
            def view(image, scale):
                if window is not None:
                    rows, columns = window
                    image = image[rows.start * scale:rows.stop * scale, columns.start * scale:columns.stop * scale]
                return zoomed(image, src.shape[1] * 2 if window is None else 360)
            top = [view(x, 1) for x in [src] + [sharpened(src, i) for i in INTENSITIES]]
            bottom = [view(x, 2) for x in [upscaled] + [sharpened(upscaled, i) for i in INTENSITIES]]
            sheet = [labelled(top, [f"{x} (no SR)" for x in labels]), labelled(bottom, [f"{x} + SR lq x2" for x in labels])]
            gap = np.full((6, sheet[0].shape[1], 3), 255, np.uint8)
            save(out_dir, f"sharpen_{name}{zoom_name}.png", np.vstack([sheet[0], gap, sheet[1]]))


def measures() -> bool:
    print(f"\nSharpEnhance: detail (Laplacian variance / input's), overshoot beyond the input's 3x3 range "
          f"(share > {OVERSHOOT_LEVELS} levels, bound {MAX_OVERSHOOT_SHARE:.1%}; p99.9, bound {MAX_OVERSHOOT_P999}), "
          f"plateaus (new exact 3x3 extremes, bound {MAX_PLATEAUS:.0%} at 1.0)")
    rows, ok = [], True
    for name in CROPS:
        for sr in (False, True):
            src = crop(name)
            if sr:
                src = superres.apply(Frame(bgr=src), SR_OPTIONS, StepContext()).bgr
            base_detail = detail(src)
            for intensity in INTENSITIES:
                for label, out in (("plain unsharp", plain_unsharp(src, sharpen.amount_for(intensity))),
                                   ("SharpEnhance", sharpened(src, intensity))):
                    over = overshoot(src, out)
                    share, p999 = float((over > OVERSHOOT_LEVELS).mean()), float(np.percentile(over, 99.9))
                    plateaus = plateau_share(src, out)
                    within = (share <= MAX_OVERSHOOT_SHARE and p999 <= MAX_OVERSHOOT_P999
                              and (intensity < 1.0 or plateaus <= MAX_PLATEAUS))
                    if label == "SharpEnhance":
                        ok &= within
                    rows.append([f"{name}{' + SR' if sr else ''}", f"{intensity:g}", label,
                                 f"{detail(out) / base_detail:.2f}", f"{share * 100:.2f} %", f"{p999:.0f}",
                                 f"{plateaus * 100:.1f} %",
                                 "" if label != "SharpEnhance" else ("ok" if within else "OVER")])
    table(["crop", "Intensity", "variant", "detail x", "overshoot share", "p99.9", "plateaus", ""], rows)
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.sharpen", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="bench/out", help="directory for the PNG sheets")
    parser.add_argument("--no-sheets", action="store_true", help="only the table")
    args = parser.parse_args()
    if not args.no_sheets:
        os.makedirs(args.out, exist_ok=True)
        sheets(args.out)
    ok = measures()
    print("\nall bounds met" if ok else "\nBOUND MISSED")


if __name__ == "__main__":
    main()
