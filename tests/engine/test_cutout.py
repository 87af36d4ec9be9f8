"""AiCutOut: foreground (U2-Net-p) and pattern extraction against known masks."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage import data

from tests.engine.images import photo, with_gaussian_noise
from vodimg.engine.errors import InvalidConfig
from vodimg.engine.frame import Frame, StepContext
from vodimg.engine.steps import cutout

PATTERN_BACKGROUND = (235, 240, 245)


def object_on_background(
    texture: str = "chelsea", scale: float = 1.0, background=(200, 190, 180), noise: float = 6.0
) -> tuple[np.ndarray, np.ndarray]:
    """A horse silhouette (scikit-image) filled with a real photo, on a flat noisy background.

    Returns the BGR image and the true alpha (0-1 float32, soft at the outline)."""
    horse = (~data.horse()).astype(np.float32)
    height, width = int(horse.shape[0] * scale), int(horse.shape[1] * scale)
    alpha = np.clip(cv2.resize(cv2.GaussianBlur(horse, (0, 0), 0.7), (width, height)), 0.0, 1.0)
    fill = cv2.resize(photo(texture), (width, height), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    ground = with_gaussian_noise(np.full((height, width, 3), background, np.uint8), noise).astype(np.float32)
    image = fill * alpha[..., None] + ground * (1.0 - alpha[..., None])
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), alpha


def small_object_in_large_frame() -> tuple[np.ndarray, np.ndarray]:
    """The horse of chelsea at 0.8x in a 1400x1000 noisy flat frame (about 9 % of the area)."""
    obj, alpha = object_on_background("chelsea", scale=0.8)
    image = with_gaussian_noise(np.full((1000, 1400, 3), (200, 190, 180), np.uint8), 6.0)
    truth = np.zeros(image.shape[:2], np.float32)
    top, left = 500, 300
    height, width = alpha.shape
    region = image[top : top + height, left : left + width].astype(np.float32)
    image[top : top + height, left : left + width] = np.rint(obj * alpha[..., None] + region * (1.0 - alpha[..., None]))
    truth[top : top + height, left : left + width] = alpha
    return image, truth


def printed_pattern(height: int = 240, width: int = 320, noise: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """Shapes and text in four colours, anti-aliased (drawn at 4x, area-downscaled), on a plain
    light background with sensor noise. Returns BGR and the true alpha (0-1)."""
    s = 4
    mask = np.zeros((height * s, width * s), np.uint8)
    colour = np.zeros((height * s, width * s, 3), np.uint8)
    for target, value in ((mask, 255), (colour, (30, 40, 200))):
        cv2.circle(target, (80 * s, 90 * s), 50 * s, value, -1)
    quad = np.array([[200, 40], [290, 70], [260, 180], [170, 150]]) * s
    for target, value in ((mask, 255), (colour, (160, 60, 20))):
        cv2.fillPoly(target, [quad], value)
    for target, value in ((mask, 255), (colour, (20, 20, 20))):
        cv2.rectangle(target, (40 * s, 170 * s), (150 * s, 200 * s), value, -1)
    for target, value in ((mask, 255), (colour, (0, 140, 0))):
        cv2.putText(target, "VOD", (170 * s, 225 * s), cv2.FONT_HERSHEY_SIMPLEX, 1.2 * s, value, 3 * s)
    alpha = cv2.resize(mask, (width, height), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    premultiplied = cv2.resize(colour, (width, height), interpolation=cv2.INTER_AREA).astype(np.float32)
    image = premultiplied + np.array(PATTERN_BACKGROUND, np.float32) * (1.0 - alpha[..., None])
    return with_gaussian_noise(np.clip(np.rint(image), 0, 255).astype(np.uint8), noise), alpha


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def cut(bgr: np.ndarray, options: dict, alpha: np.ndarray | None = None) -> Frame:
    return cutout.apply(Frame(bgr=bgr, alpha=alpha), {"Switch": "ON", **options}, StepContext())


# --- foreground ----------------------------------------------------------------------------------


@pytest.mark.parametrize("model", [None, "cutout-1.0-lite", "cutout-1.0-flash"])
def test_foreground_alpha_matches_the_known_object(model):
    image, truth = object_on_background("chelsea")
    options = {"Type": "foreground"} if model is None else {"Type": "foreground", "Model": model}
    frame = cut(image, options)
    assert frame.alpha is not None and frame.alpha.dtype == np.uint8 and frame.alpha.shape == truth.shape
    assert iou(frame.alpha >= 128, truth >= 0.5) > 0.8
    assert np.array_equal(frame.bgr, image)  # foreground cut-out only sets alpha


def test_foreground_on_another_object_and_background():
    image, truth = object_on_background("coffee", background=(90, 140, 60), noise=12.0)
    assert iou(cut(image, {}).alpha >= 128, truth >= 0.5) > 0.8  # Type defaults to foreground


def test_flash_follows_the_outline_at_least_as_well_as_lite_on_a_large_image():
    image, truth = object_on_background("chelsea", scale=2.5)
    lite = cut(image, {"Model": "cutout-1.0-lite"}).alpha / 255.0
    flash = cut(image, {"Model": "cutout-1.0-flash"}).alpha / 255.0
    assert iou(flash >= 0.5, truth >= 0.5) >= iou(lite >= 0.5, truth >= 0.5)
    assert iou(flash >= 0.5, truth >= 0.5) > 0.95


def test_flash_zooms_in_on_a_small_object():
    image, truth = small_object_in_large_frame()
    lite = cut(image, {"Model": "cutout-1.0-lite"}).alpha
    flash = cut(image, {"Model": "cutout-1.0-flash"}).alpha
    assert iou(flash >= 128, truth >= 0.5) > iou(lite >= 128, truth >= 0.5) + 0.01
    assert iou(flash >= 128, truth >= 0.5) > 0.97


def test_foreground_is_deterministic_and_multiplies_an_existing_alpha():
    image, _ = object_on_background("chelsea")
    first = cut(image, {"Model": "cutout-1.0-flash"})
    assert np.array_equal(first.alpha, cut(image, {"Model": "cutout-1.0-flash"}).alpha)
    half = np.full(image.shape[:2], 128, np.uint8)
    combined = cut(image, {"Model": "cutout-1.0-flash"}, alpha=half).alpha
    expected = np.rint(first.alpha.astype(np.float32) * 128 / 255)
    assert np.abs(combined.astype(np.float32) - expected).max() <= 1


def test_unknown_model_and_type_are_clear_errors():
    image, _ = object_on_background("chelsea", scale=0.5)
    with pytest.raises(InvalidConfig, match="Model 'cutout-9'.*cutout-1.0-lite"):
        cut(image, {"Model": "cutout-9"})
    with pytest.raises(InvalidConfig, match="Type 'people'.*foreground, pattern"):
        cut(image, {"Type": "people"})


# --- pattern -------------------------------------------------------------------------------------


def pattern(image: np.ndarray, **config) -> Frame:
    return cut(image, {"Type": "pattern", "PatternConfig": config})


def distance_to_outline(truth: np.ndarray) -> np.ndarray:
    inside = (truth >= 0.5).astype(np.uint8)
    return np.minimum(
        cv2.distanceTransform(inside, cv2.DIST_L2, 3), cv2.distanceTransform(1 - inside, cv2.DIST_L2, 3)
    )


def test_pattern_alpha_matches_the_printed_shapes_with_defaults():
    image, truth = printed_pattern()
    frame = cut(image, {"Type": "pattern"})
    assert frame.alpha is not None and frame.alpha.shape == truth.shape
    assert iou(frame.alpha >= 128, truth >= 0.5) > 0.9


@pytest.mark.parametrize("expansion", [1, 3, 5, 8])
def test_alpha_is_binary_outside_the_soft_band_around_the_outline(expansion):
    image, truth = printed_pattern()
    alpha = pattern(image, EdgeExpansionStep=expansion).alpha
    soft = (alpha > 0) & (alpha < 255)
    assert soft.any()
    assert distance_to_outline(truth)[soft].max() <= expansion + 1.5


def test_soft_band_widens_with_edge_expansion_step():
    image, _ = printed_pattern()
    counts = [int(((a > 0) & (a < 255)).sum()) for a in (pattern(image, EdgeExpansionStep=e).alpha for e in (1, 3, 6, 10))]
    assert counts == sorted(counts) and counts[-1] > 3 * counts[0]


def test_no_expansion_or_no_blending_keeps_a_sharp_matte():
    image, truth = printed_pattern()
    for config in ({"EdgeExpansionStep": 0}, {"EdgeBlendingIntensity": 0.0}):
        alpha = pattern(image, **config).alpha
        soft = (alpha > 0) & (alpha < 255)
        assert soft.mean() < 0.02  # only the anti-aliased outline pixels
        assert distance_to_outline(truth)[soft].max() <= 1.5


def test_thresholds_are_honoured():
    image, truth = printed_pattern()
    # The widest soft range keeps the sampled matte: it reproduces the anti-aliased edge.
    alpha = pattern(image, TransparencyThreshold=0, OpaqueThreshold=255, EdgeBlendingIntensity=0.0).alpha / 255.0
    outline = (truth > 0.05) & (truth < 0.95)
    assert np.abs(alpha - truth)[outline].mean() < 0.06
    # A one-step soft range makes the matte binary.
    binary = pattern(image, TransparencyThreshold=127, OpaqueThreshold=128, EdgeBlendingIntensity=0.0).alpha
    assert ((binary > 0) & (binary < 255)).sum() <= 0.01 * outline.sum()
    # A higher TransparencyThreshold makes more edge pixels fully transparent.
    opaque_counts = [
        int((pattern(image, TransparencyThreshold=t, OpaqueThreshold=200, EdgeBlendingIntensity=0.0).alpha > 0).sum())
        for t in (10, 100, 190)
    ]
    assert opaque_counts[0] > opaque_counts[1] > opaque_counts[2]


def test_soft_edge_takes_the_pattern_colour_not_the_background():
    image, truth = printed_pattern()
    frame = pattern(image, EdgeExpansionStep=6)
    soft = (frame.alpha > 0) & (frame.alpha < 255) & (truth < 0.5)  # the expanded halo
    assert soft.sum() > 100
    background = np.array(PATTERN_BACKGROUND, np.float32)
    halo_distance = np.linalg.norm(frame.bgr[soft].astype(np.float32) - background, axis=-1)
    assert np.median(halo_distance) > 100  # the background's light grey would be ~0


def test_strips_give_the_same_result_as_one_block(monkeypatch):
    image, _ = printed_pattern(300, 400)
    whole = cutout.extract_pattern(image, cutout.PatternOptions(edge_expansion_step=8))
    coarse = cv2.resize(cutout.saliency_map(image), (400, 300))
    refined = cutout.refine_edges(image, coarse)
    monkeypatch.setattr(cutout, "STRIP_ROWS", 23)  # many strips, each much thinner than the halo
    in_strips = cutout.extract_pattern(image, cutout.PatternOptions(edge_expansion_step=8))
    assert np.array_equal(whole[0], in_strips[0]) and np.array_equal(whole[1], in_strips[1])
    assert np.array_equal(refined, cutout.refine_edges(image, coarse))


def test_plain_image_has_no_pattern():
    plain = with_gaussian_noise(np.full((120, 160, 3), PATTERN_BACKGROUND, np.uint8), 3.0)
    assert not cut(plain, {"Type": "pattern"}).alpha.any()


@pytest.mark.parametrize("shape", [(1, 1, 3), (2, 5, 3), (40, 1, 3)])
@pytest.mark.parametrize("options", [{}, {"Model": "cutout-1.0-flash"}, {"Type": "pattern"}])
def test_tiny_images_get_an_alpha_of_their_size(shape, options):
    image = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    assert cut(image, options).alpha.shape == shape[:2]


def test_pattern_is_deterministic():
    image, _ = printed_pattern()
    first, second = pattern(image), pattern(image)
    assert np.array_equal(first.alpha, second.alpha) and np.array_equal(first.bgr, second.bgr)


@pytest.mark.parametrize(
    "config, message",
    [
        ({"TransparencyThreshold": 100, "OpaqueThreshold": 100}, "OpaqueThreshold must be greater"),
        ({"EdgeSamplingStep": 0}, "EdgeSamplingStep must be between 1 and 10"),
        ({"EdgeBlendingIntensity": 1.5}, "EdgeBlendingIntensity must be between"),
        ({"EdgeExpansionStep": -1}, "EdgeExpansionStep must be between"),
    ],
)
def test_invalid_pattern_config_is_a_clear_error(config, message):
    image, _ = printed_pattern(64, 64)
    with pytest.raises(InvalidConfig, match=message):
        pattern(image, **config)
