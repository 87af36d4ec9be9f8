"""Denoise (ImageDenoiseConfig): a small CNN the project trained itself, run with onnxruntime.

Options: ``Type`` ``weak`` (default) or ``strong``. The image's noise level is estimated first
(``estimate_sigma``); below ``SKIP_BELOW_SIGMA`` (after the Type's fraction) the frame is
returned as it is: a clean photo has nothing to denoise. Camera noise grows with brightness
(Poisson-Gaussian: variance a * intensity + b), so the noise level function is fitted too
(``noise_level_function``) and the network, which takes the noise level as a per-pixel input map
(FFDNet-style), gets ``SIGMA_FRACTION[Type]`` times the level that function gives each pixel's
brightness: ``strong`` removes all the estimated noise, ``weak`` half of it, which keeps fine
texture. ``strong`` also averages the network's output with its run on the mirrored image and
mixes in a little non-local means (``STRONG_NLM_SHARE``): their errors differ, so the mean is
closer to the clean image than either.

The model (``weights/denoise/denoise.onnx``, Apache-2.0) and how it was trained are described in
``weights/denoise/README.md`` and ``docs/engine-denoise.md``. Large images are processed in
overlapping tiles (bounded memory, progress and deadline checks between tiles).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from vodimg.engine.errors import InvalidConfig
from vodimg.engine.frame import DelayedRows, Frame, StepContext

MODEL_PATH = Path(__file__).resolve().parent.parent / "weights" / "denoise" / "denoise.onnx"

SIGMA_FRACTION = {"weak": 0.5, "strong": 1.0}
DEFAULT_TYPE = "weak"
SIGMA_MAX = 50.0  # the network was trained on sigma 0-50 (8-bit scale)
# Below this noise level (after the Type's fraction) the frame is returned as it is: measured on
# the held-out photos, the network changes a clean or nearly clean image by 0.3-0.95 levels on
# average there and gains nothing (photos with sigma-2 noise lose 0.1-0.9 dB).
SKIP_BELOW_SIGMA = 1.5

# The noise estimate on large images uses about SAMPLE_PIXELS pixels in blocks of SAMPLE_BLOCK
# px (plus SAMPLE_MARGIN px of filter context: Gaussian sigma 2 reaches 8 px, Sobel one more);
# images up to SAMPLE_FACTOR times that are measured whole.
SAMPLE_PIXELS = 1 << 17
SAMPLE_BLOCK = 64
SAMPLE_MARGIN = 10
SAMPLE_FACTOR = 4

# Noise level function: residuals of flat pixels binned by local brightness into NLF_BINS
# ranges; bins with fewer than NLF_MIN_SAMPLES values, or whose brightness is within
# NLF_CLIP_MARGIN of black or white (clipping hides noise there), are left out of the fit.
NLF_BINS = 16
NLF_MIN_SAMPLES = 300
NLF_CLIP_MARGIN = 20.0
MAP_SMOOTHING = 2.0  # Gaussian sigma (px) of the brightness the noise map is read from
MAP_HALO = int(np.ceil(4 * MAP_SMOOTHING)) + 1  # that Gaussian's reach, and one more

# strong: non-local means (h = hColor = STRONG_NLM_H x the estimate) mixed in at this share,
# picked on three training photos (rocket, retina, immunohistochemistry) with Gaussian sigma 15
# and the benchmark's four camera-noise cases: mean gain over the mirrored-run mean alone
# +0.09 dB at 0.15, 0.00 at 0.25, -0.2 at 0.35 (it helps most photos and costs the smoothest).
STRONG_NLM_SHARE = 0.15
STRONG_NLM_H = 0.5

TILE = 512  # core tile edge, pixels; a multiple of ALIGN
# context around each tile, so tiles join without seams (more than NL-means' 13 px reach: search
# radius 10 plus patch radius 3); a multiple of ALIGN
MARGIN = 48
BORDER = 16  # mirrored border around the image: the network sees context at the edges too
ALIGN = 8  # the network halves the resolution three times

# Immerkaer's noise-estimation kernel, scaled so Gaussian noise of std s gives residual std s.
_IMMERKAER = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32) / 6.0
_MAD_TO_SIGMA = 1.0 / 0.6745


def apply(frame: Frame, options: dict, ctx: StepContext) -> Frame:
    kind = options.get("Type") or DEFAULT_TYPE
    if kind not in SIGMA_FRACTION:
        raise InvalidConfig(f"unknown denoise Type {kind!r}: use one of {', '.join(SIGMA_FRACTION)}")
    if min(frame.bgr.shape[:2]) < 8:
        return frame
    residuals = _flat_residuals(*_measured(frame.bgr))  # one pass for both measures
    estimate = _sigma_of(*residuals)
    if min(SIGMA_MAX, SIGMA_FRACTION[kind] * estimate) < SKIP_BELOW_SIGMA:
        return frame  # nothing to denoise: the network would change it by under a level
    levels = NoiseLevels(*_level_function_of(*residuals, estimate), scale=SIGMA_FRACTION[kind])
    nlm_h = STRONG_NLM_H * estimate if kind == "strong" else None
    return Frame(bgr=denoise(frame.bgr, levels, ctx, nlm_h=nlm_h), alpha=frame.alpha)


def estimate_sigma(bgr: np.ndarray, sample_pixels: int = SAMPLE_PIXELS) -> float:
    """Standard deviation of additive white noise in an 8-bit image, on the 0-255 scale.

    Robust median-absolute-deviation of Immerkaer's high-pass (second-difference) residual over
    the three channels, taken on the flatter half of the image (by gradient of the smoothed
    luminance: texture and edges would read as noise). Pixels whose neighbourhood is near
    black or white are left out and the estimate refined twice, because clipping there hides
    part of the noise.

    Images of more than ``SAMPLE_FACTOR * sample_pixels`` pixels are measured on about
    ``sample_pixels`` of them: a fixed grid of square blocks spread over the whole image, each
    filtered with enough margin that its values equal a whole-image run's.
    """
    if min(bgr.shape[:2]) < 8:
        return 0.0
    return _sigma_of(*_flat_residuals(*_measured(bgr, sample_pixels)))


def _measured(bgr: np.ndarray, sample_pixels: int = SAMPLE_PIXELS) -> tuple[np.ndarray, np.ndarray]:
    """The pixels the noise is measured on: (image, mask of the pixels that count); a large image's
    block sample, else the whole image but its one-pixel border."""
    if bgr.shape[0] * bgr.shape[1] > SAMPLE_FACTOR * sample_pixels:
        return _block_sample(bgr, sample_pixels)
    keep = np.zeros(bgr.shape[:2], bool)
    keep[1:-1, 1:-1] = True
    return bgr, keep


def _sigma_of(residual: np.ndarray, local_mean: np.ndarray) -> float:
    """``estimate_sigma`` from the flat pixels' residuals and local means."""
    sigma = float(np.median(residual)) * _MAD_TO_SIGMA
    for _ in range(2):
        margin = 2.0 * sigma
        usable = (local_mean > margin) & (local_mean < 255.0 - margin)
        if np.count_nonzero(usable) < 100:
            break
        sigma = float(np.median(residual[usable])) * _MAD_TO_SIGMA
    return sigma


def _flat_residuals(bgr: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """|Immerkaer residual| and 5x5 local mean of every channel value at the flatter half of
    the kept pixels (by gradient of the smoothed luminance), as two flat arrays."""
    f = bgr.astype(np.float32)
    residual = np.abs(np.stack([cv2.filter2D(f[..., c], -1, _IMMERKAER) for c in range(3)], -1))[keep]
    local_mean = cv2.blur(f, (5, 5))[keep]
    luma = cv2.GaussianBlur(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY).astype(np.float32), (0, 0), 2.0)
    gradient = np.hypot(cv2.Sobel(luma, cv2.CV_32F, 1, 0), cv2.Sobel(luma, cv2.CV_32F, 0, 1))[keep]
    flat = gradient <= np.median(gradient)
    return residual[flat].ravel(), local_mean[flat].ravel()


def noise_level_function(bgr: np.ndarray, sample_pixels: int = SAMPLE_PIXELS) -> tuple[float, float]:
    """(a, b) of the noise variance a * intensity + b (0-255 scale) that fits the image best.

    The flat pixels' residuals (as in ``estimate_sigma``, on the same sample of a large image)
    are binned by local brightness; each bin's robust sigma squared is fitted by weighted least
    squares, a and b kept non-negative. White Gaussian noise gives a near 0 and b near sigma
    squared; camera (shot) noise a clearly positive a. Too few usable bins: (0, estimate^2).
    """
    if min(bgr.shape[:2]) < 8:
        return 0.0, 0.0
    residuals = _flat_residuals(*_measured(bgr, sample_pixels))
    return _level_function_of(*residuals, _sigma_of(*residuals))


def _level_function_of(residual: np.ndarray, local_mean: np.ndarray, sigma: float) -> tuple[float, float]:
    """``noise_level_function`` from the flat pixels' residuals and local means; ``sigma``, their
    ``estimate_sigma``, is the fallback."""
    bins = np.minimum((local_mean * (NLF_BINS / 256.0)).astype(np.int32), NLF_BINS - 1)
    means, variances, counts = [], [], []
    for index in range(NLF_BINS):
        selected = bins == index
        count = int(np.count_nonzero(selected))
        if count < NLF_MIN_SAMPLES:
            continue
        mean = float(local_mean[selected].mean())
        if NLF_CLIP_MARGIN < mean < 255.0 - NLF_CLIP_MARGIN:
            means.append(mean)
            variances.append((float(np.median(residual[selected])) * _MAD_TO_SIGMA) ** 2)
            counts.append(count)
    if len(means) < 2:
        return 0.0, sigma * sigma
    x, v, weight = np.array(means), np.array(variances), np.sqrt(np.array(counts, float))
    a, b = np.linalg.lstsq(np.stack([x, np.ones_like(x)], 1) * weight[:, None], v * weight, rcond=None)[0]
    if b < 0.0:  # refit through the origin
        a, b = float(np.sum(weight**2 * v * x) / np.sum(weight**2 * x * x)), 0.0
    elif a < 0.0:  # flat: the weighted mean variance
        a, b = 0.0, float(np.sum(weight**2 * v) / np.sum(weight**2))
    return float(a), float(b)


@dataclass(frozen=True)
class NoiseLevels:
    """Per-pixel noise sigma from the noise level function a * intensity + b and the smoothed
    brightness (mean of the channels), times ``scale`` (the Type's fraction). Read a window at a
    time (``of``): a full-size float map would cost 4 bytes a pixel, 200 MB at 50 megapixels."""

    a: float
    b: float
    scale: float = 1.0

    def of(self, bgr: np.ndarray, rows: slice, cols: slice) -> np.ndarray:
        """float32 levels (0-255 scale, at most SIGMA_MAX before ``scale``) of ``bgr[rows, cols]``,
        equal to the whole image's map there: the brightness is smoothed with HALO pixels of
        context, the Gaussian's reach, and the image's own edges as the border."""
        h, w = bgr.shape[:2]
        top, left = max(rows.start - MAP_HALO, 0), max(cols.start - MAP_HALO, 0)
        block = bgr[top : min(rows.stop + MAP_HALO, h), left : min(cols.stop + MAP_HALO, w)]
        brightness = cv2.transform(block.astype(np.float32), np.full((1, 3), 1.0 / 3.0, np.float32))
        brightness = cv2.GaussianBlur(brightness, (0, 0), MAP_SMOOTHING)
        brightness = brightness[rows.start - top : rows.stop - top, cols.start - left : cols.stop - left]
        levels = np.minimum(cv2.sqrt(np.maximum(self.a * brightness + self.b, 0.0)), SIGMA_MAX)
        return levels * np.float32(self.scale) if self.scale != 1.0 else levels


def noise_map(bgr: np.ndarray, a: float, b: float) -> np.ndarray:
    """The whole image's per-pixel noise sigma (float32 HxW; see ``NoiseLevels``)."""
    return NoiseLevels(a, b).of(bgr, slice(0, bgr.shape[0]), slice(0, bgr.shape[1]))


def _block_sample(bgr: np.ndarray, sample_pixels: int) -> tuple[np.ndarray, np.ndarray]:
    """A grid of SAMPLE_BLOCK-pixel blocks evenly spread over the image, each with
    SAMPLE_MARGIN pixels of context, stacked into one tall image; and the mask of the blocks'
    own pixels in it (the margins only feed the filters)."""
    h, w = bgr.shape[:2]
    count = max(1, -(-sample_pixels // SAMPLE_BLOCK**2))
    rows = max(1, round(np.sqrt(count * h / w)))
    cols = max(1, -(-count // rows))
    side = SAMPLE_BLOCK + 2 * SAMPLE_MARGIN
    ys = np.linspace(0, h - side, rows + 2)[1:-1].round().astype(int)
    xs = np.linspace(0, w - side, cols + 2)[1:-1].round().astype(int)
    blocks = np.stack([bgr[y : y + side, x : x + side] for y in ys for x in xs])
    keep = np.zeros((side, side), bool)
    keep[SAMPLE_MARGIN:-SAMPLE_MARGIN, SAMPLE_MARGIN:-SAMPLE_MARGIN] = True
    return blocks.reshape(-1, side, 3), np.tile(keep, (len(blocks), 1))


def denoise(
    bgr: np.ndarray, sigma: float | NoiseLevels, ctx: StepContext, tile: int = TILE, nlm_h: float | None = None
) -> np.ndarray:
    """Run the network at noise level ``sigma`` (0-255 scale: one level, or per pixel from a
    ``NoiseLevels``) over the image, tile by tile. With ``nlm_h`` (``strong``), each tile is the mean
    of the network's output and its output on the mirrored tile, mixed with non-local means of
    strength ``nlm_h``.

    The tiles are laid out on the image mirrored by BORDER pixels all round and padded to a
    multiple of ALIGN, but that padded image is never made: each window is gathered from ``bgr``
    with mirrored indexes. Only tiles are ever float, the noise levels included. A row of tiles'
    cores goes into an 8-bit band, written to the output once the next row of tiles has read its
    context (``DelayedRows``): with ``ctx.overwrite_input`` the output is ``bgr`` itself, and the
    whole step holds one frame and two bands (bounded memory)."""
    if tile < 2 * MARGIN or tile % ALIGN:
        raise ValueError(f"tile must be a multiple of {ALIGN} and at least {2 * MARGIN}")
    h, w = bgr.shape[:2]
    hp, wp = h + 2 * BORDER + (-(h + 2 * BORDER) % ALIGN), w + 2 * BORDER + (-(w + 2 * BORDER) % ALIGN)
    # only tiles whose core holds image pixels (the others are all padding)
    tile_rows, tile_cols = range(0, BORDER + h, tile), range(0, BORDER + w, tile)
    writer = DelayedRows(bgr if ctx.overwrite_input else np.empty_like(bgr))
    session = _session()
    for row, y in enumerate(tile_rows):
        rows = slice(max(y - BORDER, 0), min(y + tile - BORDER, h))  # the image rows of these cores
        band = np.empty((rows.stop - rows.start, w, 3), np.uint8)
        for col, x in enumerate(tile_cols):
            ctx.check_deadline()
            _denoise_tile(session, bgr, band, rows.start, (hp, wp), y, x, tile, sigma, nlm_h)
            ctx.progress((row * len(tile_cols) + col + 1) / (len(tile_rows) * len(tile_cols)))
        writer.put(rows, band)
    writer.flush()
    return writer.out


def _mirrored(start: int, stop: int, size: int) -> np.ndarray:
    """Indexes into ``size`` pixels of padded positions start..stop-1, the padding mirroring the
    edge pixels as np.pad(mode="symmetric") does (offset by BORDER)."""
    index = np.arange(start - BORDER, stop - BORDER) % (2 * size)
    return np.where(index < size, index, 2 * size - 1 - index)


def _denoise_tile(session, bgr: np.ndarray, band: np.ndarray, band_top: int, padded: tuple[int, int], y: int, x: int,
                  tile: int, sigma: float | NoiseLevels, nlm_h: float | None) -> None:
    """One tile (padded coordinates y, x) of the uint8 BGR ``bgr`` into ``band``, the output's rows
    from image row ``band_top``; the network takes RGB in 0-1."""
    (hp, wp), (h, w) = padded, bgr.shape[:2]
    y1, x1 = min(y + tile, hp), min(x + tile, wp)
    # Window with context; every bound is a multiple of ALIGN because tile, MARGIN and the
    # padded size are.
    wy0, wx0 = max(y - MARGIN, 0), max(x - MARGIN, 0)
    wy1, wx1 = min(y1 + MARGIN, hp), min(x1 + MARGIN, wp)
    row_index, col_index = _mirrored(wy0, wy1, h), _mirrored(wx0, wx1, w)
    rows, cols = np.ix_(row_index, col_index)
    window = bgr[rows, cols][..., ::-1].astype(np.float32) / 255.0
    if isinstance(sigma, NoiseLevels):  # the levels of the pixels the window covers, gathered alike
        top, left = int(row_index.min()), int(col_index.min())
        covered = sigma.of(bgr, slice(top, int(row_index.max()) + 1), slice(left, int(col_index.max()) + 1))
        sigma_map = covered[rows - top, cols - left] / 255.0
    else:
        sigma_map = np.full(window.shape[:2], sigma / 255.0, np.float32)
    denoised = _network(session, window, sigma_map)
    if nlm_h is not None:
        mirrored = _network(session, window[:, ::-1], sigma_map[:, ::-1])[:, ::-1]
        denoised = (1.0 - STRONG_NLM_SHARE) * 0.5 * (denoised + mirrored) + STRONG_NLM_SHARE * _nlm(window, nlm_h)
    # the part of the core inside the image (never empty: denoise() skips all-padding tiles)
    top, bottom = max(y, BORDER), min(y1, BORDER + h)
    left, right = max(x, BORDER), min(x1, BORDER + w)
    core = denoised[top - wy0 : bottom - wy0, left - wx0 : right - wx0, ::-1]
    band[top - BORDER - band_top : bottom - BORDER - band_top, left - BORDER : right - BORDER] = np.clip(
        np.rint(core * 255.0), 0, 255)


def _network(session, rgb: np.ndarray, sigma_map: np.ndarray) -> np.ndarray:
    """One forward pass: RGB (HxWx3, 0..1) and sigma map (HxW, sigma/255) -> denoised RGB."""
    noisy = np.ascontiguousarray(rgb.transpose(2, 0, 1)[None])
    levels = np.ascontiguousarray(sigma_map[None, None])
    return session.run(None, {"noisy": noisy, "sigma": levels})[0][0].transpose(1, 2, 0)


def _nlm(rgb: np.ndarray, h: float) -> np.ndarray:
    """OpenCV's colour non-local means (7 px patches, 21 px search) on an RGB 0..1 window; the
    window's MARGIN covers its reach, so tiles match a whole-image run."""
    bgr = cv2.cvtColor(np.rint(rgb * 255.0).astype(np.uint8), cv2.COLOR_RGB2BGR)  # exact: from uint8
    smoothed = cv2.fastNlMeansDenoisingColored(bgr, None, h, h, 7, 21)  # works in Lab, wants BGR
    return cv2.cvtColor(smoothed, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0


def _session():
    """A session for one image's tiles. Its arena (faster runs, and a third of the peak memory of
    running without one: 46 vs 120-160 MB at a 608 px window) goes back to the system with the
    session, so later steps don't carry it; a new session costs about 5 ms."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    # One thread: deterministic output and fair to the other jobs on the machine; the
    # service parallelises across images instead.
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.enable_mem_pattern = False  # planned buffers would double the arena's peak (88 vs 46 MB)
    return ort.InferenceSession(str(MODEL_PATH), opts, providers=["CPUExecutionProvider"])
