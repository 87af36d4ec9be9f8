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

``strong`` first removes JPEG artefacts with a learned model when the image shows a block grid
(``learned_share``): waifu2x's strongest photo denoiser (trained on JPEG artefacts; x2, then
area-averaged back to the size, mean of the image's and its mirror image's runs), which gains
1.0-1.9 dB over the decoded JPEG at quality 30-50 where the classical steps gain under 0.7. The
classical steps then run with detail and contrast scaled down by that share, so a JPEG's
restoration is not traded back for crispness, while a clean image is still sharpened.

Options: ``Type`` ``weak`` | ``normal`` | ``strong`` (default ``weak``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import cv2
import numpy as np

from vodimg.engine import ncnn_model
from vodimg.engine.steps import chosen_type
from vodimg.engine.frame import DelayedRows, Frame, StepContext, from_planes, map_strips, strips_of, to_planes
from vodimg.engine.steps.sharpen import sharpen_luma

DEFAULT_TYPE = "weak"
BLOCK = 8
DETAIL_HELD_BACK = 0.75  # share of the detail boost withheld at artefact level 1
CLEAN_BLOCKINESS, HEAVY_BLOCKINESS = 1.12, 1.7  # artefact level 0 .. 1 across this range
# strong's learned artefact removal: share 0 .. 1 across this blockiness range (JPEG quality 90
# reads 1.03-1.09 on scikit-image's photos, quality 70 1.19-1.32, quality 50 1.33-1.49)
LEARNED_FROM, LEARNED_FULL = 1.10, 1.18
LEARNED_NOISE_LEVEL = 3  # waifu2x photo denoiser 3, its strongest: best at quality 30-50 (measured 0-3)
# After it, blocks left at this artefact level or above (JPEG quality 15 or less) also get the
# classical deblocking and deringing: +0.05-0.3 dB there.
RESIDUAL_LEVEL = 0.3
LEARNED_TILE = 128  # input px per waifu2x tile
LEARNED_BAND_ROWS = 256  # rows per band (bounded memory; progress and deadline between bands)
LEARNED_CONTEXT = 8  # rows of context per band: waifu2x's UpConv7 sees 7 px each side


@dataclass(frozen=True)
class Strength:
    deblock_threshold: float  # largest boundary step (levels) treated as a block offset, at level 1
    luma_sigma: float  # bilateral range sigma on Y at artefact level 1
    chroma_sigma: float  # bilateral range sigma on Cr/Cb at artefact level 1
    clahe_clip: float
    clahe_share: float  # share of the CLAHE result blended in
    detail: float  # halo-limited unsharp-mask amount on Y, after artefact removal
    learned: bool = False  # strong: learned JPEG artefact removal first


STRENGTHS = {
    "weak": Strength(
        deblock_threshold=14.0, luma_sigma=12.0, chroma_sigma=12.0, clahe_clip=1.5, clahe_share=0.15, detail=0.0
    ),
    "normal": Strength(
        deblock_threshold=20.0, luma_sigma=18.0, chroma_sigma=18.0, clahe_clip=1.8, clahe_share=0.2, detail=0.3
    ),
    "strong": Strength(
        deblock_threshold=28.0, luma_sigma=26.0, chroma_sigma=26.0, clahe_clip=2.5, clahe_share=0.45, detail=0.8,
        learned=True,
    ),
}


def apply(frame: Frame, options: dict, ctx: StepContext) -> Frame:
    strength = STRENGTHS[chosen_type(options, "ImageQualityEnhance", STRENGTHS, DEFAULT_TYPE)]
    return Frame(bgr=enhance(frame.bgr, strength, ctx), alpha=frame.alpha)


def enhance(bgr: np.ndarray, strength: Strength, ctx: StepContext | None = None) -> np.ndarray:
    ctx = ctx or StepContext()
    owned = ctx.overwrite_input  # whether ``bgr``'s pixels may hold the result
    if strength.learned:
        share = learned_share(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
        if share > 0.0:
            bgr = learned_artefact_removal(bgr, ctx, share, in_place=owned)
            owned = True
            if share == 1.0 and artefact_level(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)) < RESIDUAL_LEVEL:
                return bgr  # the classical removal would cost 0.05-0.2 dB here (YCrCb round trip)
            strength = _scaled(strength, 1.0 - share)
    y, cr, cb = to_planes(bgr, cv2.COLOR_BGR2YCrCb)  # strip by strip: bounded memory
    level = artefact_level(y)
    if level > 0.0:
        # in strips of whole 8-row blocks with one block of context: the same result
        threshold = strength.deblock_threshold * level
        y = map_strips(y, lambda rows: deblock(rows, threshold), halo=BLOCK, rows=64 * BLOCK, in_place=True)
        luma_sigma = strength.luma_sigma * level  # a 5 px bilateral filter: 2 rows of context
        y = map_strips(y, lambda rows: cv2.bilateralFilter(rows, 5, luma_sigma, 2.0), halo=2, in_place=True)
        cr = _smooth_chroma(cr, strength.chroma_sigma * level)
        cb = _smooth_chroma(cb, strength.chroma_sigma * level)
    detail = strength.detail * (1.0 - DETAIL_HELD_BACK * level)  # don't re-sharpen block edges
    if detail > 0.0:  # in strips with SharpEnhance's context (pipeline.ENHANCE_STEPS): 10 rows
        y = map_strips(y, lambda rows: sharpen_luma(rows, detail), halo=10, in_place=True)
    y = local_contrast(y, strength.clahe_clip, strength.clahe_share)
    return from_planes([y, cr, cb], cv2.COLOR_YCrCb2BGR, out=bgr if owned else None)


def learned_share(gray: np.ndarray) -> float:
    """How much of strong's learned artefact removal to use: 0 without a visible block grid, 1
    from about JPEG quality 70 down."""
    return float(np.clip((blockiness(gray) - LEARNED_FROM) / (LEARNED_FULL - LEARNED_FROM), 0.0, 1.0))


def learned_artefact_removal(bgr: np.ndarray, ctx: StepContext, share: float = 1.0,
                             band_rows: int = LEARNED_BAND_ROWS, in_place: bool = False) -> np.ndarray:
    """waifu2x photo x2 with its JPEG-trained denoiser, area-averaged back to the input size; the
    mean of the runs on the image and on its mirror image (test-time augmentation, +0.02-0.06 dB),
    blended with the input at ``share`` (1: all of it). uint8 BGR, into ``bgr`` itself with
    ``in_place``. Run in bands of ``band_rows`` rows, each with LEARNED_CONTEXT rows of context
    (both runs of a band, then its rounding), so neither the x2 image nor a float copy of the image
    ever exists whole; bands join without seams (within a level's rounding, like waifu2x's own
    tiles)."""
    model = ncnn_model.load_model(ncnn_model.waifu2x_photo(LEARNED_NOISE_LEVEL))
    h, w = bgr.shape[:2]
    bands = ncnn_model.tile_grid(h, band_rows)
    writer = DelayedRows(bgr if in_place else np.empty_like(bgr))  # the next band reads context here
    for done, (y0, y1) in enumerate(bands):
        ctx.check_deadline()
        top, bottom = max(0, y0 - LEARNED_CONTEXT), min(h, y1 + LEARNED_CONTEXT)
        context = bgr[top:bottom]
        mean = _restored_half(model, context, y0 - top, y1 - top, w)
        mean += _restored_half(model, np.ascontiguousarray(context[:, ::-1]), y0 - top, y1 - top, w)[:, ::-1]
        mean *= 0.5
        if share < 1.0:  # blend towards the input
            original = bgr[y0:y1]
            np.subtract(mean, original, out=mean)
            mean *= share
            np.add(mean, original, out=mean)
        writer.put(slice(y0, y1), np.clip(np.rint(mean, out=mean), 0, 255, out=mean).astype(np.uint8))
        ctx.progress((done + 1) / len(bands))
    writer.flush()
    return writer.out


def _restored_half(model, context: np.ndarray, start: int, stop: int, width: int) -> np.ndarray:
    """Rows ``start:stop`` of the x2 run on ``context``, area-averaged back to ``width``, float32."""
    upscaled = ncnn_model.run_tiled(model, context, LEARNED_TILE)
    core = upscaled[2 * start : 2 * stop]
    return cv2.resize(core, (width, stop - start), interpolation=cv2.INTER_AREA).astype(np.float32)


def _scaled(strength: Strength, keep: float) -> Strength:
    """The classical steps' strength with detail and contrast kept at ``keep`` (0-1); artefact
    removal still follows the artefact level measured after the learned removal."""
    return dataclasses.replace(
        strength, clahe_share=strength.clahe_share * keep, detail=strength.detail * keep, learned=False
    )


def blockiness(gray: np.ndarray) -> float:
    """Mean absolute step across 8x8 block boundaries over the mean step elsewhere.

    About 1.0 for an image without a block grid; a JPEG at quality 90 measures about 1.05, at
    quality 50 about 1.3-1.5, at quality 10-20 about 1.7-3.2. Summed strip by strip (the steps
    of a whole image would cost two thirds of a frame).
    """
    h, w = gray.shape[:2]
    if min(h, w) <= BLOCK:
        return 1.0
    across, total = 0, 0
    for _, rows, _ in strips_of(gray):
        dx = cv2.absdiff(gray[rows, 1:], gray[rows, :-1])  # steps to the right
        below = slice(rows.start + 1, min(rows.stop + 1, h))  # steps down from each row
        dy = cv2.absdiff(gray[below], gray[rows.start : below.stop - 1])
        first_across = (BLOCK - 1 - rows.start) % BLOCK  # the first row of dy at a block boundary
        across += int(dx[:, BLOCK - 1 :: BLOCK].sum(dtype=np.int64)) + int(dy[first_across::BLOCK].sum(dtype=np.int64))
        total += int(cv2.sumElems(dx)[0]) + int(cv2.sumElems(dy)[0])
    n_across = h * len(range(BLOCK - 1, w - 1, BLOCK)) + w * len(range(BLOCK - 1, h - 1, BLOCK))
    n_within = h * (w - 1) + (h - 1) * w - n_across
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
    return cv2.addWeighted(y, 1.0 - share, equalised, share, 0.0, dst=equalised)
