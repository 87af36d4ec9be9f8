"""Denoise (ImageDenoiseConfig): a small CNN the project trained itself, run with onnxruntime.

Options: ``Type`` ``weak`` (default) or ``strong``. The image's noise level is estimated first
(``estimate_sigma``); the network, which takes the noise level as an input map (FFDNet-style),
is then run at ``SIGMA_FRACTION[Type]`` times that estimate: ``strong`` removes all the
estimated noise, ``weak`` half of it, which keeps fine texture. Below ``SKIP_BELOW_SIGMA`` the
frame is returned as it is: a clean photo has nothing to denoise.

The model (``weights/denoise/denoise.onnx``, Apache-2.0) and how it was trained are described in
``weights/denoise/README.md`` and ``docs/engine-denoise.md``. Large images are processed in
overlapping tiles (bounded memory, progress and deadline checks between tiles).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from vodimg.engine.errors import InvalidConfig
from vodimg.engine.frame import Frame, StepContext

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

TILE = 512  # core tile edge, pixels; a multiple of ALIGN
MARGIN = 48  # context around each tile, so tiles join without seams; a multiple of ALIGN
BORDER = 16  # mirrored border around the image: the network sees context at the edges too
ALIGN = 8  # the network halves the resolution three times

# Immerkaer's noise-estimation kernel, scaled so Gaussian noise of std s gives residual std s.
_IMMERKAER = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32) / 6.0
_MAD_TO_SIGMA = 1.0 / 0.6745


def apply(frame: Frame, options: dict, ctx: StepContext) -> Frame:
    kind = options.get("Type") or DEFAULT_TYPE
    if kind not in SIGMA_FRACTION:
        raise InvalidConfig(f"unknown denoise Type {kind!r}: use one of {', '.join(SIGMA_FRACTION)}")
    sigma = min(SIGMA_MAX, SIGMA_FRACTION[kind] * estimate_sigma(frame.bgr))
    if sigma < SKIP_BELOW_SIGMA:
        return frame  # nothing to denoise: the network would change it by under a level
    return Frame(bgr=denoise(frame.bgr, sigma, ctx), alpha=frame.alpha)


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
    if bgr.shape[0] * bgr.shape[1] > SAMPLE_FACTOR * sample_pixels:
        image, keep = _block_sample(bgr, sample_pixels)
    else:
        image = bgr
        keep = np.zeros(bgr.shape[:2], bool)
        keep[1:-1, 1:-1] = True
    return _estimate_on(image, keep)


def _estimate_on(bgr: np.ndarray, keep: np.ndarray) -> float:
    """``estimate_sigma`` over the pixels of ``bgr`` where ``keep`` is set."""
    f = bgr.astype(np.float32)
    residual = np.abs(np.stack([cv2.filter2D(f[..., c], -1, _IMMERKAER) for c in range(3)], -1))[keep]
    local_mean = cv2.blur(f, (5, 5))[keep]
    luma = cv2.GaussianBlur(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY).astype(np.float32), (0, 0), 2.0)
    gradient = np.hypot(cv2.Sobel(luma, cv2.CV_32F, 1, 0), cv2.Sobel(luma, cv2.CV_32F, 0, 1))[keep]
    flat = np.broadcast_to((gradient <= np.median(gradient))[..., None], residual.shape)
    sigma = float(np.median(residual[flat])) * _MAD_TO_SIGMA
    for _ in range(2):
        margin = 2.0 * sigma
        usable = flat & (local_mean > margin) & (local_mean < 255.0 - margin)
        if np.count_nonzero(usable) < 100:
            break
        sigma = float(np.median(residual[usable])) * _MAD_TO_SIGMA
    return sigma


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


def denoise(bgr: np.ndarray, sigma: float, ctx: StepContext, tile: int = TILE) -> np.ndarray:
    """Run the network at noise level ``sigma`` (0-255 scale) over the image, tile by tile.

    The tiles are laid out on the image mirrored by BORDER pixels all round and padded to a
    multiple of ALIGN, but that padded image is never made: each window is gathered from
    ``bgr`` with mirrored indexes, and each tile's core is written straight into the 8-bit output.
    Only tiles are ever float (bounded memory)."""
    h, w = bgr.shape[:2]
    hp, wp = h + 2 * BORDER + (-(h + 2 * BORDER) % ALIGN), w + 2 * BORDER + (-(w + 2 * BORDER) % ALIGN)
    out = np.empty_like(bgr)
    cores = [(y, x) for y in range(0, hp, tile) for x in range(0, wp, tile)]
    for done, (y, x) in enumerate(cores):
        ctx.check_deadline()
        _denoise_tile(bgr, out, (hp, wp), y, x, tile, sigma)
        ctx.progress((done + 1) / len(cores))
    return out


def _mirrored(start: int, stop: int, size: int) -> np.ndarray:
    """Indexes into ``size`` pixels of padded positions start..stop-1, the padding mirroring the
    edge pixels as np.pad(mode="symmetric") does (offset by BORDER)."""
    index = np.arange(start - BORDER, stop - BORDER) % (2 * size)
    return np.where(index < size, index, 2 * size - 1 - index)


def _denoise_tile(bgr: np.ndarray, out: np.ndarray, padded: tuple[int, int], y: int, x: int,
                  tile: int, sigma: float) -> None:
    """One tile (padded coordinates y, x) of the uint8 BGR ``bgr`` into ``out``; the network takes
    RGB in 0-1."""
    (hp, wp), (h, w) = padded, bgr.shape[:2]
    y1, x1 = min(y + tile, hp), min(x + tile, wp)
    # Window with context; every bound is a multiple of ALIGN because tile, MARGIN and the
    # padded size are.
    wy0, wx0 = max(y - MARGIN, 0), max(x - MARGIN, 0)
    wy1, wx1 = min(y1 + MARGIN, hp), min(x1 + MARGIN, wp)
    window = bgr[np.ix_(_mirrored(wy0, wy1, h), _mirrored(wx0, wx1, w))][..., ::-1].astype(np.float32) / 255.0
    noisy = np.ascontiguousarray(window.transpose(2, 0, 1)[None])
    sigma_map = np.full((1, 1) + window.shape[:2], sigma / 255.0, np.float32)
    denoised = _session().run(None, {"noisy": noisy, "sigma": sigma_map})[0][0].transpose(1, 2, 0)
    # the part of the core inside the image
    top, bottom = max(y, BORDER), min(y1, BORDER + h)
    left, right = max(x, BORDER), min(x1, BORDER + w)
    if top >= bottom or left >= right:
        return
    core = denoised[top - wy0 : bottom - wy0, left - wx0 : right - wx0, ::-1]
    out[top - BORDER : bottom - BORDER, left - BORDER : right - BORDER] = np.clip(np.rint(core * 255.0), 0, 255)


@lru_cache(maxsize=1)
def _session():
    import onnxruntime as ort

    opts = ort.SessionOptions()
    # One thread: deterministic output and fair to the other jobs on the machine; the
    # service parallelises across images instead.
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # No arena: tile buffers go back to the system after each run instead of staying reserved
    # for the rest of the process (tens of MB next to the steps that follow)
    opts.enable_cpu_mem_arena = False
    return ort.InferenceSession(str(MODEL_PATH), opts, providers=["CPUExecutionProvider"])
