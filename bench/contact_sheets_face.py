"""Contact sheets and measurements for FaceEnhance and AiCutOut.

    python -m bench.contact_sheets_face --out bench/out

Writes before/after PNGs (face enhance on a noisy, a soft and a multi-face image; cut-out alpha
shown over a checkerboard) and prints a table of measured effect and speed, each against a
baseline measured in the same run:

- face enhance: PSNR of the face box against the clean photo, input (baseline) vs enhanced;
- foreground: IoU and outline error against the known mask, a classical baseline (distance to
  the border colour, Otsu threshold) vs the lite and flash models;
- pattern: outline alpha error against the true anti-aliased alpha, a baseline (distance to the
  background colour divided by the pattern's typical distance) vs the sampled matte.

Everything runs on one thread.
"""

from __future__ import annotations

import argparse
import os
import time

import cv2
import numpy as np

from tests.engine.images import encode, face_photo, photo, psnr, with_gaussian_noise
from tests.engine.test_cutout import object_on_background, printed_pattern, small_object_in_large_frame
from tests.engine.test_faces import tiled_faces
from vodimg.engine.faces import detect_faces
from vodimg.engine.frame import Frame, StepContext
from vodimg.engine.steps import cutout, face


def timed(fn, *args):
    start = time.perf_counter()
    result = fn(*args)
    return result, (time.perf_counter() - start) * 1000.0


def enhance(bgr: np.ndarray, intensity: float = 1.0) -> np.ndarray:
    return face.apply(Frame(bgr=bgr), {"Switch": "ON", "Intensity": intensity}, StepContext()).bgr


def cut(bgr: np.ndarray, options: dict) -> Frame:
    return cutout.apply(Frame(bgr=bgr), {"Switch": "ON", **options}, StepContext())


def checkerboard_composite(bgr: np.ndarray, alpha: np.ndarray, cell: int = 12) -> np.ndarray:
    ys, xs = np.indices(alpha.shape)
    board = np.where(((ys // cell + xs // cell) % 2)[..., None] == 0, 200.0, 120.0)
    a = alpha.astype(np.float32)[..., None] / 255.0
    return np.clip(np.rint(bgr * a + board * (1.0 - a)), 0, 255).astype(np.uint8)


def labelled(images: list[np.ndarray], labels: list[str], zoom: float = 1.0) -> np.ndarray:
    height = max(image.shape[0] for image in images)
    tiles = []
    for image, label in zip(images, labels):
        tile = np.full((height + 24, image.shape[1], 3), 255, np.uint8)
        tile[24 : 24 + image.shape[0]] = image
        cv2.putText(tile, label, (4, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        tiles.append(tile)
        tiles.append(np.full((height + 24, 6, 3), 255, np.uint8))
    sheet = np.hstack(tiles[:-1])
    return cv2.resize(sheet, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST) if zoom != 1.0 else sheet


def face_sheets(out_dir: str, rows: list[tuple]) -> None:
    clean = face_photo()
    (box,) = detect_faces(clean)
    region = (slice(box.y, box.y + box.h), slice(box.x, box.x + box.w))
    view = (slice(30, 240), slice(130, 320))
    soft = cv2.resize(cv2.resize(clean, (256, 256), interpolation=cv2.INTER_AREA), (512, 512), interpolation=cv2.INTER_CUBIC)
    cases = {
        "noisy (sigma 20)": with_gaussian_noise(clean, 20.0, seed=1),
        "noisy (sigma 10)": with_gaussian_noise(clean, 10.0, seed=1),
        "soft (x2 down, bicubic up)": soft,
        "jpeg (quality 20)": cv2.imdecode(np.frombuffer(encode(clean, ".jpg", 20), np.uint8), cv2.IMREAD_COLOR),
        "clean": clean,
    }
    for name, degraded in cases.items():
        enhanced, ms = timed(enhance, degraded)
        rows.append(("face enhance", name, "face PSNR dB", psnr(degraded[region], clean[region]),
                     psnr(enhanced[region], clean[region]), ms))
        slug = name.split(" (")[0] + "".join(ch for ch in name if ch.isdigit())
        sheet = labelled([degraded[view], enhanced[view], clean[view]], ["before", "after (Intensity 1)", "clean"], 2.0)
        cv2.imwrite(os.path.join(out_dir, f"face_{slug}.png"), sheet)
    canvas, _ = tiled_faces(3)
    noisy_canvas = with_gaussian_noise(canvas, 15.0, seed=2)
    enhanced, ms = timed(enhance, noisy_canvas)
    rows.append(("face enhance", "3 tiled faces, sigma 15", "image PSNR dB", psnr(noisy_canvas, canvas), psnr(enhanced, canvas), ms))
    cv2.imwrite(os.path.join(out_dir, "face_multi.png"), np.vstack([noisy_canvas, enhanced]))
    coffee = photo("coffee")
    _, ms = timed(enhance, coffee)
    rows.append(("face enhance", "no face (coffee)", "-", float("nan"), float("nan"), ms))


def baseline_foreground(bgr: np.ndarray) -> np.ndarray:
    """Distance to the median border colour, Otsu-thresholded: what a cut-out without a model does."""
    lab = cv2.cvtColor(bgr, cv2.COLOR_BGR2Lab).astype(np.float32)
    border = np.concatenate([lab[:4].reshape(-1, 3), lab[-4:].reshape(-1, 3), lab[:, :4].reshape(-1, 3), lab[:, -4:].reshape(-1, 3)])
    distance = np.linalg.norm(lab - np.median(border, axis=0), axis=-1)
    scaled = np.clip(distance * 255.0 / max(distance.max(), 1e-6), 0, 255).astype(np.uint8)
    _, mask = cv2.threshold(scaled, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return mask


def baseline_pattern_alpha(bgr: np.ndarray) -> np.ndarray:
    """0-1 alpha from the distance to the border's median colour alone (no local sampling):
    (distance - noise) / (median pattern distance - noise)."""
    lab = cv2.cvtColor(bgr.astype(np.float32) / 255.0, cv2.COLOR_BGR2Lab)
    border = np.concatenate([lab[:4].reshape(-1, 3), lab[-4:].reshape(-1, 3), lab[:, :4].reshape(-1, 3), lab[:, -4:].reshape(-1, 3)])
    colour = np.median(border, axis=0)
    noise = np.percentile(np.linalg.norm(border - colour, axis=-1), 99)
    distance = np.linalg.norm(lab - colour, axis=-1)
    typical = np.median(distance[distance > noise + 6.0])
    return np.clip((distance - noise) / (typical - noise), 0.0, 1.0)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def cutout_sheets(out_dir: str, rows: list[tuple]) -> None:
    cut(photo("coffee")[:64, :64], {})  # load the model outside the timings
    for name, (image, truth) in {
        "horse of chelsea, 400 px": object_on_background("chelsea"),
        "horse of coffee, 1000 px": object_on_background("coffee", scale=2.5, background=(90, 140, 60), noise=12.0),
        "small horse in 1400 px frame": small_object_in_large_frame(),
    }.items():
        base = baseline_foreground(image)
        results = {model: timed(cut, image, {"Model": model}) for model in cutout.MODELS}
        for model, (frame, ms) in results.items():
            rows.append(("foreground " + model.split("-")[-1], name, "IoU", iou(base >= 128, truth >= 0.5),
                         iou(frame.alpha >= 128, truth >= 0.5), ms))
        slug = name.split(",")[0].split(" in ")[0].replace(" ", "_")
        sheet = labelled(
            [image, checkerboard_composite(image, base)] + [checkerboard_composite(image, f.alpha) for f, _ in results.values()],
            ["input", "baseline (border colour + Otsu)", "cutout-1.0-lite", "cutout-1.0-flash"],
        )
        cv2.imwrite(os.path.join(out_dir, f"cutout_{slug}.png"), sheet)
    for name in ("coffee", "chelsea", "astronaut"):
        image = photo(name)
        frames = {model: timed(cut, image, {"Model": model}) for model in cutout.MODELS}
        for model, (_, ms) in frames.items():
            rows.append(("foreground " + model.split("-")[-1], f"{name} photo {image.shape[1]}x{image.shape[0]}", "-", float("nan"), float("nan"), ms))
        sheet = labelled([image] + [checkerboard_composite(f.bgr, f.alpha) for f, _ in frames.values()], ["input", "lite", "flash"])
        cv2.imwrite(os.path.join(out_dir, f"cutout_{name}.png"), sheet)
    image, truth = printed_pattern(480, 640)
    outline = (truth > 0.05) & (truth < 0.95)
    baseline_error = np.abs(baseline_pattern_alpha(image) - truth)[outline].mean()
    matte, ms = timed(cut, image, {"Type": "pattern", "PatternConfig": {"TransparencyThreshold": 0, "OpaqueThreshold": 255, "EdgeBlendingIntensity": 0.0}})
    rows.append(("pattern matte", "print 640x480, T=0 O=255", "outline alpha MAE", baseline_error,
                 np.abs(matte.alpha / 255.0 - truth)[outline].mean(), ms))
    frames = [cut(image, {"Type": "pattern", "PatternConfig": {"EdgeExpansionStep": e}}) for e in (0, 5, 12)]
    defaults, ms = timed(cut, image, {"Type": "pattern"})
    rows.append(("pattern", "print 640x480, defaults", "IoU", float("nan"), iou(defaults.alpha >= 128, truth >= 0.5), ms))
    sheet = labelled(
        [image] + [checkerboard_composite(f.bgr, f.alpha) for f in frames],
        ["print", "EdgeExpansionStep 0", "5 (default)", "12"],
    )
    cv2.imwrite(os.path.join(out_dir, "cutout_pattern.png"), sheet)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/out")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    cv2.setNumThreads(1)
    rows: list[tuple] = []
    face_sheets(args.out, rows)
    cutout_sheets(args.out, rows)
    print(f"{'step':<20} {'case':<30} {'metric':<18} {'baseline':>9} {'ours':>8} {'ratio':>7} {'ms':>7}")
    for step, case, metric, baseline, ours, ms in rows:
        ratio = ours / baseline if baseline == baseline and baseline not in (0.0, float("inf")) else float("nan")
        print(f"{step:<20} {case:<30} {metric:<18} {baseline:>9.3f} {ours:>8.3f} {ratio:>7.2f} {ms:>7.0f}")
    print(f"sheets written to {args.out}")


if __name__ == "__main__":
    main()
