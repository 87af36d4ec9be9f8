"""ImageQualityEnhance: JPEG artefact removal, then gentle local contrast.

Method, on luma Y and chroma Cr/Cb separately (YCrCb):
1. Measure blockiness (see ``blockiness``): how much larger luma steps are across the 8x8 JPEG
   block boundaries than elsewhere. It sets how much artefact removal the image gets, so a clean
   image is not blurred and a heavily compressed one is cleaned hard.
2. Deblocking: at every 8-pixel boundary where the step is small (a block offset, not a real
   edge) and both sides are flat, the step is spread into a ramp over 4 pixels on each side.
3. Deringing: an edge-preserving bilateral filter on Y (mosquito noise around edges); chroma,
   which JPEG stores at half resolution and quantises hardest, is bilateral-filtered at half
   resolution.
4. Detail: a halo-limited unsharp mask on Y (``sharpen.sharpen_luma``), weaker the more
   artefacts the image had, so remaining block edges are not sharpened back.
5. Local contrast: CLAHE on Y with a low clip limit, blended in partially.

Options: ``Type`` ``weak`` | ``normal`` | ``strong`` (default ``weak``).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from vodimg.engine.steps import chosen_type
from vodimg.engine.frame import Frame, StepContext, from_planes, map_strips, to_planes
from vodimg.engine.steps.sharpen import sharpen_luma

DEFAULT_TYPE = "weak"
BLOCK = 8
DETAIL_HELD_BACK = 0.75  # share of the detail boost withheld at artefact level 1
CLEAN_BLOCKINESS, HEAVY_BLOCKINESS = 1.12, 1.7  # artefact level 0 .. 1 across this range


@dataclass(frozen=True)
class Strength:
    deblock_threshold: float  # largest boundary step (levels) treated as a block offset, at level 1
    luma_sigma: float  # bilateral range sigma on Y at artefact level 1
    chroma_sigma: float  # bilateral range sigma on Cr/Cb at artefact level 1
    clahe_clip: float
    clahe_share: float  # share of the CLAHE result blended in
    detail: float  # halo-limited unsharp-mask amount on Y, after artefact removal


STRENGTHS = {
    "weak": Strength(
        deblock_threshold=14.0, luma_sigma=12.0, chroma_sigma=12.0, clahe_clip=1.5, clahe_share=0.15, detail=0.0
    ),
    "normal": Strength(
        deblock_threshold=20.0, luma_sigma=18.0, chroma_sigma=18.0, clahe_clip=1.8, clahe_share=0.2, detail=0.3
    ),
    "strong": Strength(
        deblock_threshold=28.0, luma_sigma=26.0, chroma_sigma=26.0, clahe_clip=2.5, clahe_share=0.45, detail=0.8
    ),
}


def apply(frame: Frame, options: dict, ctx: StepContext) -> Frame:
    strength = STRENGTHS[chosen_type(options, "ImageQualityEnhance", STRENGTHS, DEFAULT_TYPE)]
    return Frame(bgr=enhance(frame.bgr, strength), alpha=frame.alpha)


def enhance(bgr: np.ndarray, strength: Strength) -> np.ndarray:
    y, cr, cb = to_planes(bgr, cv2.COLOR_BGR2YCrCb)  # strip by strip: bounded memory
    level = artefact_level(y)
    if level > 0.0:
        # in strips of whole 8-row blocks with one block of context: the same result
        threshold = strength.deblock_threshold * level
        y = map_strips(y, lambda rows: deblock(rows, threshold), halo=BLOCK, rows=64 * BLOCK)
        y = cv2.bilateralFilter(y, 5, strength.luma_sigma * level, 2.0)
        cr = _smooth_chroma(cr, strength.chroma_sigma * level)
        cb = _smooth_chroma(cb, strength.chroma_sigma * level)
    detail = strength.detail * (1.0 - DETAIL_HELD_BACK * level)  # don't re-sharpen block edges
    if detail > 0.0:
        y = sharpen_luma(y, detail)
    y = local_contrast(y, strength.clahe_clip, strength.clahe_share)
    return from_planes([y, cr, cb], cv2.COLOR_YCrCb2BGR)


def blockiness(gray: np.ndarray) -> float:
    """Mean absolute step across 8x8 block boundaries over the mean step elsewhere.

    About 1.0 for an image without a block grid; a JPEG at quality 90 measures about 1.05, at
    quality 50 about 1.3-1.5, at quality 10-20 about 1.7-3.2.
    """
    if min(gray.shape[:2]) <= BLOCK:
        return 1.0
    dx = cv2.absdiff(gray[:, 1:], gray[:, :-1])
    dy = cv2.absdiff(gray[1:, :], gray[:-1, :])
    across_x, across_y = dx[:, BLOCK - 1 :: BLOCK], dy[BLOCK - 1 :: BLOCK, :]
    n_across = across_x.size + across_y.size
    n_within = dx.size + dy.size - n_across
    across = float(across_x.sum(dtype=np.int64) + across_y.sum(dtype=np.int64))
    total = cv2.sumElems(dx)[0] + cv2.sumElems(dy)[0]
    return (across / n_across) / max((total - across) / n_within, 1e-6)


def artefact_level(y: np.ndarray) -> float:
    """0 for a clean image, 1 for a heavily block-compressed one."""
    b = blockiness(y)
    return float(np.clip((b - CLEAN_BLOCKINESS) / (HEAVY_BLOCKINESS - CLEAN_BLOCKINESS), 0.0, 1.0))


# spread of a boundary step: share of the step added to the 4 pixels on each side, outwards
_RAMP = np.array([7.0, 5.0, 3.0, 1.0], np.float32) / 16.0


def deblock(y: np.ndarray, threshold: float) -> np.ndarray:
    """Turn small steps at 8-pixel block boundaries into ramps, vertical then horizontal ones."""
    if threshold <= 0.0:
        return y
    f = y.astype(np.float32)
    h, w = f.shape
    full_w, full_h = w - w % BLOCK, h - h % BLOCK  # boundaries between whole blocks
    if full_w >= 2 * BLOCK:
        cols = f[:, :full_w].reshape(h, full_w // BLOCK, BLOCK)  # (row, block, column in block)
        _deblock_boundaries(lambda i: cols[:, :-1, BLOCK - 1 - i], lambda i: cols[:, 1:, i], threshold)
    if full_h >= 2 * BLOCK:
        rows = f[:full_h].reshape(full_h // BLOCK, BLOCK, w)  # (block, row in block, column)
        _deblock_boundaries(lambda i: rows[:-1, BLOCK - 1 - i], lambda i: rows[1:, i], threshold)
    return cv2.convertScaleAbs(f)  # rounds and saturates; ramps keep values within 0..255


def _deblock_boundaries(before, after, threshold: float) -> None:
    """In place. ``before(i)`` / ``after(i)``: views of the pixels i steps left (above) / right
    (below) of every inner block boundary, i = 0 next to it."""
    step = after(0) - before(0)
    flatness = np.maximum(np.abs(before(0) - before(2)), np.abs(after(0) - after(2)))
    # full correction for small steps between flat sides, fading out towards real edges:
    # weight = clip(2 - 2|step|/T) * clip(2 - 4 flatness/T), each clipped to [0, 1]
    weight = np.abs(step)
    weight *= -2.0 / threshold
    weight += 2.0
    np.clip(weight, 0.0, 1.0, out=weight)
    flatness *= -4.0 / threshold
    flatness += 2.0
    np.clip(flatness, 0.0, 1.0, out=flatness)
    step *= weight
    step *= flatness
    share = weight  # reused buffer
    for i in range(4):
        np.multiply(step, _RAMP[i], out=share)
        side = before(i)
        side += share
        side = after(i)
        side -= share


def _smooth_chroma(c: np.ndarray, sigma: float) -> np.ndarray:
    h, w = c.shape
    half = cv2.resize(c, (max(1, w // 2), max(1, h // 2)), interpolation=cv2.INTER_AREA)
    half = cv2.bilateralFilter(half, 5, sigma, 2.0)
    return cv2.resize(half, (w, h), interpolation=cv2.INTER_LINEAR)


def local_contrast(y: np.ndarray, clip: float, share: float) -> np.ndarray:
    """CLAHE on 8x8 tiles with a low clip limit, blended in by ``share``."""
    equalised = cv2.createCLAHE(clipLimit=clip, tileGridSize=(8, 8)).apply(y)
    return cv2.addWeighted(y, 1.0 - share, equalised, share, 0.0)
