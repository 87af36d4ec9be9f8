"""Before/after contact sheet for super-resolution of compressed sources (issue #12).

    python -m bench.contact_sheets_sr --out bench/out

For two measurement photos, a 96x96 region of the original, then the same region of the x2
upscales of its area-downscaled JPEG q75 (decoded by the codec, whose quality estimate the
step gets): bicubic (the baseline), the old fixed choices (waifu2x level 2 for ``lq``, SPAN for
``hq``) and today's ``lq`` and ``hq``; each labelled with its Y-PSNR against the original,
enlarged x3 with nearest-neighbour so the pixels stay visible. One thread.
"""

from __future__ import annotations

import argparse
import os

import cv2
import numpy as np

from bench.contact_sheets import labelled, save
from bench.quality_sr import GOAL_QUALITY, area_downscaled, as_jpeg, centre_crop, model, scores, step
from tests.engine.images import photo
from vodimg.engine import ncnn_model

cv2.setNumThreads(1)
CROP = 256
REGION = 96
ZOOM = 3
# Region (top, left) inside each photo's centre crop: textured detail where artefacts show.
SHEETS = {"astronaut": (40, 60), "chelsea": (70, 90)}


def sheet(name: str, region: tuple[int, int]) -> np.ndarray:
    truth = centre_crop(photo(name), CROP)
    low, quality = as_jpeg(area_downscaled(truth, 2), GOAL_QUALITY)
    size = (truth.shape[1], truth.shape[0])
    outputs = {
        "bicubic": cv2.resize(low, size, interpolation=cv2.INTER_CUBIC),
        "old lq (waifu2x L2)": model(ncnn_model.waifu2x_photo(2))(low, quality, size),
        "old hq (SPAN)": model(ncnn_model.SPAN_X2)(low, quality, size),
        "lq": step("lq", {})(low, quality, size),
        "hq": step("hq", {})(low, quality, size),
    }
    y, x = region
    window = (slice(y, y + REGION), slice(x, x + REGION))
    images, labels = [truth[window]], ["original"]
    for label, out in outputs.items():
        images.append(out[window])
        labels.append(f"{label} {scores(out, truth)[0]:.2f} dB")
    images = [cv2.resize(im, None, fx=ZOOM, fy=ZOOM, interpolation=cv2.INTER_NEAREST) for im in images]
    return labelled(images, labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/out")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    print(f"super-resolution of area-downscaled JPEG q{GOAL_QUALITY} sources (Y-PSNR of each whole {CROP}px crop):")
    rows = [sheet(name, region) for name, region in SHEETS.items()]
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 8), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    save(args.out, "superres_compressed.png", np.vstack(rows))


if __name__ == "__main__":
    main()
