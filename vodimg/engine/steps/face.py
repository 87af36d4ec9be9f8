"""FaceEnhance: restore each detected face and blend it back with a feathered elliptical mask.

No face-restoration weights can be shipped (see ENGINE-NOTES), so each face is restored on a
crop around it, from the noise level measured on the face itself (grey sigma):

1. rebuild (see ``rebuild``): a clean face is kept as it is (waifu2x x2 and back measured no
   better there, at five times the cost); a moderately noisy or JPEG-blocky face is
   super-resolved x2 with waifu2x's strongest (JPEG-trained) photo denoiser and area-averaged
   back; a heavily noisy
   face is denoised by the mean of non-local means and that denoiser on a half-size copy;
2. skin-aware smoothing: an edge-preserving (guided) filter applied only where the colour
   matches the face's own skin tone, with eyes, brows and mouth (from the landmarks) and strong
   edges excluded, so features and hair keep their detail;
3. feature detail and contrast: a two-scale unsharp mask on lightness, strong on features and
   weak on skin. Steps 2 and 3 are turned down on denoised faces.

The restored crop is blended back with an ellipse around the face, feathered to zero at its rim
and scaled by Intensity. Pixels outside every face's ellipse are left exactly as they were;
an image without faces, or Intensity 0, comes back unchanged.
"""

from __future__ import annotations

import cv2
import numpy as np

from vodimg.engine import ncnn_model
from vodimg.engine.faces import FaceBox, detect_faces
from vodimg.engine.frame import Frame, RowUpscaler, StepContext, strips_of

DEFAULT_INTENSITY = 0.0  # the spec's default: Switch ON without Intensity changes nothing

# Blend ellipse around the detector's box (which spans brows to chin): semi-axes as a fraction
# of the box, centre moved up to take in the forehead. Feathering covers the outer 35 % of the radius.
ELLIPSE_SCALE_X = 0.70
ELLIPSE_SCALE_Y = 0.78
ELLIPSE_SHIFT_UP = 0.08
FEATHER_FRACTION = 0.35
# Restoration sees this much context beyond the ellipse, so filters do not see the crop's edge.
CONTEXT_FRACTION = 0.15
# Faces are detected on a copy at most this large (detect_faces' default is 960): 2.4x faster
# at 1080p (25 ms instead of 60), and faces narrower than about 1/30 of the image's longer side
# (64 px at 1920), which restoration has little to work with, are not found.
DETECT_MAX_SIDE = 640
# Faces larger than this are restored on a downscaled copy; the change is scaled back up.
WORK_MAX_SIDE = 640

# Regimes by the face's measured (grey) noise sigma; textured clean skin reads ~2-3. Image
# sigma 10 reads ~7, 20 reads ~13 (the grey channel averages the colour channels' noise).
CLEAN_SIGMA = 3.5  # below: clean
MODERATE_SIGMA = 5.0  # above: moderate noise (between the two: mixed)
HEAVY_SIGMA = 12.0  # above: heavy noise
HEAVY_RAMP = 3.0  # moderate and heavy are mixed over this much sigma below HEAVY_SIGMA
BLOCKY = 1.1  # JPEG blockiness above which the face is treated as moderately noisy...
# ...if the grid's steps also exceed the others by this many levels. Measured on the astronaut's
# face crop (512 px, 1024 px, 1080p upscaled): 0.21-0.44 at quality 90, 0.52-0.70 at 85,
# 0.79-0.92 at 80, 1.7+ at 50.
BLOCK_STEP_EXCESS = 0.6
SR_MAX_INPUT = 256  # px: larger crops are super-resolved from a copy this size (time: ~0.5 s)
# JPEG blocking calls for waifu2x only on crops it sees at 3/4 scale or more (blocks still about
# 8 px wide): on larger crops, shrunk to SR_MAX_INPUT, it measured worse than no denoiser at all
# (1080p astronaut face, quality 50-90: -0.9 to -2.0 dB) and better only at quality 30 (+0.3).
JPEG_MAX_CROP = round(SR_MAX_INPUT / 0.75)
SR_REGION_MARGIN = 0.05  # of the face width, around the ellipse: more than the guided filter's radius
NLM_PER_SIGMA = 0.85  # non-local means strength per unit of measured noise sigma
FEATURE_DENOISE_SHARE = 0.6  # NLM strength on eyes and mouth relative to the rest of the face
GRAIN_KEPT = 0.05  # share of the removed noise put back, so a denoised face does not look waxy
SKIN_SMOOTHING = 0.4  # share of the guided-filtered skin kept on skin pixels
FINE_DETAIL_GAIN = 0.3  # unsharp amount on features (sigma 1 px)
COARSE_DETAIL_GAIN = 0.1  # unsharp amount on features (sigma ~ face width / 50)
SKIN_DETAIL_SHARE = 0.25  # share of the feature detail gain applied on skin
DENOISED_RESTRAINT = 0.6  # skin smoothing and detail gains are cut by this share on denoised faces


def apply(frame: Frame, options: dict, ctx: StepContext) -> Frame:
    intensity = float(options.get("Intensity", DEFAULT_INTENSITY))
    intensity = min(max(intensity, 0.0), 1.0)
    if intensity == 0.0:
        return frame
    faces = detect_faces(frame.bgr, max_side=DETECT_MAX_SIDE)
    if not faces:
        return frame
    out = frame.bgr if ctx.overwrite_input else frame.bgr.copy()
    for index, face in enumerate(faces):
        ctx.check_deadline()
        enhance_face(out, face, intensity)
        ctx.progress((index + 1) / len(faces))
    return Frame(bgr=out, alpha=frame.alpha)


def enhance_face(image: np.ndarray, face: FaceBox, intensity: float) -> None:
    """Restore one face of ``image`` in place, blended by ``intensity`` (0-1)."""
    height, width = image.shape[:2]
    cx, cy = face.center
    cy -= ELLIPSE_SHIFT_UP * face.h
    ax, ay = ELLIPSE_SCALE_X * face.w, ELLIPSE_SCALE_Y * face.h
    pad = CONTEXT_FRACTION * max(face.w, face.h)
    x0, x1 = max(0, int(cx - ax - pad)), min(width, int(np.ceil(cx + ax + pad)) + 1)
    y0, y1 = max(0, int(cy - ay - pad)), min(height, int(np.ceil(cy + ay + pad)) + 1)
    if x1 - x0 < 8 or y1 - y0 < 8:
        return
    crop = image[y0:y1, x0:x1]
    local_face = _shift_face(face, x0, y0)
    blocky = max(crop.shape[:2]) <= JPEG_MAX_CROP and is_blocky(crop, x0 % 8, y0 % 8)
    change = _change_at_work_size(crop, local_face, blocky)
    mask = _ellipse_mask(crop.shape[:2], (cx - x0, cy - y0), (ax, ay))
    mask *= intensity
    for _, rows, _ in strips_of(crop):  # crop + change * mask, a strip at a time (bounded memory)
        blended = change(rows)
        blended *= mask[rows, :, None]
        blended += crop[rows]
        crop[rows] = np.clip(np.rint(blended, out=blended), 0, 255, out=blended)


def _change_at_work_size(crop: np.ndarray, face: FaceBox, blocky: bool):
    """``change(rows)``: the restoration's change to those rows of the crop, float32 (a fresh
    array); large faces are processed smaller and the change enlarged a strip at a time."""
    height, width = crop.shape[:2]
    scale = min(1.0, WORK_MAX_SIDE / max(height, width))
    if scale == 1.0:
        change = restore_face_crop(crop, face, blocky)
        change -= crop
        return lambda rows: change[rows]
    size = (max(8, round(width * scale)), max(8, round(height * scale)))
    small = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
    change = restore_face_crop(small, _scale_face(face, size[0] / width, size[1] / height), blocky)
    change -= small.astype(np.float32)
    return RowUpscaler(change, width, height).rows


def restore_face_crop(crop: np.ndarray, face: FaceBox, blocky: bool) -> np.ndarray:
    """Rebuild, skin-aware smoothing and feature detail on a face crop; float32 BGR out."""
    sigma = estimate_noise_sigma(crop)
    denoised = np.clip(np.rint(rebuild(crop, sigma, blocky, face)), 0, 255).astype(np.uint8)
    skin = skin_weight(denoised, face)
    # A denoised face is smooth already (more smoothing looks waxy), and sharpening brings back
    # the noise left in it: both are turned down in proportion.
    restraint = 1.0 - DENOISED_RESTRAINT * denoised_share(sigma, blocky)
    smoothed = _smooth_skin(denoised, skin * SKIN_SMOOTHING * restraint, face)
    return _boost_features(smoothed, skin, face, restraint)


def estimate_noise_sigma(bgr: np.ndarray) -> float:
    """Gaussian noise sigma of an image (Immerkaer 1996: a Laplacian-difference operator that
    cancels smooth structure); textured content reads as a little noise."""
    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY).astype(np.float32)
    kernel = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
    response = np.abs(cv2.filter2D(grey, -1, kernel, borderType=cv2.BORDER_REFLECT))[1:-1, 1:-1]
    # the median of |response| is robust to edges; for Gaussian noise, median|N(0, 6 sigma)| = 0.6745 * 6 sigma
    return float(np.median(response) / (0.6745 * 6.0))


def rebuild(crop: np.ndarray, sigma: float, blocky: bool, face: FaceBox) -> np.ndarray:
    """The face rebuilt by the regime its measured noise calls for, mixed linearly between regimes:

    - clean (sigma < CLEAN_SIGMA): the crop itself. waifu2x x2 without denoise, area-averaged
      back, measured no better (face PSNR against the clean photo: 38.30 dB either way on the
      clean astronaut, 30.97 against 31.05 on a softened one, 44.30 against 45.68 on a softened
      1024 px one) at 5x the cost of the whole face (182 ms against 32 at 512 px);
    - moderate noise or JPEG blocking: waifu2x x2 with its strongest (JPEG-trained) denoiser at
      full size, area-averaged back (best measured up to sigma ~10 and for JPEG quality <= 75);
    - heavy noise (sigma > HEAVY_SIGMA): mean of non-local means and the waifu2x denoiser on a
      half-size copy, where the noise is halved (best measured from sigma ~20).
    """
    clean_share = 0.0 if blocky else _ramp(sigma, MODERATE_SIGMA, CLEAN_SIGMA)
    heavy_share = _ramp(sigma, HEAVY_SIGMA - HEAVY_RAMP, HEAVY_SIGMA)
    moderate_share = 1.0 - clean_share - heavy_share
    result = np.zeros(crop.shape, np.float32)
    if clean_share > 0.0:
        result += clean_share * crop.astype(np.float32)
    if moderate_share > 0.0:
        result += moderate_share * _with_grain(crop, _super_resolved(crop, 3, face))
    if heavy_share > 0.0:
        result += heavy_share * _with_grain(crop, _heavy_denoise(crop, sigma, face))
    return result


def denoised_share(sigma: float, blocky: bool) -> float:
    """How much of the rebuilt face comes from a denoiser (0 for a clean face)."""
    return 1.0 if blocky else 1.0 - _ramp(sigma, MODERATE_SIGMA, CLEAN_SIGMA)


def _ramp(value: float, zero_at: float, one_at: float) -> float:
    return float(np.clip((value - zero_at) / (one_at - zero_at), 0.0, 1.0))


def _super_resolved(crop: np.ndarray, noise_level: int | None, face: FaceBox) -> np.ndarray:
    """waifu2x photo x2 of the crop (or of a copy at most SR_MAX_INPUT px), brought back to the
    crop's size; a large crop's own detail above the model's input resolution is kept.

    Only the blend ellipse's bounding box (plus a margin wider than the skin filter's reach) is
    run, at the scale the whole crop would get: the rest of the crop only gives the later
    filters context and is blended with weight 0. That is 0.68 of the crop's area."""
    height, width = crop.shape[:2]
    scale = min(1.0, SR_MAX_INPUT / max(height, width))
    y0, y1, x0, x1 = _ellipse_bounds(face, (height, width), margin=max(8.0, SR_REGION_MARGIN * face.w))
    region = crop[y0:y1, x0:x1]
    result = crop.astype(np.float32)
    result[y0:y1, x0:x1] = _super_resolved_at(region, noise_level, scale)
    return result


def _super_resolved_at(crop: np.ndarray, noise_level: int | None, scale: float) -> np.ndarray:
    height, width = crop.shape[:2]
    size = (max(8, round(width * scale)), max(8, round(height * scale)))
    work = crop if scale == 1.0 else cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
    result = _resized(_waifu2x(work, noise_level), width, height)
    if work is not crop:
        result += crop.astype(np.float32) - _resized(work, width, height)
    return result


def _ellipse_bounds(face: FaceBox, shape: tuple[int, int], margin: float) -> tuple[int, int, int, int]:
    """Rows y0:y1 and columns x0:x1 of the blend ellipse's bounding box grown by ``margin``."""
    cx, cy = face.center
    cy -= ELLIPSE_SHIFT_UP * face.h
    ax, ay = ELLIPSE_SCALE_X * face.w + margin, ELLIPSE_SCALE_Y * face.h + margin
    y0, y1 = max(0, int(cy - ay)), min(shape[0], int(np.ceil(cy + ay)) + 1)
    x0, x1 = max(0, int(cx - ax)), min(shape[1], int(np.ceil(cx + ax)) + 1)
    return y0, y1, x0, x1


def _heavy_denoise(crop: np.ndarray, sigma: float, face: FaceBox) -> np.ndarray:
    """The mean of two denoisers whose errors differ (+0.5 to +2 dB over either alone):
    non-local means, gentler on eyes and mouth where teeth and lashes are lost first, and
    waifu2x's strongest photo denoiser run on a half-size copy."""
    strength = float(np.clip(NLM_PER_SIGMA * sigma, 2.0, 30.0))
    smooth = cv2.fastNlMeansDenoisingColored(crop, None, strength, strength, 5, 15).astype(np.float32)
    gentle_strength = max(2.0, FEATURE_DENOISE_SHARE * strength)
    gentle = cv2.fastNlMeansDenoisingColored(crop, None, gentle_strength, gentle_strength, 5, 15)
    features = _feature_mask(crop.shape[:2], face)[..., None]
    nlm = smooth + (gentle.astype(np.float32) - smooth) * features
    height, width = crop.shape[:2]
    scale = min(0.5, SR_MAX_INPUT / max(height, width))
    half = cv2.resize(crop, (max(8, round(width * scale)), max(8, round(height * scale))), interpolation=cv2.INTER_AREA)
    return (nlm + _resized(_waifu2x(half, 3), width, height)) / 2.0


def _with_grain(crop: np.ndarray, denoised: np.ndarray) -> np.ndarray:
    """Put back a little of the removed noise, so a denoised face does not look waxy."""
    return denoised + GRAIN_KEPT * (crop.astype(np.float32) - denoised)


def is_blocky(bgr: np.ndarray, x_offset: int, y_offset: int) -> bool:
    """Visible JPEG blocking: steps across the 8x8 grid stand out both relatively (BLOCKY) and by
    at least BLOCK_STEP_EXCESS levels, so smooth content (whose small steps make any ratio
    large) at quality 90 does not count."""
    steps = _grid_steps(bgr, x_offset, y_offset)
    return _blockiness(steps) > BLOCKY and _block_step_excess(steps) > BLOCK_STEP_EXCESS


def jpeg_blockiness(bgr: np.ndarray, x_offset: int, y_offset: int) -> float:
    """Mean step across the 8x8 JPEG grid relative to the mean step elsewhere (1.0: none).
    ``x_offset``/``y_offset``: where the crop starts in the decoded image, to align the grid.
    Measured on the astronaut's face: 1.0 clean or noisy, 1.15 at quality 75, 1.65 at 20."""
    return _blockiness(_grid_steps(bgr, x_offset, y_offset))


def jpeg_block_step_excess(bgr: np.ndarray, x_offset: int, y_offset: int) -> float:
    """Mean step across the 8x8 JPEG grid minus the mean step elsewhere, in levels (0: none)."""
    return _block_step_excess(_grid_steps(bgr, x_offset, y_offset))


def _blockiness(steps: list[tuple[float, float]]) -> float:
    return float(np.mean([on / max(off, 1e-6) for on, off in steps]))


def _block_step_excess(steps: list[tuple[float, float]]) -> float:
    return float(np.mean([on - off for on, off in steps]))


def _grid_steps(bgr: np.ndarray, x_offset: int, y_offset: int) -> list[tuple[float, float]]:
    """(mean step across the 8x8 grid, mean step elsewhere), horizontally and vertically."""
    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    result = []
    # 8-bit absolute steps summed per column (or row): no float copies of a large crop
    for steps, axis, offset in ((cv2.absdiff(grey[:, 1:], grey[:, :-1]), 0, x_offset),
                                (cv2.absdiff(grey[1:], grey[:-1]), 1, y_offset)):
        sums = steps.sum(axis=axis, dtype=np.int64)
        on_grid = (np.arange(sums.size) + offset) % 8 == 7
        if not on_grid.any() or on_grid.all():
            result.append((1.0, 1.0))
        else:
            per_line = steps.shape[axis]
            result.append((float(sums[on_grid].sum() / (per_line * on_grid.sum())),
                           float(sums[~on_grid].sum() / (per_line * (~on_grid).sum()))))
    return result


def _waifu2x(bgr: np.ndarray, noise_level: int | None) -> np.ndarray:
    model = ncnn_model.load_model(ncnn_model.waifu2x_photo(noise_level))
    return ncnn_model.run_tiled(model, bgr)


def _resized(bgr: np.ndarray, width: int, height: int) -> np.ndarray:
    shrinking = bgr.shape[1] > width
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC
    return cv2.resize(bgr, (width, height), interpolation=interpolation).astype(np.float32)


def skin_weight(bgr: np.ndarray, face: FaceBox) -> np.ndarray:
    """0-1 weight of smoothable skin: the face's own skin colour, minus features and strong edges."""
    ycrcb = cv2.cvtColor(bgr, cv2.COLOR_BGR2YCrCb).astype(np.float32)
    reference = _cheek_colour(ycrcb, face)
    distance2 = ((ycrcb[..., 1:] - reference) ** 2).sum(axis=-1)
    colour_match = np.exp(-distance2 / (2.0 * 7.0**2))
    features = _feature_mask(bgr.shape[:2], face)
    grey = ycrcb[..., 0]
    edge_scale = max(1.0, face.w / 100.0)
    gradient = cv2.magnitude(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1)) / 8.0
    gradient = cv2.GaussianBlur(gradient, (0, 0), edge_scale)
    flatness = np.clip(1.0 - (gradient - 6.0) / 10.0, 0.0, 1.0)
    weight = colour_match * (1.0 - features) * flatness
    return cv2.GaussianBlur(weight, (0, 0), edge_scale)


def _cheek_colour(ycrcb: np.ndarray, face: FaceBox) -> np.ndarray:
    """Median Cr, Cb between the eyes' and mouth's heights, inside the mouth corners' span."""
    (rex, rey), (lex, ley), _, (rmx, rmy), (lmx, lmy) = face.landmarks
    top, bottom = int((rey + ley) / 2 + 0.1 * face.h), int((rmy + lmy) / 2 - 0.05 * face.h)
    left, right = int(min(rex, rmx)), int(max(lex, lmx))
    patch = ycrcb[max(0, top) : max(top + 2, bottom), max(0, left) : max(left + 2, right), 1:]
    if patch.size == 0:
        patch = ycrcb[..., 1:]
    return np.median(patch.reshape(-1, 2), axis=0)


def _feature_mask(shape: tuple[int, int], face: FaceBox) -> np.ndarray:
    """Soft mask of eyes (with brows) and mouth, drawn from the landmarks."""
    mask = np.zeros(shape, np.float32)
    (rex, rey), (lex, ley), _, (rmx, rmy), (lmx, lmy) = face.landmarks
    eye_axes = (max(2, int(0.17 * face.w)), max(2, int(0.15 * face.h)))
    for ex, ey in ((rex, rey), (lex, ley)):
        cv2.ellipse(mask, (int(ex), int(ey - 0.04 * face.h)), eye_axes, 0, 0, 360, 1.0, -1)
    mouth_centre = (int((rmx + lmx) / 2), int((rmy + lmy) / 2))
    mouth_axes = (max(2, int(abs(lmx - rmx) / 2 + 0.06 * face.w)), max(2, int(0.09 * face.h)))
    cv2.ellipse(mask, mouth_centre, mouth_axes, 0, 0, 360, 1.0, -1)
    return cv2.GaussianBlur(mask, (0, 0), max(1.0, face.w / 40.0))


def _smooth_skin(bgr: np.ndarray, skin: np.ndarray, face: FaceBox) -> np.ndarray:
    image = bgr.astype(np.float32) / 255.0
    radius = max(2, round(face.w / 25.0))
    smooth = guided_filter(image, image, radius, 0.02**2)
    share = skin[..., None]
    return (image + (smooth - image) * share) * 255.0


def _boost_features(bgr: np.ndarray, skin: np.ndarray, face: FaceBox, strength: float) -> np.ndarray:
    """Two-scale unsharp mask on lightness only (no colour fringes), gains times ``strength``."""
    lab = cv2.cvtColor(np.clip(bgr / 255.0, 0.0, 1.0).astype(np.float32), cv2.COLOR_BGR2Lab)
    lightness = lab[..., 0]
    gain = strength * (1.0 - (1.0 - SKIN_DETAIL_SHARE) * skin)
    fine = lightness - cv2.GaussianBlur(lightness, (0, 0), 1.0)
    coarse = lightness - cv2.GaussianBlur(lightness, (0, 0), max(1.5, face.w / 50.0))
    lab[..., 0] = np.clip(lightness + gain * (FINE_DETAIL_GAIN * fine + COARSE_DETAIL_GAIN * coarse), 0.0, 100.0)
    return cv2.cvtColor(lab, cv2.COLOR_Lab2BGR) * 255.0


def guided_filter(guide: np.ndarray, source: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """He et al.'s guided filter with a per-channel guide (float32 in 0-1, same shape)."""
    size = (2 * radius + 1, 2 * radius + 1)

    def mean(x: np.ndarray) -> np.ndarray:
        return cv2.boxFilter(x, -1, size, borderType=cv2.BORDER_REFLECT)

    mean_guide, mean_source = mean(guide), mean(source)
    variance = mean(guide * guide) - mean_guide * mean_guide
    covariance = mean(guide * source) - mean_guide * mean_source
    a = covariance / (variance + eps)
    b = mean_source - a * mean_guide
    return mean(a) * guide + mean(b)


def _ellipse_mask(shape: tuple[int, int], centre: tuple[float, float], axes: tuple[float, float]) -> np.ndarray:
    """1 inside, smooth (cosine) fall to exactly 0 at the ellipse's rim and beyond."""
    ys = np.arange(shape[0], dtype=np.float32)[:, None]  # broadcast: no full-size coordinate grids
    xs = np.arange(shape[1], dtype=np.float32)[None, :]
    radius = np.sqrt(((xs - centre[0]) / axes[0]) ** 2 + ((ys - centre[1]) / axes[1]) ** 2)
    t = np.clip((1.0 - radius) / FEATHER_FRACTION, 0.0, 1.0)
    return (0.5 - 0.5 * np.cos(np.pi * t)).astype(np.float32)


def _shift_face(face: FaceBox, dx: int, dy: int) -> FaceBox:
    return FaceBox(
        x=face.x - dx,
        y=face.y - dy,
        w=face.w,
        h=face.h,
        score=face.score,
        landmarks=tuple((x - dx, y - dy) for x, y in face.landmarks),
    )


def _scale_face(face: FaceBox, sx: float, sy: float) -> FaceBox:
    return FaceBox(
        x=round(face.x * sx),
        y=round(face.y * sy),
        w=max(1, round(face.w * sx)),
        h=max(1, round(face.h * sy)),
        score=face.score,
        landmarks=tuple((round(x * sx), round(y * sy)) for x, y in face.landmarks),
    )
