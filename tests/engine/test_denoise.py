"""Denoise step: measured against the noise-free original on held-out photos.

``astronaut`` and ``coffee`` were never seen in training (see training/denoise/README.md).
"""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from tests.engine.images import PHOTOS, photo, psnr, with_camera_noise, with_gaussian_noise
from vodimg.engine.errors import InvalidConfig, ProcessingTimeout
from vodimg.engine.frame import Frame, StepContext
from vodimg.engine.steps import denoise

HELD_OUT = ("astronaut", "coffee")


def run(bgr: np.ndarray, kind: str | None = None, alpha=None, ctx=None) -> Frame:
    options = {"Switch": "ON"} if kind is None else {"Switch": "ON", "Type": kind}
    return denoise.apply(Frame(bgr=bgr, alpha=alpha), options, ctx or StepContext())


@pytest.mark.parametrize("name", HELD_OUT)
@pytest.mark.parametrize("sigma", [15, 25])
def test_both_types_raise_psnr_and_strong_removes_more(name, sigma):
    clean = photo(name)
    noisy = with_gaussian_noise(clean, sigma, seed=7)
    before = psnr(noisy, clean)
    weak = psnr(run(noisy, "weak").bgr, clean)
    strong = psnr(run(noisy, "strong").bgr, clean)
    assert weak > before + 1.5
    assert strong > weak + 0.5
    # A clear gain at full strength: more than 5 dB over the noisy input.
    assert strong > before + 5.0


def test_strong_leaves_less_noise_than_weak():
    clean = photo("astronaut")
    noisy = with_gaussian_noise(clean, 25, seed=3)
    left_weak = denoise.estimate_sigma(run(noisy, "weak").bgr)
    left_strong = denoise.estimate_sigma(run(noisy, "strong").bgr)
    assert left_strong < left_weak < 25


@pytest.mark.parametrize("kind", ["weak", "strong"])
def test_clean_photo_barely_changed(kind):
    clean = photo("chelsea")
    assert psnr(run(clean, kind).bgr, clean) > 43.0  # measured: 51.2 strong, 52.6 weak


def test_default_type_is_weak():
    noisy = with_gaussian_noise(photo("coffee")[:200, :300], 20, seed=1)
    assert np.array_equal(run(noisy).bgr, run(noisy, "weak").bgr)


def test_output_is_deterministic():
    noisy = with_gaussian_noise(photo("coffee"), 20, seed=2)
    assert run(noisy, "strong").bgr.tobytes() == run(noisy, "strong").bgr.tobytes()


def test_tiled_matches_untiled():
    noisy = with_gaussian_noise(photo("astronaut"), 20, seed=4)
    whole = denoise.denoise(noisy, 20.0, StepContext(), tile=1024)
    tiled = denoise.denoise(noisy, 20.0, StepContext(), tile=128)
    diff = np.abs(whole.astype(int) - tiled.astype(int))
    assert diff.max() <= 2  # measured: 1, on 30 of 786k values
    assert psnr(whole, tiled) > 50.0


@pytest.mark.parametrize("sigma", [10, 15, 25, 40])
def test_sigma_estimate_within_20_percent(sigma):
    for name in PHOTOS:
        noisy = with_gaussian_noise(photo(name), sigma, seed=5)
        assert denoise.estimate_sigma(noisy) == pytest.approx(sigma, rel=0.2), name


def test_sigma_estimate_low_on_clean_photos():
    for name in PHOTOS:
        assert denoise.estimate_sigma(photo(name)) < 3.0, name


def test_alpha_and_shape_kept():
    clean = photo("coffee")[:150, :170]
    alpha = np.linspace(0, 255, 150 * 170).reshape(150, 170).astype(np.uint8)
    out = run(with_gaussian_noise(clean, 15), "strong", alpha=alpha)
    assert out.bgr.shape == clean.shape and out.bgr.dtype == np.uint8
    assert out.bgr.flags["C_CONTIGUOUS"]
    assert out.alpha is alpha


@pytest.mark.parametrize("shape", [(1, 1, 3), (2, 7, 3), (9, 1, 3), (33, 517, 3)])
def test_odd_and_tiny_sizes(shape):
    rng = np.random.default_rng(0)
    bgr = rng.integers(0, 256, shape, dtype=np.uint8)
    assert run(bgr, "strong").bgr.shape == shape


def test_unknown_type_is_a_clear_error():
    with pytest.raises(InvalidConfig, match="weak, strong"):
        run(photo("coffee")[:64, :64], "medium")


def test_progress_reported_per_tile_up_to_one():
    seen: list[float] = []
    noisy = with_gaussian_noise(photo("astronaut"), 15)
    denoise.denoise(noisy, 15.0, StepContext(progress=seen.append), tile=256)
    assert len(seen) == 9  # 512 + 2 * 16 border pixels -> 3 x 3 tiles of 256
    assert seen == sorted(seen) and seen[-1] == 1.0


def test_deadline_stops_between_tiles():
    ctx = StepContext(deadline=time.monotonic() - 1.0)
    with pytest.raises(ProcessingTimeout):
        run(with_gaussian_noise(photo("coffee"), 15), "strong", ctx=ctx)


@pytest.mark.parametrize("name", PHOTOS)
def test_clean_photo_is_returned_untouched_without_running_the_network(name):
    clean = photo(name)
    # A deadline already passed: the network, which checks it before each tile, never ran.
    ctx = StepContext(deadline=time.monotonic() - 1.0)
    frame = Frame(bgr=clean)
    assert denoise.apply(frame, {"Switch": "ON", "Type": "weak"}, ctx) is frame


def test_skip_threshold_both_ways():
    clean = photo("chelsea")  # estimate 1.0
    slightly_noisy = with_gaussian_noise(clean, 4, seed=1)  # estimate 4.5: weak runs at 2.2
    assert denoise.estimate_sigma(clean) < denoise.SKIP_BELOW_SIGMA
    assert run(clean, "strong").bgr is clean
    out = run(slightly_noisy, "weak").bgr
    assert not np.array_equal(out, slightly_noisy)
    assert psnr(out, clean) > psnr(slightly_noisy, clean) + 0.5  # measured: +1.4 dB


@pytest.mark.parametrize("sigma", [0, 10, 25])
def test_sampled_estimate_on_a_large_image_matches_the_whole_image(sigma):
    big = cv2.resize(photo("coffee"), (1920, 1080), interpolation=cv2.INTER_CUBIC)
    image = big if sigma == 0 else with_gaussian_noise(big, sigma, seed=5)
    assert image.shape[0] * image.shape[1] > denoise.SAMPLE_FACTOR * denoise.SAMPLE_PIXELS  # sampled
    whole = denoise.estimate_sigma(image, sample_pixels=image.size)
    assert denoise.estimate_sigma(image) == pytest.approx(whole, rel=0.05, abs=0.3)  # measured: within 2.5 %


def camera_noisy(name: str, shot: float = 0.008, read: float = 0.01, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    clean = photo(name)[96:352, 96:352]  # 256x256
    return clean, with_camera_noise(clean, shot, read, seed=seed)


def test_noise_level_function_tells_camera_noise_from_white_noise():
    clean = photo("astronaut")
    a, b = denoise.noise_level_function(with_camera_noise(clean, 0.008, 0.01, seed=1))
    assert a > 1.0  # true a = 0.008 * 255 = 2.04 levels per level of brightness
    a_white, b_white = denoise.noise_level_function(with_gaussian_noise(clean, 15, seed=1))
    assert a_white < 0.3 * a and np.sqrt(b_white) == pytest.approx(15.0, rel=0.2)


def test_noise_map_follows_brightness_for_camera_noise():
    dark_to_bright = np.repeat(np.linspace(20, 235, 256).astype(np.uint8)[None, :, None], 3, axis=2)
    levels = denoise.noise_map(np.repeat(dark_to_bright, 64, axis=0), a=2.0, b=9.0)
    assert levels.shape == (64, 256) and levels.dtype == np.float32
    assert levels[32, 10] < levels[32, 128] < levels[32, 245]
    assert levels[32, 128] == pytest.approx(np.sqrt(2.0 * dark_to_bright[0, 128, 0] + 9.0), rel=0.05)


@pytest.mark.parametrize("name", HELD_OUT)
def test_camera_noise_strong_beats_weak_and_non_local_means(name):
    clean, noisy = camera_noisy(name)
    strong, weak = psnr(run(noisy, "strong").bgr, clean), psnr(run(noisy, "weak").bgr, clean)
    sigma = denoise.estimate_sigma(noisy)
    nlm = max(psnr(cv2.fastNlMeansDenoisingColored(noisy, None, f * sigma, f * sigma, 7, 21), clean) for f in (0.5, 0.8))
    assert weak > psnr(noisy, clean) + 1.5
    assert strong > weak + 0.5
    assert strong > nlm + 0.5


def test_strong_tiles_match_the_whole_image_and_repeat():
    _, noisy = camera_noisy("coffee")
    levels = denoise.NoiseLevels(*denoise.noise_level_function(noisy))
    whole = denoise.denoise(noisy, levels, StepContext(), tile=1024, nlm_h=8.0)
    tiled = denoise.denoise(noisy, levels, StepContext(), tile=128, nlm_h=8.0)
    assert np.abs(whole.astype(int) - tiled.astype(int)).max() <= 1
    assert np.mean(whole != tiled) < 0.001
    assert np.array_equal(run(noisy, "strong").bgr, run(noisy, "strong").bgr)


def test_noise_levels_of_a_window_equal_the_whole_map_there():
    _, noisy = camera_noisy("coffee")
    levels = denoise.NoiseLevels(*denoise.noise_level_function(noisy), scale=0.5)
    whole = denoise.noise_map(noisy, levels.a, levels.b) * np.float32(0.5)
    h, w = noisy.shape[:2]
    for rows, cols in [(slice(0, 40), slice(0, 50)), (slice(100, 300), slice(37, 211)), (slice(h - 9, h), slice(w - 70, w))]:
        assert np.allclose(levels.of(noisy, rows, cols), whole[rows, cols], rtol=0, atol=1e-5)


def test_overwriting_the_input_gives_the_same_pixels_as_a_new_output():
    """The pipeline lets Denoise write over its input (one frame fewer): the tiles must still read
    the input's pixels for their context, never a neighbour's result."""
    _, noisy = camera_noisy("coffee")
    levels = denoise.NoiseLevels(*denoise.noise_level_function(noisy))
    expected = denoise.denoise(noisy, levels, StepContext(), tile=128)
    own = noisy.copy()
    result = denoise.denoise(own, levels, StepContext(overwrite_input=True), tile=128)
    assert result is own and np.array_equal(result, expected)
    assert not np.array_equal(expected, noisy)
