"""Fast x2 super-resolution with learned edge-adaptive filters (in the manner of RAISR).

Luminance is upscaled bicubically, then each output pixel gets a small learned correction filter
chosen by its local structure: gradient angle, strength and coherence (from the structure
tensor) and its position among the four x2 sub-pixel phases. Chroma stays bicubic (the eye and
Y-PSNR care about luminance detail). The filters were fitted by least squares on scikit-image
photos that are not used for evaluation (``training/sr_filters/train.py`` rebuilds the weights file).

To keep the cost low every bucket's filter is stored as coefficients over a few shared basis
filters: the image is convolved once per basis filter, and each pixel mixes the responses with
its bucket's coefficients. Work is done in bands of rows, so memory stays bounded.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

WEIGHTS = Path(__file__).resolve().parent / "weights" / "sr_filters" / "filters_x2.npz"
TENSOR_SIGMA = 1.5  # structure tensor smoothing, output pixels
BAND_ROWS = 128  # output rows per band (measured fastest: stays in cache)
BAND_HALO = 8  # context rows each side: Sobel (1) + tensor smoothing (6 at sigma 1.5) < 8


@functools.cache
def load_filters() -> dict[str, np.ndarray]:
    with np.load(WEIGHTS) as z:
        return {name: z[name] for name in z.files}


def bucket_index(y: np.ndarray, angles: int, strength_edges: np.ndarray, coherence_edges: np.ndarray,
                 row0: int = 0) -> np.ndarray:
    """Bucket of every pixel of bicubic luminance ``y`` (float32, 0..1) whose first row is output row ``row0``."""
    gx = cv2.Sobel(y, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(y, cv2.CV_32F, 0, 1, ksize=3)
    tensor = cv2.GaussianBlur(cv2.merge([gx * gx, gy * gy, gx * gy]), (0, 0), TENSOR_SIGMA)
    jxx, jyy, jxy = cv2.split(tensor)
    half = (jxx + jyy) * 0.5
    diff = (jxx - jyy) * 0.5
    root = cv2.magnitude(diff, jxy)
    s1 = cv2.sqrt(half + root)
    s2 = cv2.sqrt(cv2.max(half - root, 0.0))
    coherence = (s1 - s2) / (s1 + s2 + 1e-6)
    # Dominant gradient direction 0.5 * atan2(2 jxy, jxx - jyy) + pi / 2, as a fraction of a half turn.
    angle = cv2.phase(diff, jxy) * (0.5 / np.pi) + 0.5
    angle -= angle >= 1.0  # 0..1
    bucket = np.minimum((angle * angles).astype(np.int32), angles - 1)
    for edges, value in ((strength_edges, s1), (coherence_edges, coherence)):
        bins = np.zeros(y.shape, np.int32)
        for edge in edges:
            bins += value > edge
        bucket = bucket * (len(edges) + 1) + bins
    h, w = y.shape
    phase = (np.arange(row0, row0 + h, dtype=np.int32)[:, None] % 2) * 2 + np.arange(w, dtype=np.int32)[None, :] % 2
    return bucket * 4 + phase


def refine_luma(y: np.ndarray, progress: Callable[[float], None], check_deadline: Callable[[], None]) -> np.ndarray:
    """Apply the learned correction to bicubic-upscaled luminance (float32, 0..1), band by band."""
    f = load_filters()
    basis, coef_by_basis = f["basis"], np.ascontiguousarray(f["coef"].T)
    angles = int(f["angles"])
    radius = basis.shape[1] // 2
    h = y.shape[0]
    out = np.empty_like(y)
    starts = list(range(0, h, BAND_ROWS))
    for i, r0 in enumerate(starts):
        check_deadline()
        r1 = min(h, r0 + BAND_ROWS)
        a0, a1 = max(0, r0 - BAND_HALO), min(h, r1 + BAND_HALO)
        band = y[a0:a1]
        buckets = bucket_index(band, angles, f["strength_edges"], f["coherence_edges"], row0=a0)[r0 - a0 : r1 - a0]
        mix = np.take(coef_by_basis, buckets, axis=1)  # (K, rows, w): one gather, far faster than K
        refined = band[r0 - a0 : r1 - a0].copy()
        # Filter only the kept rows plus the filter radius (at the image's edges: reflected).
        c0, c1 = max(0, r0 - radius), min(h, r1 + radius)
        context = y[c0:c1]
        for k in range(basis.shape[0]):
            response = cv2.filter2D(context, -1, basis[k], borderType=cv2.BORDER_REFLECT_101)
            cv2.accumulateProduct(mix[k], response[r0 - c0 : r1 - c0], refined)
        out[r0:r1] = refined
        progress((i + 1) / len(starts))
    return out


def upscale_x2(
    bgr: np.ndarray,
    progress: Callable[[float], None] = lambda fraction: None,
    check_deadline: Callable[[], None] = lambda: None,
) -> np.ndarray:
    """uint8 BGR to twice its size: learned filters on luminance, bicubic chroma."""
    h, w = bgr.shape[:2]
    ycc = cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2YCrCb), (2 * w, 2 * h), interpolation=cv2.INTER_CUBIC)
    y = cv2.resize(bgr_luma(bgr), (2 * w, 2 * h), interpolation=cv2.INTER_CUBIC)
    refined = refine_luma(y, progress, check_deadline)
    ycc[..., 0] = np.clip(np.rint(refined * 255.0), 0, 255).astype(np.uint8)
    return cv2.cvtColor(ycc, cv2.COLOR_YCrCb2BGR)


def bgr_luma(bgr: np.ndarray) -> np.ndarray:
    """Luminance (the Y of OpenCV's YCrCb) as float32 0..1, unrounded."""
    b, g, r = cv2.split(bgr.astype(np.float32))
    return (0.299 * r + 0.587 * g + 0.114 * b) * (1.0 / 255.0)
