"""Super-resolution step: output sizes, limits, quality against bicubic, tiling, progress, alpha."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest
from PIL import Image

from tests.engine.images import photo, psnr, with_gaussian_noise
from vodimg.engine import ncnn_model
from vodimg.engine.errors import InvalidConfig, LimitExceeded, ProcessingTimeout
from vodimg.engine.frame import Frame, StepContext
from vodimg.engine.steps import superres


def crop(bgr: np.ndarray, size: int, offset: tuple[int, int] = (0, 0)) -> np.ndarray:
    h, w = bgr.shape[:2]
    y0 = (h - size) // 2 + offset[0]
    x0 = (w - size) // 2 + offset[1]
    return np.ascontiguousarray(bgr[y0 : y0 + size, x0 : x0 + size])


def bicubic_half(bgr: np.ndarray) -> np.ndarray:
    """Antialiased bicubic x2 downscale, the usual super-resolution benchmark source."""
    small = Image.fromarray(np.ascontiguousarray(bgr[..., ::-1])).resize(
        (bgr.shape[1] // 2, bgr.shape[0] // 2), Image.Resampling.BICUBIC
    )
    return np.ascontiguousarray(np.asarray(small)[..., ::-1])


def y_psnr(a: np.ndarray, b: np.ndarray, border: int = 4) -> float:
    ya = cv2.cvtColor(a, cv2.COLOR_BGR2YCrCb)[border:-border, border:-border, 0]
    yb = cv2.cvtColor(b, cv2.COLOR_BGR2YCrCb)[border:-border, border:-border, 0]
    return psnr(ya, yb)


def bicubic_x2(bgr: np.ndarray) -> np.ndarray:
    return cv2.resize(bgr, (bgr.shape[1] * 2, bgr.shape[0] * 2), interpolation=cv2.INTER_CUBIC)


def run_advanced(bgr: np.ndarray, alpha=None, ctx=None, **options) -> Frame:
    return superres.apply_advanced(Frame(bgr=bgr, alpha=alpha), {"Switch": "ON", **options}, ctx or StepContext())


@pytest.fixture(scope="module")
def hr_crop() -> np.ndarray:
    return crop(photo("astronaut"), 256, (-60, 0))


@pytest.fixture(scope="module")
def small_input() -> np.ndarray:
    return cv2.resize(photo("coffee"), (37, 23), interpolation=cv2.INTER_AREA)


# --- output sizes --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options, expected",
    [
        ({}, (74, 46)),  # default: percent, 2.0
        ({"Mode": "percent", "Percent": 1.5}, (56, 34)),  # 55.5 -> 56, 34.5 -> 34 (round half even)
        ({"Mode": "percent", "Percent": 3.3}, (122, 76)),
        ({"Mode": "percent", "Percent": 0.5}, (18, 12)),  # below 1: plain area downscale
        ({"Mode": "fixed", "Width": 100, "Height": 31}, (100, 31)),
        ({"Mode": "fixed", "Width": 20, "Height": 92}, (20, 92)),  # one side shrinks, one grows
        ({"Mode": "aspect", "Width": 100, "Height": 100}, (161, 100)),  # covers the box
        ({"Mode": "aspect", "Width": 111, "Height": 10}, (111, 69)),
        ({"Mode": "aspect", "Width": 74}, (74, 46)),
        ({"Mode": "fixed", "Height": 92}, (148, 92)),
        ({"Mode": "fixed", "LongSide": 90, "ShortSide": 40}, (90, 40)),
        ({"Mode": "aspect", "LongSide": 111, "ShortSide": 111}, (179, 111)),
        ({"Mode": "aspect", "ShortSide": 46}, (74, 46)),
    ],
)
def test_output_size_for_each_mode(small_input, options, expected):
    out = run_advanced(small_input, Type="standard", **options)
    assert (out.width, out.height) == expected
    assert out.bgr.dtype == np.uint8 and out.bgr.flags["C_CONTIGUOUS"]


def test_long_and_short_side_follow_the_input_orientation(small_input):
    portrait = np.ascontiguousarray(small_input.transpose(1, 0, 2))  # 23 wide, 37 high
    out = run_advanced(portrait, Type="standard", Mode="fixed", LongSide=90, ShortSide=40)
    assert (out.width, out.height) == (40, 90)


def test_width_and_height_win_over_long_and_short_side(small_input):
    out = run_advanced(small_input, Type="standard", Mode="fixed", Width=50, Height=50, LongSide=90, ShortSide=40)
    assert (out.width, out.height) == (50, 50)


@pytest.mark.parametrize("sr_type", ["standard", "super"])
def test_tiny_images_are_upscaled(sr_type):
    for width, height in ((1, 1), (3, 2), (1, 17)):
        tiny = np.full((height, width, 3), 120, np.uint8)
        out = run_advanced(tiny, Type=sr_type)
        assert (out.width, out.height) == (2 * width, 2 * height)
        assert np.abs(out.bgr.astype(int) - 120).max() <= 2  # flat stays flat


def test_super_resolution_is_exactly_twice(small_input):
    for sr_type in ("lq", "hq"):
        out = superres.apply(Frame(bgr=small_input), {"Switch": "ON", "Type": sr_type, "Size": 2}, StepContext())
        assert (out.width, out.height) == (74, 46)


# --- limits and bad options ----------------------------------------------------------------------


def test_output_side_above_4096_is_refused(small_input):
    with pytest.raises(LimitExceeded, match="4096"):
        run_advanced(small_input, Mode="fixed", Width=4097, Height=10)
    with pytest.raises(LimitExceeded, match="4096"):
        run_advanced(small_input, Mode="aspect", Width=4000, Height=4000)  # covering would be 6435 wide
    wide = np.zeros((4, 2049, 3), np.uint8)
    with pytest.raises(LimitExceeded):
        superres.apply(Frame(bgr=wide), {"Switch": "ON", "Type": "hq"}, StepContext())


def test_output_pixel_limit_of_the_context_is_refused(small_input):
    with pytest.raises(LimitExceeded, match="pixels"):
        run_advanced(small_input, ctx=StepContext(max_output_pixels=74 * 46 - 1))
    assert run_advanced(small_input, ctx=StepContext(max_output_pixels=74 * 46)).width == 74


@pytest.mark.parametrize(
    "options",
    [
        {"Type": "ultra"},
        {"Mode": "stretch"},
        {"Mode": "fixed"},  # no size at all
        {"Mode": "percent", "Percent": 0.0},
        {"Mode": "percent", "Percent": -2.0},
    ],
)
def test_bad_advanced_options_are_refused(small_input, options):
    with pytest.raises(InvalidConfig):
        run_advanced(small_input, **options)


@pytest.mark.parametrize("options", [{"Type": "xq"}, {"Size": 4}])
def test_bad_super_resolution_options_are_refused(small_input, options):
    with pytest.raises(InvalidConfig):
        superres.apply(Frame(bgr=small_input), {"Switch": "ON", **options}, StepContext())


def test_deadline_stops_the_models(small_input):
    with pytest.raises(ProcessingTimeout):
        run_advanced(small_input, Type="super", ctx=StepContext(deadline=time.monotonic() - 1))


# --- quality against bicubic ---------------------------------------------------------------------


@pytest.mark.parametrize("sr_type, min_gain_db", [("standard", 0.4), ("super", 2.0)])
def test_advanced_types_beat_bicubic(hr_crop, sr_type, min_gain_db):
    low = bicubic_half(hr_crop)
    out = run_advanced(low, Type=sr_type).bgr
    gain = y_psnr(out, hr_crop) - y_psnr(bicubic_x2(low), hr_crop)
    assert gain >= min_gain_db, f"{sr_type}: {gain:.2f} dB over bicubic"


def test_hq_beats_bicubic(hr_crop):
    low = bicubic_half(hr_crop)
    out = superres.apply(Frame(bgr=low), {"Switch": "ON", "Type": "hq", "Size": 2}, StepContext()).bgr
    gain = y_psnr(out, hr_crop) - y_psnr(bicubic_x2(low), hr_crop)
    assert gain >= 2.5, f"hq: {gain:.2f} dB over bicubic"


def test_lq_beats_bicubic_on_a_noisy_low_quality_source(hr_crop):
    low = with_gaussian_noise(bicubic_half(hr_crop), sigma=8.0, seed=3)
    ok, jpeg = cv2.imencode(".jpg", low, [cv2.IMWRITE_JPEG_QUALITY, 50])
    low = cv2.imdecode(jpeg, cv2.IMREAD_COLOR)
    out = superres.apply(Frame(bgr=low), {"Switch": "ON", "Type": "lq"}, StepContext()).bgr
    gain = y_psnr(out, hr_crop) - y_psnr(bicubic_x2(low), hr_crop)
    assert gain >= 1.0, f"lq: {gain:.2f} dB over bicubic on a noisy source"


# --- behaviour ------------------------------------------------------------------------------------


def test_progress_is_reported_monotonic_and_ends_at_one(hr_crop):
    reports: list[float] = []
    low = cv2.resize(hr_crop, (150, 140), interpolation=cv2.INTER_AREA)  # 2x2 tiles of 128
    run_advanced(low, Type="super", Mode="percent", Percent=3.0, ctx=StepContext(progress=reports.append))
    assert len(reports) >= 8  # both models, four tiles each
    assert reports == sorted(reports)
    assert 0.0 < reports[0] and reports[-1] == 1.0


def test_output_is_deterministic(hr_crop):
    low = bicubic_half(hr_crop)
    for sr_type in ("standard", "super"):
        first = run_advanced(low, Type=sr_type).bgr
        second = run_advanced(low.copy(), Type=sr_type).bgr
        assert np.array_equal(first, second), sr_type


@pytest.mark.parametrize("spec", [ncnn_model.SPAN_X2, ncnn_model.waifu2x_photo(None)], ids=lambda s: s.name)
def test_tiles_leave_no_seams(hr_crop, spec):
    low = bicubic_half(hr_crop)
    model = ncnn_model.load_model(spec)
    whole = ncnn_model.run_tiled(model, low, tile=256).astype(np.int16)
    tiled = ncnn_model.run_tiled(model, low, tile=40).astype(np.int16)  # 4x4 tiles, seams every 80 px
    diff = np.abs(whole - tiled)
    assert diff.max() <= 2 and diff.mean() < 0.05, (diff.max(), diff.mean())


def test_standard_bands_leave_no_seams(hr_crop, monkeypatch):
    low = bicubic_half(hr_crop)
    whole = run_advanced(low, Type="standard").bgr
    monkeypatch.setattr(superres.filter_sr, "BAND_ROWS", 24)  # ten bands instead of one
    banded = run_advanced(low, Type="standard").bgr
    assert np.array_equal(whole, banded)


def test_alpha_is_resized_with_the_image(small_input):
    alpha = np.tile(np.linspace(0, 255, 37).astype(np.uint8), (23, 1))
    out = run_advanced(small_input, alpha=alpha, Type="standard", Mode="fixed", Width=111, Height=50)
    assert out.alpha is not None and out.alpha.shape == (50, 111) and out.alpha.dtype == np.uint8
    assert out.alpha[:, 0].max() <= 8 and out.alpha[:, -1].min() >= 247  # the ramp stays a ramp
    assert np.all(np.diff(out.alpha[25].astype(int)) >= -1)


def test_check_refuses_bad_options_before_decoding():
    superres.check({"Switch": "ON", "Type": "hq", "Size": 2})
    superres.check({"Switch": "ON", "Type": "super", "Mode": "fixed", "Width": 10})
    superres.check({"Switch": "ON", "Mode": "aspect", "LongSide": 100})
    for bad in (
        {"Type": "ultra"},
        {"Type": "hq", "Size": 3},
        {"Mode": "fixed"},
        {"Type": "standard", "Percent": 0.0},
        {"Type": "super", "Mode": "zoom"},
    ):
        with pytest.raises(InvalidConfig):
            superres.check({"Switch": "ON", **bad})
