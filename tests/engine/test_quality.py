"""ImageQualityEnhance: JPEG artefacts fall, structure similarity and local contrast rise."""

import dataclasses

import cv2
import numpy as np
import pytest
from skimage.metrics import structural_similarity

from tests.engine.images import photo, psnr
from vodimg.engine.errors import InvalidConfig
from vodimg.engine.frame import Frame, StepContext
from vodimg.engine.steps import quality


def jpeg(bgr, q):
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, q])
    assert ok
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)


def run(bgr, type_=None):
    options = {"Switch": "ON"} if type_ is None else {"Switch": "ON", "Type": type_}
    return quality.apply(Frame(bgr=bgr), options, StepContext()).bgr


def gray(bgr):
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)


def ssim(a, b):
    return structural_similarity(gray(a), gray(b))


def local_contrast(bgr):
    """Mean standard deviation of luma in 33x33 windows, after a blur that hides 8x8 block edges
    (removing block artefacts must not count as losing contrast)."""
    y = cv2.GaussianBlur(gray(bgr).astype(np.float32), (0, 0), 2.0)
    mean = cv2.blur(y, (33, 33))
    return float(np.sqrt(np.maximum(cv2.blur(y * y, (33, 33)) - mean * mean, 0)).mean())


def test_blockiness_measure_tracks_compression():
    src = photo("astronaut")
    measures = [quality.blockiness(gray(jpeg(src, q))) for q in (10, 50, 90)]
    assert measures[0] > measures[1] > measures[2]
    assert measures[0] > 1.7 and abs(quality.blockiness(gray(src)) - 1.0) < 0.1


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea"])
@pytest.mark.parametrize("q", [10, 15, 20])
@pytest.mark.parametrize("type_", ["weak", "normal"])
def test_heavy_jpeg_gets_closer_to_the_original(name, q, type_):
    src = photo(name)
    compressed = jpeg(src, q)
    out = run(compressed, type_)
    assert ssim(out, src) > ssim(compressed, src) + 0.002
    assert quality.blockiness(gray(out)) < 0.85 * quality.blockiness(gray(compressed))
    assert local_contrast(out) > local_contrast(compressed) + 0.3


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea"])
def test_artefact_removal_alone_raises_psnr(name):
    src = photo(name)
    compressed = jpeg(src, 12)
    removal_only = dataclasses.replace(quality.STRENGTHS["normal"], clahe_share=0.0, detail=0.0)
    cleaned = quality.enhance(compressed, removal_only)
    assert psnr(cleaned, src) > psnr(compressed, src) + 0.3
    assert ssim(cleaned, src) > ssim(compressed, src) + 0.015


def test_strength_orders_the_effect():
    compressed = jpeg(photo("chelsea"), 15)
    contrasts = [local_contrast(run(compressed, t)) for t in ("weak", "normal")]
    blockiness = [quality.blockiness(gray(run(compressed, t))) for t in ("weak", "normal", "strong")]
    assert contrasts[0] < contrasts[1]
    assert blockiness[0] > blockiness[1] > blockiness[2]
    clean = photo("coffee")  # no block grid: strong is the crispest, most contrasted
    assert local_contrast(run(clean, "normal")) < local_contrast(run(clean, "strong"))


@pytest.mark.parametrize("q", [30, 50])
def test_strong_removes_jpeg_artefacts_best(q):
    """strong's learned removal: a clear PSNR gain over the decoded JPEG, more than weak's."""
    src = photo("astronaut")[160:288, 160:288]  # the face and some suit: 128x128
    compressed = jpeg(src, q)
    assert quality.learned_share(gray(compressed)) == 1.0
    strong, weak = run(compressed, "strong"), run(compressed, "weak")
    assert psnr(strong, src) > psnr(compressed, src) + 0.8
    assert psnr(strong, src) > psnr(weak, src) + 0.5
    assert quality.blockiness(gray(strong)) < quality.blockiness(gray(compressed))


def test_strong_learned_removal_is_off_for_clean_images_and_repeatable():
    src = photo("chelsea")[:96, :96]
    assert quality.learned_share(gray(src)) == 0.0
    compressed = jpeg(src, 30)
    assert np.array_equal(run(compressed, "strong"), run(compressed, "strong"))


def test_clean_image_is_not_smoothed():
    src = photo("coffee")
    assert quality.artefact_level(gray(src)) == 0.0
    out = run(src, "weak")
    assert local_contrast(out) > local_contrast(src)
    laplacian = lambda bgr: cv2.Laplacian(gray(bgr), cv2.CV_64F).var()
    assert laplacian(out) >= 0.95 * laplacian(src)


def test_default_is_weak_and_tiny_images_work():
    src = jpeg(photo("astronaut"), 20)
    assert np.array_equal(run(src), run(src, "weak"))
    for shape in [(1, 1, 3), (7, 9, 3), (16, 17, 3)]:
        tiny = np.full(shape, 90, np.uint8)
        assert run(tiny, "strong").shape == shape


def test_unknown_type_is_a_clear_error():
    with pytest.raises(InvalidConfig) as error:
        quality.apply(Frame(bgr=photo("chelsea")), {"Switch": "ON", "Type": "vivid"}, StepContext())
    assert str(error.value) == "ImageQualityEnhance.Type must be weak, normal or strong, not 'vivid'"


def test_learned_removal_in_bands_matches_one_band():
    """Bands join without seams: at most a level's rounding apart (as waifu2x's own tiles)."""
    compressed = jpeg(photo("coffee")[:150, :120], 30)
    whole = quality.learned_artefact_removal(compressed, StepContext(), band_rows=1000)
    banded = quality.learned_artefact_removal(compressed, StepContext(), band_rows=40)
    assert np.abs(whole.astype(int) - banded).max() <= 1
    assert np.mean(whole != banded) < 0.002
