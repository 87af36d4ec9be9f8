"""Fit the learned x2 filters of ``vodimg/engine/filter_sr.py`` (AdvancedSuperResolution ``standard``).

    python -m training.sr_filters.train     # writes vodimg/engine/weights/sr_filters/filters_x2.npz

Training photos: scikit-image's bundled images that the tests and ``bench.quality_sr`` do NOT use
(see ``TRAINING_FILES``), in four rotations, each downscaled x2 two ways (box/area and
antialiased bicubic) so the filters suit both kinds of source. For every bucket (angle,
strength, coherence, sub-pixel phase) a ridge least-squares filter maps a patch of the bicubic
upscale to the missing detail (HR minus bicubic). The filters are then compressed to a few shared
basis filters (PCA) so inference convolves the image only ``BASIS`` times. Deterministic.
"""

from __future__ import annotations

import os

import cv2
import numpy as np
from PIL import Image
from skimage import data, io

from vodimg.engine import filter_sr

TRAINING_FILES = (
    "camera.png", "brick.png", "grass.png", "gravel.png", "coins.png", "moon.png",
    "hubble_deep_field.jpg", "retina.jpg", "motorcycle_left.png", "motorcycle_right.png", "page.png",
)
ANGLES, STRENGTHS, COHERENCES = 12, 3, 3
PATCH = int(os.environ.get("SR_FILTER_PATCH", "9"))
BASIS = int(os.environ.get("SR_FILTER_BASIS", "16"))
RIDGE = 1e-3


def training_photos() -> list[np.ndarray]:
    photos = []
    for name in TRAINING_FILES:
        image = io.imread(os.path.join(data.data_dir, name))
        if image.ndim == 2:
            image = np.stack([image] * 3, axis=-1)
        bgr = cv2.cvtColor(image[..., :3], cv2.COLOR_RGB2BGR)
        h, w = bgr.shape[:2]
        photos.append(np.ascontiguousarray(bgr[: h // 2 * 2, : w // 2 * 2]))
    return photos


def bicubic_downscaled(bgr: np.ndarray) -> np.ndarray:
    """Antialiased bicubic x2 downscale (like MATLAB imresize / PIL), the usual SR benchmark source."""
    rgb = Image.fromarray(np.ascontiguousarray(bgr[..., ::-1]))
    small = rgb.resize((bgr.shape[1] // 2, bgr.shape[0] // 2), Image.Resampling.BICUBIC)
    return np.ascontiguousarray(np.asarray(small)[..., ::-1])


def area_downscaled(bgr: np.ndarray) -> np.ndarray:
    return cv2.resize(bgr, (bgr.shape[1] // 2, bgr.shape[0] // 2), interpolation=cv2.INTER_AREA)


# Bicubic-downscaled sources count twice: they are the common case (and the benchmark protocol);
# box-downscaled ones keep the filters from over-sharpening sources that are already crisp.
SOURCE_WEIGHTS = {"bicubic": 2.0, "area": 1.0}


def training_pairs(hr: np.ndarray):
    """(bicubic luminance, HR luminance, weight) for each kind of downscale."""
    h, w = hr.shape[:2]
    target = filter_sr.bgr_luma(hr)
    for kind, down in (("area", area_downscaled), ("bicubic", bicubic_downscaled)):
        low = cv2.resize(filter_sr.bgr_luma(down(hr)), (w, h), interpolation=cv2.INTER_CUBIC)
        yield low, target, SOURCE_WEIGHTS[kind]


def patches(y: np.ndarray) -> np.ndarray:
    r = PATCH // 2
    view = np.lib.stride_tricks.sliding_window_view(np.pad(y, r, mode="reflect"), (PATCH, PATCH))
    return view.reshape(-1, PATCH * PATCH)


def quantile_edges(values: np.ndarray, bins: int) -> np.ndarray:
    return np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1]).astype(np.float32)


def structure_edges(photos: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Strength and coherence thresholds that split the training pixels into equal thirds."""
    strengths, coherences = [], []
    for hr in photos:
        for y, _, _ in training_pairs(hr):
            gx = cv2.Sobel(y, cv2.CV_32F, 1, 0, ksize=3)
            gy = cv2.Sobel(y, cv2.CV_32F, 0, 1, ksize=3)
            jxx, jyy, jxy = (cv2.GaussianBlur(v, (0, 0), filter_sr.TENSOR_SIGMA) for v in (gx * gx, gy * gy, gx * gy))
            half, root = (jxx + jyy) * 0.5, np.sqrt(((jxx - jyy) * 0.5) ** 2 + jxy**2)
            s1, s2 = np.sqrt(half + root), np.sqrt(np.maximum(half - root, 0))
            strengths.append(s1.ravel()[::7])
            coherences.append(((s1 - s2) / (s1 + s2 + 1e-6)).ravel()[::7])
    return quantile_edges(np.concatenate(strengths), STRENGTHS), quantile_edges(np.concatenate(coherences), COHERENCES)


def fit_filters(photos, strength_edges, coherence_edges) -> np.ndarray:
    buckets = ANGLES * STRENGTHS * COHERENCES * 4
    taps = PATCH * PATCH
    ata = np.zeros((buckets, taps, taps))
    atb = np.zeros((buckets, taps))
    for hr in photos:
        for turn in range(4):
            for y, target, weight in training_pairs(np.ascontiguousarray(np.rot90(hr, turn))):
                index = filter_sr.bucket_index(y, ANGLES, strength_edges, coherence_edges).ravel()
                a = patches(y).astype(np.float64)
                residual = (target - y).ravel().astype(np.float64)
                order = np.argsort(index, kind="stable")
                bounds = np.searchsorted(index[order], np.arange(buckets + 1))
                for b in range(buckets):
                    rows = order[bounds[b] : bounds[b + 1]]
                    if rows.size:
                        ata[b] += weight * (a[rows].T @ a[rows])
                        atb[b] += weight * (a[rows].T @ residual[rows])
    ridge = RIDGE * np.trace(ata, axis1=1, axis2=2).mean() / taps * np.eye(taps)
    return np.stack([np.linalg.solve(ata[b] + ridge, atb[b]) for b in range(buckets)])


def compress(filters: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Basis filters (mean first, then principal components) and each bucket's coefficients."""
    mean = filters.mean(axis=0)
    _, _, vt = np.linalg.svd(filters - mean, full_matrices=False)
    components = vt[: BASIS - 1]
    coef = np.concatenate([np.ones((len(filters), 1)), (filters - mean) @ components.T], axis=1)
    basis = np.concatenate([mean[None], components]).reshape(BASIS, PATCH, PATCH)
    return basis.astype(np.float32), coef.astype(np.float32)


def main() -> None:
    photos = training_photos()
    strength_edges, coherence_edges = structure_edges(photos)
    filters = fit_filters(photos, strength_edges, coherence_edges)
    basis, coef = compress(filters)
    filter_sr.WEIGHTS.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        filter_sr.WEIGHTS, basis=basis, coef=coef, angles=np.int32(ANGLES),
        strength_edges=strength_edges, coherence_edges=coherence_edges,
    )
    print(f"wrote {filter_sr.WEIGHTS}: {len(coef)} buckets, {BASIS} basis filters of {PATCH}x{PATCH}")


if __name__ == "__main__":
    main()
