"""The fixed step order, step dispatch, progress and deadline (see docs/engine.md, "Pipeline").

decode -> low-light -> denoise -> super-resolution -> quality enhance -> face enhance ->
colour enhance -> sharpen -> beauty -> cut-out -> encode: noise is removed before it is enlarged
or sharpened, and cut-out sees the finished picture.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from vodimg.engine import codec, memory
from vodimg.engine.errors import InvalidConfig, LimitExceeded, ProcessingTimeout
from vodimg.engine.frame import Frame, StepContext, map_strips
from vodimg.engine.limits import Limits

STEP_PACKAGE = "vodimg.engine.steps"
MB = 1024 * 1024


@dataclass(frozen=True)
class StepSpec:
    module: str  # vodimg.engine.steps.<module>
    capability: str  # where its options live in ProcessImageConfigure (for messages)
    weight: float  # share of the progress bar, roughly its cost
    switch_default: str = "OFF"  # the spec's default for a Switch left out of a given object
    function: str = "apply"  # the module's entry point for this capability
    # Peak working memory while the step runs, input and output frames included (a step that
    # writes over its input, as the pipeline allows, holds one): ``memory`` bytes per pixel (of
    # the larger of input and output; a BGR frame is 3) plus ``memory_fixed`` bytes (a network's
    # own buffers, what its first run loads). Fitted to peak RSS on 1500x1500 to 3500x3500 inputs
    # (``python -m bench.memory --steps``), rounded up; vodimg/engine/memory.py estimates from these.
    memory: float = 12.0
    memory_fixed: int = 0
    # Set when each output pixel depends only on input pixels at most this many rows away and on
    # nothing global: the pipeline then runs the step on strips (frame.map_strips), bounding its
    # temporaries. tests/engine/test_memory.py checks that strips give the same pixels.
    halo: int | None = None


# The order the steps run in. A capability runs only when its object is given and its Switch
# (or, for ones whose spec default is ON, a missing Switch) is ON.
ENHANCE_STEPS = (
    StepSpec("lowlight", "EnhanceConfig.LowLightEnhance", 3, memory=5, memory_fixed=16 * MB),
    StepSpec("denoise", "EnhanceConfig.Denoise", 10, switch_default="ON", memory=4, memory_fixed=160 * MB),
    StepSpec("superres", "EnhanceConfig.SuperResolution", 60, memory=6, memory_fixed=50 * MB),
    StepSpec("superres", "EnhanceConfig.AdvancedSuperResolution", 60, "ON", "apply_advanced",
             memory=20, memory_fixed=50 * MB),
    # strong's fixed part is its waifu2x model and ncnn's buffers
    StepSpec("quality", "EnhanceConfig.ImageQualityEnhance", 8, memory=9, memory_fixed=200 * MB),
    StepSpec("face", "EnhanceConfig.FaceEnhance", 8, memory=5, memory_fixed=50 * MB),
    # per pixel (HSV curves)
    StepSpec("color", "EnhanceConfig.ColorEnhance", 2, memory=4, memory_fixed=16 * MB, halo=0),
    # Gaussians of sigma 1 and 3 (9 rows each side for 8-bit) and a 3x3 min/max of luma
    StepSpec("sharpen", "EnhanceConfig.SharpEnhance", 2, memory=4, memory_fixed=16 * MB, halo=10),
    StepSpec("beauty", "BeautyConfig", 5, memory=10, memory_fixed=50 * MB),
    # fixed: U2-Net-p's activations at its 320x320 input, about 325 MB
    StepSpec("cutout", "AiCutOutConfig", 20, switch_default="ON", memory=9, memory_fixed=330 * MB),
)
DECODE_WEIGHT, ENCODE_WEIGHT = 2.0, 3.0


@dataclass(frozen=True)
class PlannedStep:
    spec: StepSpec
    options: dict


@dataclass(frozen=True)
class ProcessedImage:
    data: bytes
    format: str  # "JPEG", "PNG", "BMP" or "WebP"
    width: int
    height: int
    size: int  # len(data)


def plan(configure: dict) -> list[PlannedStep]:
    """The steps a ProcessImageConfigure turns on, in pipeline order, with their options."""
    planned = []
    for spec in ENHANCE_STEPS:
        options = _capability(configure, spec.capability)
        if options is not None and _is_on(spec, options):
            planned.append(PlannedStep(spec, options))
    return planned


def _capability(configure: dict, path: str) -> dict | None:
    value: object = configure
    for key in path.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return value if isinstance(value, dict) else None


def _is_on(spec: StepSpec, options: dict) -> bool:
    if spec.module == "beauty":  # ImageBeautyConfig has no Switch: its items do
        items = (options.get("BeautyEffectItems") or []) + (options.get("BeautyFilterItems") or [])
        return any(isinstance(item, dict) and item.get("Switch") == "ON" for item in items)
    return options.get("Switch", spec.switch_default) == "ON"


def load_step(step: PlannedStep) -> Callable[[Frame, dict, StepContext], Frame]:
    """Import vodimg.engine.steps.<module> on first use (a model costs only when used), and let
    the module refuse its options before any pixel is decoded if it has ``check(options)``."""
    module_name = f"{STEP_PACKAGE}.{step.spec.module}"
    if importlib.util.find_spec(module_name) is None:
        raise InvalidConfig(f"{step.spec.capability} is not available: {module_name} is not installed")
    module = importlib.import_module(module_name)
    check = getattr(module, "check", None)
    if check is not None:
        check(step.options)
    return getattr(module, step.spec.function)


class ProgressTracker:
    """Turns per-step fractions into one overall fraction, weighted by step cost, never falling."""

    def __init__(self, weights: list[float], report: Callable[[float], None] | None):
        self._starts = np.concatenate([[0.0], np.cumsum(weights)])
        self._total = float(self._starts[-1])
        self._report = report
        self._last = 0.0

    def at(self, index: int, fraction: float = 0.0) -> None:
        """Unit ``index`` is ``fraction`` done (units: decode, the planned steps, encode)."""
        if self._report is None:
            return
        fraction = min(max(float(fraction), 0.0), 1.0)
        done = (self._starts[index] + fraction * (self._starts[index + 1] - self._starts[index]))
        overall = min(done / self._total, 1.0)
        if overall > self._last:
            self._last = overall
            self._report(overall)

    def for_unit(self, index: int) -> Callable[[float], None]:
        return lambda fraction: self.at(index, fraction)


def run(
    data: bytes,
    configure: dict,
    limits: Limits,
    progress: Callable[[float], None] | None = None,
) -> ProcessedImage:
    started = time.monotonic()
    deadline = started + limits.max_seconds
    steps = plan(configure or {})
    functions = [load_step(step) for step in steps]  # fail before decoding
    tracker = ProgressTracker(
        [DECODE_WEIGHT] + [step.spec.weight for step in steps] + [ENCODE_WEIGHT], progress
    )

    source = codec.decode(data, limits, lambda header: memory.check(header, steps, limits))
    settings = codec.output_settings(source, (configure or {}).get("EncodeConfig"))
    frame, source_quality = source.frame, source.quality
    del source  # the decoded frame lives only as long as a step needs it
    tracker.at(0, 1.0)
    for index, (step, function) in enumerate(zip(steps, functions), start=1):
        _check_deadline(deadline, limits, f"before {step.spec.capability}")
        ctx = StepContext(
            deadline=deadline,
            progress=tracker.for_unit(index),
            max_output_pixels=limits.max_output_pixels,
            source_quality=source_quality,
            overwrite_input=True,  # the loop keeps only what the step returns
        )
        frame = _checked(_run_step(step, function, frame, ctx), step.spec)
        memory.release_free_memory()
        _check_output_pixels(frame, limits)
        tracker.at(index, 1.0)

    _check_deadline(deadline, limits, "before encoding")
    _check_output_pixels(frame, limits)
    encoded = codec.encode(frame, settings)
    tracker.at(len(steps) + 1, 1.0)
    return ProcessedImage(encoded, settings.format, frame.width, frame.height, len(encoded))


def _run_step(step: PlannedStep, function, frame: Frame, ctx: StepContext) -> Frame:
    """The step on the whole frame, or strip by strip when it is local (``StepSpec.halo``): then
    the strips, which overlap, are each the step's input only to read."""
    if step.spec.halo is None:
        return function(frame, step.options, ctx)
    strip_ctx = dataclasses.replace(ctx, overwrite_input=False)
    bgr = map_strips(frame.bgr, lambda strip: function(Frame(strip), step.options, strip_ctx).bgr,
                     step.spec.halo, in_place=ctx.overwrite_input)
    return Frame(bgr, frame.alpha)


def _check_deadline(deadline: float, limits: Limits, where: str) -> None:
    if time.monotonic() > deadline:
        raise ProcessingTimeout(
            f"processing took longer than the limit of {limits.max_seconds:g} s ({where})"
        )


def _check_output_pixels(frame: Frame, limits: Limits) -> None:
    if frame.width * frame.height > limits.max_output_pixels:
        raise LimitExceeded(
            f"the result would be {frame.width}x{frame.height} = {frame.width * frame.height} "
            f"pixels, more than the limit of {limits.max_output_pixels}"
        )


def _checked(frame: Frame, spec: StepSpec) -> Frame:
    """A step's result must keep the Frame contract; a breach is a bug in that step."""
    bgr, alpha = frame.bgr, frame.alpha
    if bgr.dtype != np.uint8 or bgr.ndim != 3 or bgr.shape[2] != 3:
        raise RuntimeError(f"step {spec.module} returned {bgr.dtype} pixels of shape {bgr.shape}")
    if alpha is not None and (alpha.dtype != np.uint8 or alpha.shape != bgr.shape[:2]):
        raise RuntimeError(f"step {spec.module} returned alpha of shape {alpha.shape}, not {bgr.shape[:2]}")
    if not bgr.flags.c_contiguous:
        frame = Frame(np.ascontiguousarray(bgr), alpha)
    return frame
