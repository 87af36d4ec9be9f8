"""Memory per image: the estimate before decoding and its limit, and the strip-by-strip passes
that keep working memory down giving the same pixels as whole-image passes."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from tests.engine.images import SEED_WITHOUT_SR, darkened, encode, photo, with_gaussian_noise
from vodimg.engine import LimitExceeded, Limits, codec, frame, memory, pipeline, process_image
from vodimg.engine.frame import Frame, RowUpscaler, StepContext, map_strips
from vodimg.engine.steps import beauty, lowlight, quality

MB = 1024 * 1024
# Options that make each strip-able step do real work.
STRIP_STEP_OPTIONS = {
    "EnhanceConfig.ColorEnhance": {"Switch": "ON", "Type": "strong"},
    "EnhanceConfig.SharpEnhance": {"Switch": "ON", "Intensity": 1.0},
}


@pytest.fixture
def tiny_strips(monkeypatch):
    """Strips of 16 rows: many strip boundaries on a small image."""
    monkeypatch.setattr(frame, "STRIP_PIXELS", 1)


def tall_photo() -> np.ndarray:
    return cv2.resize(photo("astronaut"), (300, 517))


def smooth_png(width: int, height: int) -> bytes:
    gradient = np.linspace(0, 255, width, dtype=np.float32)[None, :].repeat(height, 0).astype(np.uint8)
    return encode(cv2.merge([gradient, gradient[::-1], gradient]), ".png")


@pytest.mark.parametrize("spec", [spec for spec in pipeline.ENHANCE_STEPS if spec.halo is not None],
                         ids=lambda spec: spec.capability)
def test_steps_run_in_strips_give_the_same_pixels(tiny_strips, spec):
    step = pipeline.PlannedStep(spec, STRIP_STEP_OPTIONS[spec.capability])
    function = pipeline.load_step(step)
    image = tall_photo()
    whole = function(Frame(image), step.options, StepContext()).bgr
    in_strips = pipeline._run_step(step, function, Frame(image), StepContext()).bgr
    assert not np.array_equal(whole, image)
    assert np.array_equal(whole, in_strips)


def test_beauty_sharpen_in_strips_gives_the_same_pixels(tiny_strips):
    image = tall_photo()
    options = {"BeautyEffectItems": [{"Switch": "ON", "Type": "sharpen", "Value": 100}]}
    in_strips = beauty.apply(Frame(image), options, StepContext()).bgr
    assert np.array_equal(in_strips, beauty.sharpen(image, beauty.MAX_AMOUNT))


def test_map_strips_matches_a_neighbourhood_filter_only_with_enough_halo(tiny_strips):
    image = tall_photo()
    blur = lambda pixels: cv2.GaussianBlur(pixels, (5, 5), 1.0)  # noqa: E731 - 2 rows of context
    assert np.array_equal(map_strips(image, blur, halo=2), blur(image))
    assert not np.array_equal(map_strips(image, blur, halo=0), blur(image))  # the test can fail


def test_map_strips_in_place_reads_only_the_input(tiny_strips):
    image = tall_photo()
    blur = lambda pixels: cv2.GaussianBlur(pixels, (21, 21), 3.0)  # noqa: E731 - 10 rows of context
    own = image.copy()
    assert map_strips(own, blur, halo=10, in_place=True) is own
    assert np.array_equal(own, blur(image))


@pytest.mark.parametrize("capability, options", [
    ("EnhanceConfig.ImageQualityEnhance", {"Switch": "ON", "Type": "normal"}),
    ("EnhanceConfig.ImageQualityEnhance", {"Switch": "ON", "Type": "strong"}),
    ("EnhanceConfig.FaceEnhance", {"Switch": "ON", "Intensity": 1.0}),
    ("EnhanceConfig.SharpEnhance", {"Switch": "ON", "Intensity": 1.0}),
    ("BeautyConfig", {"BeautyEffectItems": [{"Switch": "ON", "Type": kind, "Value": 80}
                                            for kind in ("sharpen", "smooth", "whiten", "rosy")],
                      "BeautyFilterItems": [{"Switch": "ON", "Type": "vivid", "Value": 60}]}),
], ids=lambda value: value if isinstance(value, str) else "")
def test_steps_that_write_over_their_input_give_the_same_pixels(tiny_strips, capability, options):
    """The pipeline lets each step write over its input frame (StepContext.overwrite_input); a
    step doing so must still read the input, not its own partly written result."""
    spec = next(spec for spec in pipeline.ENHANCE_STEPS if spec.capability == capability)
    step = pipeline.PlannedStep(spec, options)
    function = pipeline.load_step(step)
    image = encoded_and_decoded(cv2.resize(photo("astronaut"), (300, 517)), 40)
    reference = image.copy()
    expected = pipeline._run_step(step, function, Frame(image), StepContext()).bgr
    assert np.array_equal(image, reference) and not np.array_equal(expected, image)
    result = pipeline._run_step(step, function, Frame(image), StepContext(overwrite_input=True)).bgr
    assert np.array_equal(result, expected)


def encoded_and_decoded(bgr: np.ndarray, quality: int) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(encode(bgr, ".jpg", quality), np.uint8), cv2.IMREAD_COLOR)


def test_deblocking_in_strips_is_exact(tiny_strips):
    blocky = cv2.imdecode(np.frombuffer(encode(tall_photo(), ".jpg", 15), np.uint8), cv2.IMREAD_COLOR)
    y = cv2.cvtColor(blocky, cv2.COLOR_BGR2GRAY)
    whole = quality.deblock(y, 20.0)
    assert not np.array_equal(whole, y)
    assert np.array_equal(map_strips(y, lambda rows: quality.deblock(rows, 20.0), halo=8, rows=16), whole)


def test_row_upscaler_matches_cv2_resize(tiny_strips):
    small = np.random.default_rng(1).random((23, 17, 3), dtype=np.float32)
    expected = cv2.resize(small, (301, 517), interpolation=cv2.INTER_LINEAR)
    upscaler = RowUpscaler(small, 301, 517)
    got = np.concatenate([upscaler.rows(slice(top, min(517, top + 40))) for top in range(0, 517, 40)])
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() < 1e-5


def test_low_light_and_beauty_strips_match_whole_image_passes(tiny_strips):
    dark = cv2.resize(darkened(photo("astronaut")), (300, 517))
    peak = lowlight.brightest_channel(dark)
    assert np.array_equal(peak, cv2.max(cv2.max(dark[..., 0], dark[..., 1]), dark[..., 2]))
    mask = np.random.default_rng(2).random(dark.shape[:2], dtype=np.float32)
    curve = np.arange(256, dtype=np.uint8)[::-1].copy()
    blended = beauty._blend(dark, lambda rows: cv2.LUT(dark[rows], curve), mask, 0.5)
    assert np.array_equal(blended, cv2.blendLinear(dark, cv2.LUT(dark, curve), 1.0 - mask * 0.5, mask * 0.5))


def test_the_estimate_follows_size_steps_and_alpha():
    header = codec.ImageHeader(1000, 1000, "JPEG", False, "opencv")
    plain = memory.estimate(header, [])
    assert plain == int(max(memory.ENCODE_BYTES_PER_PIXEL, memory.DECODE_BYTES_PER_PIXEL["opencv"]) * 1e6)
    template = pipeline.plan(SEED_WITHOUT_SR)
    assert memory.estimate(header, template) > plain
    bigger = codec.ImageHeader(2000, 2000, "JPEG", False, "opencv")
    assert memory.estimate(bigger, template) > memory.estimate(header, template)
    with_alpha = codec.ImageHeader(1000, 1000, "PNG", True, "opencv")
    assert memory.estimate(with_alpha, template) > memory.estimate(header, template)
    superres = pipeline.plan({"EnhanceConfig": {"SuperResolution": {"Switch": "ON", "Type": "lq", "Size": 2}}})
    for step in superres:
        pipeline.load_step(step)
    assert memory.estimate(header, superres) >= 4e6 * pipeline.ENHANCE_STEPS[2].memory


def test_an_image_over_the_memory_limit_is_refused_before_decoding():
    data = smooth_png(6000, 6000)  # 36 MP: about 100 MB of pixels behind a small file
    needed = memory.estimate_for_bytes(data, SEED_WITHOUT_SR)
    limits = Limits(max_memory_bytes=needed - 1)
    started = time.monotonic()
    with pytest.raises(LimitExceeded) as refused:
        process_image(data, SEED_WITHOUT_SR, limits)
    assert time.monotonic() - started < 0.5  # decoding alone takes longer: nothing was decoded
    message = str(refused.value)
    assert "6000x6000" in message and "VODIMG_MAX_MEMORY_BYTES" in message
    assert f"about {needed / MB:.0f} MB" in message and str(needed - 1) in message


def test_the_default_limit_admits_the_largest_input_with_any_template_without_super_resolution():
    every_step = {
        "EnhanceConfig": {name: {"Switch": "ON"} for name in (
            "LowLightEnhance", "Denoise", "ImageQualityEnhance", "FaceEnhance", "ColorEnhance", "SharpEnhance")},
        "BeautyConfig": {"BeautyEffectItems": [{"Switch": "ON", "Type": "smooth", "Value": 50}]},
        "AiCutOutConfig": {"Switch": "ON", "Type": "pattern"},
    }
    side = int(Limits().max_input_pixels ** 0.5)
    header = codec.ImageHeader(side, side, "PNG", True, "pillow")
    assert memory.estimate(header, pipeline.plan(every_step)) <= Limits().max_memory_bytes


def test_memory_limit_setting():
    assert Limits().max_memory_bytes == 2 * 1024**3
    assert Limits.from_env({"VODIMG_MAX_MEMORY_BYTES": "123456789"}).max_memory_bytes == 123456789
    for bad in ("0", "-1", "1.5", "lots"):
        with pytest.raises(ValueError, match="max_memory_bytes|VODIMG_MAX_MEMORY_BYTES"):
            Limits.from_env({"VODIMG_MAX_MEMORY_BYTES": bad})


PEAK_CHILD = r"""
import json, os, sys
for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[name] = "1"
from vodimg.engine import Limits, process_image
def status(key):
    return [int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith(key)][0]
data, warm = open(sys.argv[1], "rb").read(), open(sys.argv[2], "rb").read()
peaks = []
for configure in json.loads(sys.argv[3]):
    process_image(warm, configure)  # the libraries and models: not the image's memory
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # VmHWM back to the current RSS
    before = status("VmRSS")
    process_image(data, configure, Limits(max_memory_bytes=2**40))
    peaks.append(status("VmHWM") - before)
print(json.dumps(peaks))
"""


def test_the_estimate_covers_the_measured_peak_of_the_heaviest_steps(tmp_path):
    """The memory limit refuses by the estimate, so the estimate must not be below what the steps
    really take: peak RSS of a fresh process on a noisy 4 MP photo (Denoise runs), each template
    after a warm-up on a small image."""
    noisy = with_gaussian_noise(cv2.resize(photo("astronaut"), (2000, 2000)), 15, seed=1)
    (tmp_path / "image.png").write_bytes(encode(noisy, ".png"))
    (tmp_path / "warm.png").write_bytes(encode(noisy[:200, :200], ".png"))
    templates = [{"EnhanceConfig": {"Denoise": {"Switch": "ON", "Type": "weak"}}},
                 {"EnhanceConfig": {"ImageQualityEnhance": {"Switch": "ON", "Type": "normal"}}},
                 SEED_WITHOUT_SR]
    done = subprocess.run([sys.executable, "-c", PEAK_CHILD, str(tmp_path / "image.png"), str(tmp_path / "warm.png"),
                           json.dumps(templates)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    data = (tmp_path / "image.png").read_bytes()
    for configure, peak in zip(templates, json.loads(done.stdout)):
        estimate = memory.estimate_for_bytes(data, configure)
        assert peak <= estimate, (configure, peak / MB, estimate / MB)
