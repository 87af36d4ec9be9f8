"""AiCutOut: cut the subject out into the frame's alpha channel.

Type ``foreground`` (default): salient-object segmentation with U2-Net-p (packaged ONNX weights,
onnxruntime on one thread, deterministic).

- ``cutout-1.0-lite`` (default Model): one pass at the network's 320x320 input, the saliency map
  upscaled bilinearly to the image size.
- ``cutout-1.0-flash``: after that first pass, a second one zooms in on the object's box (with
  a 10 % margin), so the object fills the network's input (more pixels on its outline, which
  matters most for objects small in the frame), averaging that crop's map with its mirror
  image's (fewer holes and stray blobs); the map is then refined at full resolution with a
  guided filter led by the image, so the alpha edge follows the object's real edge instead of a
  blurred 320 px outline. Three network runs instead of one.

Type ``pattern``: extract a printed pattern from a plain background (see ``extract_pattern``).
The background must be roughly one colour at the image border.

The colour pixels are kept (foreground) or decontaminated at the pattern's soft edge (pattern).
An input alpha is multiplied with the cut-out's. Formats without alpha are flattened on white
by the encoder.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources

import cv2
import numpy as np

from vodimg.engine.errors import InvalidConfig
from vodimg.engine.frame import STRIP_ROWS, Frame, StepContext, row_strips  # strips: bounded memory

TYPES = ("foreground", "pattern")
MODELS = ("cutout-1.0-lite", "cutout-1.0-flash")
DEFAULT_TYPE = "foreground"
DEFAULT_MODEL = "cutout-1.0-lite"

NETWORK_SIDE = 320  # U2-Net-p's fixed input size
ZOOM_MARGIN = 0.1  # flash: background kept around the object for the second pass, per side
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def apply(frame: Frame, options: dict, ctx: StepContext) -> Frame:
    cutout_type = options.get("Type") or DEFAULT_TYPE
    if cutout_type == "foreground":
        bgr, alpha = frame.bgr, foreground_alpha(frame.bgr, options.get("Model") or DEFAULT_MODEL, ctx)
    elif cutout_type == "pattern":
        bgr, alpha = extract_pattern(frame.bgr, PatternOptions.from_config(options.get("PatternConfig") or {}))
    else:
        raise InvalidConfig(f"AiCutOut Type {cutout_type!r} is not supported; use one of: {', '.join(TYPES)}")
    if frame.alpha is not None:
        alpha = ((alpha.astype(np.uint16) * frame.alpha + 127) // 255).astype(np.uint8)
    return Frame(bgr=bgr, alpha=alpha)


# --- foreground --------------------------------------------------------------------------------


def foreground_alpha(bgr: np.ndarray, model: str, ctx: StepContext) -> np.ndarray:
    """uint8 alpha (H, W) of the salient object."""
    if model not in MODELS:
        raise InvalidConfig(f"AiCutOut Model {model!r} is not supported; use one of: {', '.join(MODELS)}")
    height, width = bgr.shape[:2]
    ctx.check_deadline()
    alpha = cv2.resize(saliency_map(bgr), (width, height), interpolation=cv2.INTER_LINEAR)
    if model == "cutout-1.0-flash":
        ctx.progress(0.3)
        alpha = _zoomed_in(bgr, alpha, ctx)
    ctx.progress(1.0)
    alpha *= 255.0  # in place: no full-size float temporaries
    return np.clip(np.rint(alpha, out=alpha), 0, 255, out=alpha).astype(np.uint8)


def _zoomed_in(bgr: np.ndarray, coarse: np.ndarray, ctx: StepContext) -> np.ndarray:
    """Segment again inside the object's box found by the first pass, so the object fills the
    network's input (more pixels for its outline), averaging the crop and its mirror image; then
    snap the edges to the image with a guided filter. Writes into ``coarse`` and returns it."""
    y0, y1, x0, x1 = _object_box(coarse)
    crop = np.ascontiguousarray(bgr[y0:y1, x0:x1])
    ctx.check_deadline()
    saliency = saliency_map(crop)
    ctx.progress(0.6)
    ctx.check_deadline()
    saliency = (saliency + saliency_map(np.ascontiguousarray(crop[:, ::-1]))[:, ::-1]) / 2.0
    ctx.progress(0.9)
    fine = cv2.resize(saliency, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
    coarse[y0:y1, x0:x1] = refine_edges(crop, fine)
    return coarse


def _object_box(alpha: np.ndarray) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1) around alpha >= 0.5 with a margin of ZOOM_MARGIN of its size; the whole
    image when nothing is salient."""
    height, width = alpha.shape
    ys, xs = np.nonzero(alpha >= 0.5)
    if ys.size == 0:
        return 0, height, 0, width
    margin_y = int(ZOOM_MARGIN * (ys.max() - ys.min() + 1)) + 4
    margin_x = int(ZOOM_MARGIN * (xs.max() - xs.min() + 1)) + 4
    return (
        max(0, int(ys.min()) - margin_y),
        min(height, int(ys.max()) + 1 + margin_y),
        max(0, int(xs.min()) - margin_x),
        min(width, int(xs.max()) + 1 + margin_x),
    )


def saliency_map(bgr: np.ndarray) -> np.ndarray:
    """U2-Net-p's saliency (0-1, float32, NETWORK_SIDE square) for an image of any size."""
    side = (NETWORK_SIDE, NETWORK_SIDE)
    shrinking = bgr.shape[0] * bgr.shape[1] > NETWORK_SIDE * NETWORK_SIDE
    small = cv2.resize(bgr, side, interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)
    rgb = cv2.cvtColor(small, cv2.COLOR_BGR2RGB).astype(np.float32)
    rgb /= max(1.0, float(rgb.max()))  # as the model was trained: scaled by the image's maximum
    tensor = ((rgb - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)[None]
    session = _session()
    output = session.run([session.get_outputs()[0].name], {session.get_inputs()[0].name: tensor})[0]
    return np.clip(output[0, 0], 0.0, 1.0).astype(np.float32)


def refine_edges(bgr: np.ndarray, coarse: np.ndarray) -> np.ndarray:
    """Snap an upscaled 0-1 mask to the image's edges with a guided filter (grey guide).

    The radius covers the blur of upscaling from NETWORK_SIDE; the result is re-sharpened so that
    confident regions stay fully opaque or transparent.
    """
    height, width = coarse.shape
    radius = max(2, int(round(2.0 * max(height, width) / NETWORK_SIDE)))
    refined = np.empty_like(coarse)
    for read, write, keep in row_strips(height, 2 * radius + 2, STRIP_ROWS):  # bounded memory; same result
        guide = cv2.cvtColor(bgr[read], cv2.COLOR_BGR2GRAY).astype(np.float32) / 255.0
        refined[write] = guided_filter(guide, coarse[read], radius, 1e-4)[keep]
    refined -= 0.05
    refined /= 0.9
    return np.clip(refined, 0.0, 1.0, out=refined)


def guided_filter(guide: np.ndarray, source: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """He et al.'s guided filter, grey guide, float32 arrays of one shape."""
    size = (2 * radius + 1, 2 * radius + 1)

    def mean(x: np.ndarray) -> np.ndarray:
        return cv2.boxFilter(x, -1, size, borderType=cv2.BORDER_REFLECT)

    mean_guide, mean_source = mean(guide), mean(source)
    a = (mean(guide * source) - mean_guide * mean_source) / (mean(guide * guide) - mean_guide**2 + eps)
    b = mean_source - a * mean_guide
    return mean(a) * guide + mean(b)


@functools.cache
def _session():
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1  # deterministic, and fair to other work on shared cores
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    options.enable_mem_pattern = False  # planned buffers: a peak of 543 MB instead of 349, and slower
    weights = resources.files("vodimg.engine") / "weights" / "u2netp" / "u2netp.onnx"
    return onnxruntime.InferenceSession(weights.read_bytes(), options, providers=["CPUExecutionProvider"])


# --- pattern -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PatternOptions:
    """PatternConfig with the spec's defaults."""

    transparency_threshold: int = 30
    opaque_threshold: int = 127
    edge_sampling_step: int = 5
    edge_expansion_step: int = 5
    edge_blending_intensity: float = 0.5

    @classmethod
    def from_config(cls, config: dict) -> "PatternOptions":
        defaults = cls()
        options = cls(
            transparency_threshold=int(config.get("TransparencyThreshold", defaults.transparency_threshold)),
            opaque_threshold=int(config.get("OpaqueThreshold", defaults.opaque_threshold)),
            edge_sampling_step=int(config.get("EdgeSamplingStep", defaults.edge_sampling_step)),
            edge_expansion_step=int(config.get("EdgeExpansionStep", defaults.edge_expansion_step)),
            edge_blending_intensity=float(config.get("EdgeBlendingIntensity", defaults.edge_blending_intensity)),
        )
        options.check()
        return options

    def check(self) -> None:
        ranges = (
            ("TransparencyThreshold", self.transparency_threshold, 0, 255),
            ("OpaqueThreshold", self.opaque_threshold, 0, 255),
            ("EdgeSamplingStep", self.edge_sampling_step, 1, 10),
            ("EdgeExpansionStep", self.edge_expansion_step, 0, MAX_EDGE_EXPANSION),
            ("EdgeBlendingIntensity", self.edge_blending_intensity, 0.0, 1.0),
        )
        for name, value, low, high in ranges:
            if not low <= value <= high:
                raise InvalidConfig(f"PatternConfig.{name} must be between {low} and {high}, got {value}")
        if self.opaque_threshold <= self.transparency_threshold:
            raise InvalidConfig("PatternConfig.OpaqueThreshold must be greater than TransparencyThreshold")


MAX_EDGE_EXPANSION = 100  # px; the spec gives no upper bound
BORDER_FRACTION = 0.02  # width of the border strip that samples the background colour
MIN_PATTERN_CONTRAST = 6.0  # CIE76 delta E above the background noise that counts as "surely pattern"


def extract_pattern(bgr: np.ndarray, options: PatternOptions) -> tuple[np.ndarray, np.ndarray]:
    """Pattern on a plain background -> (decontaminated BGR, uint8 alpha).

    1. Background colour: median of a border strip (in CIE Lab); its noise level is the 99th
       percentile of the strip's distances to that colour.
    2. Sure background / sure pattern: distance to the background below the noise level /
       above it by MIN_PATTERN_CONTRAST, each eroded by one pixel so edges are left unknown.
    3. Alpha of every other pixel by local colour sampling: the mean colours of sure pattern (F)
       and sure background (B) within EdgeSamplingStep pixels, and alpha = the pixel's position
       on the line from B to F (the compositing equation C = aF + (1 - a)B solved for a).
    4. Thresholds: alpha below TransparencyThreshold -> 0, above OpaqueThreshold -> 255, values
       between stretched linearly to 0-255.
    5. Edge expansion and blending: within EdgeExpansionStep pixels on either side of the
       pattern's outline, alpha moves towards a linear ramp across that band by
       EdgeBlendingIntensity (0: keep the sharp matte; 1: a full feather of 2 x EdgeExpansionStep px).
    6. Colour decontamination: soft pixels take the local pattern colour, so the feathered edge
       fades the pattern itself instead of showing a fringe of the old background.

    Steps 2-6 only look EdgeSamplingStep + EdgeExpansionStep pixels around each pixel, so the
    image is processed in horizontal strips with that much overlap (bounded memory on large
    images; the result is identical to a whole-image run).
    """
    background = _background(bgr)
    typical = _typical_pattern_distance(bgr, background)
    if typical is None:  # nothing stands out from the background
        return bgr.copy(), np.zeros(bgr.shape[:2], np.uint8)
    colour, alpha = np.empty_like(bgr), np.empty(bgr.shape[:2], np.uint8)
    halo = options.edge_sampling_step + options.edge_expansion_step + 4
    for read, write, keep in row_strips(bgr.shape[0], halo, STRIP_ROWS):
        strip_colour, strip_alpha = _extract_strip(bgr[read], background, typical, options)
        colour[write], alpha[write] = strip_colour[keep], strip_alpha[keep]
    return colour, alpha


@dataclass(frozen=True)
class _Background:
    lab: np.ndarray  # median border colour, CIE Lab
    bgr: np.ndarray  # median border colour, BGR
    noise: float  # delta E that background pixels stay within


def _background(bgr: np.ndarray) -> _Background:
    border = bgr[_border_mask(bgr.shape[:2])].astype(np.float32)
    lab = cv2.cvtColor(border[None] / 255.0, cv2.COLOR_BGR2Lab)[0]
    colour = np.median(lab, axis=0)
    noise = float(np.percentile(np.linalg.norm(lab - colour, axis=-1), 99))
    return _Background(lab=colour, bgr=np.median(border, axis=0), noise=max(noise, 1.0))


def _distance_to_background(bgr: np.ndarray, background: _Background) -> np.ndarray:
    difference = cv2.cvtColor(bgr.astype(np.float32) / 255.0, cv2.COLOR_BGR2Lab) - background.lab
    return np.sqrt(np.einsum("ijk,ijk->ij", difference, difference))


def _typical_pattern_distance(bgr: np.ndarray, background: _Background) -> float | None:
    """Median distance of sure-pattern pixels to the background (on a copy of at most 1 MP),
    None when no pixel is surely pattern."""
    scale = min(1.0, (1e6 / (bgr.shape[0] * bgr.shape[1])) ** 0.5)
    small = bgr if scale == 1.0 else cv2.resize(
        bgr, (max(1, round(bgr.shape[1] * scale)), max(1, round(bgr.shape[0] * scale))), interpolation=cv2.INTER_NEAREST
    )
    distance = _distance_to_background(small, background)
    pattern = distance[distance > background.noise + MIN_PATTERN_CONTRAST]
    return float(np.median(pattern)) if pattern.size else None


def _extract_strip(
    bgr: np.ndarray, background: _Background, typical: float, options: PatternOptions
) -> tuple[np.ndarray, np.ndarray]:
    image = bgr.astype(np.float32)
    distance = _distance_to_background(bgr, background)
    cross = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
    sure_background = cv2.erode((distance <= background.noise).astype(np.uint8), cross)
    sure_pattern = cv2.erode((distance > background.noise + MIN_PATTERN_CONTRAST).astype(np.uint8), cross)
    relative_distance = (distance - background.noise) / (typical - background.noise)
    alpha = _sampled_alpha(image, relative_distance, sure_pattern, sure_background, background.bgr, options.edge_sampling_step)
    alpha = _apply_thresholds(alpha * 255.0, options.transparency_threshold, options.opaque_threshold)
    alpha = _expand_edges(alpha, options.edge_expansion_step, options.edge_blending_intensity)
    colour = _decontaminate(image, alpha, sure_pattern, options.edge_sampling_step + options.edge_expansion_step)
    return colour, np.clip(np.rint(alpha), 0, 255).astype(np.uint8)


def _border_mask(shape: tuple[int, int]) -> np.ndarray:
    width = max(2, int(round(BORDER_FRACTION * min(shape))))
    mask = np.ones(shape, bool)
    mask[width:-width, width:-width] = False
    return mask


def _local_mean(image: np.ndarray, mask: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean colour of the masked pixels within ``radius`` of each pixel, and how many there were."""
    size = (2 * radius + 1, 2 * radius + 1)
    weight = mask.astype(np.float32)
    count = cv2.boxFilter(weight, -1, size, normalize=False, borderType=cv2.BORDER_CONSTANT)
    total = cv2.boxFilter(image * weight[..., None], -1, size, normalize=False, borderType=cv2.BORDER_CONSTANT)
    return total / np.maximum(count, 1e-6)[..., None], count


def _sampled_alpha(
    image: np.ndarray,
    relative_distance: np.ndarray,
    sure_pattern: np.ndarray,
    sure_background: np.ndarray,
    background_bgr: np.ndarray,
    step: int,
) -> np.ndarray:
    """0-1 alpha: 1 / 0 on sure pixels, local projection between sampled colours elsewhere."""
    alpha = sure_pattern.astype(np.float32)
    unknown = (sure_pattern == 0) & (sure_background == 0)
    if not unknown.any():
        return alpha
    foreground, foreground_count = _local_mean(image, sure_pattern, step)
    background, background_count = _local_mean(image, sure_background, step)
    colour, foreground, background = image[unknown], foreground[unknown], background[unknown]
    background[background_count[unknown] == 0] = background_bgr
    span = foreground - background
    span2 = np.einsum("ij,ij->i", span, span)
    projected = np.einsum("ij,ij->i", colour - background, span) / np.maximum(span2, 1e-6)
    # Where no pattern colour was sampled nearby (thin strokes, faint colours), fall back on the
    # distance to the background relative to the typical pattern's distance.
    usable = (foreground_count[unknown] > 0) & (span2 > 20.0**2)
    alpha[unknown] = np.clip(np.where(usable, projected, relative_distance[unknown]), 0.0, 1.0)
    return alpha


def _apply_thresholds(alpha: np.ndarray, transparent: int, opaque: int) -> np.ndarray:
    stretched = (alpha - transparent) * (255.0 / (opaque - transparent))
    return np.where(alpha < transparent, 0.0, np.where(alpha > opaque, 255.0, np.clip(stretched, 0.0, 255.0)))


def _expand_edges(alpha: np.ndarray, expansion: int, blending: float) -> np.ndarray:
    if expansion == 0 or blending == 0.0:
        return alpha
    inside = (alpha >= 128).astype(np.uint8)
    inside_depth = cv2.distanceTransform(inside, cv2.DIST_L2, 3)  # px to the nearest outside pixel
    outside_depth = cv2.distanceTransform(1 - inside, cv2.DIST_L2, 3)
    signed = np.where(inside > 0, inside_depth - 0.5, 0.5 - outside_depth)  # > 0 inside the outline
    ramp = np.clip((signed + expansion) / (2.0 * expansion), 0.0, 1.0) * 255.0
    band = np.abs(signed) < expansion
    return np.where(band, alpha + blending * (ramp - alpha), alpha).astype(np.float32)


def _decontaminate(image: np.ndarray, alpha: np.ndarray, sure_pattern: np.ndarray, radius: int) -> np.ndarray:
    soft = (alpha > 0) & (alpha < 255) & (sure_pattern == 0)
    if not soft.any() or not sure_pattern.any():
        return np.clip(np.rint(image), 0, 255).astype(np.uint8)
    foreground, count = _local_mean(image, sure_pattern, max(1, radius))
    replace = soft & (count > 0)
    out = image.copy()
    out[replace] = foreground[replace]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
