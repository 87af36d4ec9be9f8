"""Contact sheets and measurements for the classical enhancement steps.

    python -m bench.contact_sheets --out bench/out

Writes labelled before/after PNGs and prints, per step, the statistic it must move next to a
plain baseline measured in the same run:

- low-light (photos darkened by ``tests.engine.images.darkened``): mean luma of the darkest 30 %
  and share of pixels at 255, for the input, a global gamma 0.5 curve (baseline) and the step;
- colour: mean HSV saturation, skin-hue saturation gain and clipped share, for the input, a plain
  saturation x1.25 (baseline) and weak / normal / strong;
- sharpen: Laplacian variance and halo overshoot (levels beyond the 3x3 range, 99.9th pct), for a
  plain unsharp mask of the same amount (baseline) and the step;
- quality (JPEG q15): PSNR, SSIM, blockiness and local contrast, for the JPEG (baseline) and
  weak / normal / strong;
- beauty (astronaut portrait): cheek detail (Laplacian variance) and skin lightness per effect,
  and colour statistics per filter.

Everything runs on one thread.
"""

from __future__ import annotations

import argparse
import os

import cv2
import numpy as np
from skimage.metrics import structural_similarity

from tests.engine.images import darkened, face_photo, photo, psnr
from vodimg.engine.frame import Frame, StepContext
from vodimg.engine.steps import beauty, color, lowlight, quality, sharpen

cv2.setNumThreads(1)
CHEEK = (slice(108, 130), slice(190, 208))  # on the astronaut portrait
FACE = (slice(60, 250), slice(150, 300))


# --- sheets ------------------------------------------------------------------------------------


def labelled(images: list[np.ndarray], labels: list[str], zoom: float = 1.0) -> np.ndarray:
    """Images side by side, each under a white strip carrying its label."""
    tiles = []
    for image, label in zip(images, labels):
        if zoom != 1.0:
            image = cv2.resize(image, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_CUBIC)
        strip = np.full((24, image.shape[1], 3), 255, np.uint8)
        cv2.putText(strip, label, (4, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        tiles.append(np.vstack([strip, image]))
    gap = np.full((tiles[0].shape[0], 4, 3), 255, np.uint8)
    return np.hstack([part for tile in tiles for part in (tile, gap)][:-1])


def save(out_dir: str, name: str, sheet: np.ndarray) -> None:
    path = os.path.join(out_dir, name)
    cv2.imwrite(path, sheet)
    print(f"  wrote {path}")


def run(module, bgr: np.ndarray, options: dict) -> np.ndarray:
    return module.apply(Frame(bgr=bgr), options, StepContext()).bgr


# --- statistics --------------------------------------------------------------------------------


def gray(bgr: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)


def saturation(bgr: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV)[..., 1].astype(np.float64)


def clipped(bgr: np.ndarray) -> float:
    return float(((bgr == 0) | (bgr == 255)).any(axis=2).mean())


def laplacian_variance(bgr: np.ndarray, region=(slice(None), slice(None))) -> float:
    return float(cv2.Laplacian(gray(bgr), cv2.CV_64F)[region].var())


def overshoot(before: np.ndarray, after: np.ndarray) -> float:
    kernel = np.ones((3, 3), np.uint8)
    y0, y1 = gray(before), gray(after).astype(np.int16)
    beyond = np.maximum(y1 - cv2.dilate(y0, kernel), cv2.erode(y0, kernel).astype(np.int16) - y1)
    return float(np.percentile(np.maximum(beyond, 0), 99.9))


def local_contrast(bgr: np.ndarray) -> float:
    y = cv2.GaussianBlur(gray(bgr).astype(np.float32), (0, 0), 2.0)
    mean = cv2.blur(y, (33, 33))
    return float(np.sqrt(np.maximum(cv2.blur(y * y, (33, 33)) - mean * mean, 0)).mean())


def lightness(bgr: np.ndarray, region) -> float:
    return float(cv2.cvtColor(bgr, cv2.COLOR_BGR2LAB)[region][..., 0].astype(np.float64).mean())


def table(header: list[str], rows: list[list]) -> None:
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows)]
    for row in [header, ["-" * w for w in widths], *rows]:
        print("  " + "  ".join(str(x).rjust(w) for x, w in zip(row, widths)))


# --- sections ----------------------------------------------------------------------------------


def gamma_baseline(bgr: np.ndarray, gamma: float = 0.5) -> np.ndarray:
    lut = np.rint((np.arange(256) / 255.0) ** gamma * 255.0).astype(np.uint8)
    return cv2.LUT(bgr, lut)


def lowlight_section(out_dir: str) -> None:
    print("\nLowLightEnhance normal (photos darkened: gain 0.25, gamma 1.6)")
    rows = []
    for name in ("astronaut", "coffee", "rocket"):
        src = photo(name)
        dark = darkened(src)
        ours, base = run(lowlight, dark, {"Switch": "ON", "Type": "normal"}), gamma_baseline(dark)
        darkest = gray(dark) <= np.percentile(gray(dark), 30)
        bright = gray(src) > 180
        unchanged = np.abs(run(lowlight, src, {"Switch": "ON"}).astype(int) - src).max(axis=2)
        rows.append([
            name,
            *(f"{gray(x)[darkest].mean():.1f}" for x in (dark, base, ours)),
            *(f"{(x == 255).any(axis=2).mean() * 100:.2f}" for x in (dark, base, ours)),
            f"{np.percentile(unchanged[bright], 99):.0f}" if bright.any() else "-",
        ])
        save(out_dir, f"lowlight_{name}.png", labelled(
            [dark, base, ours, src], ["input (darkened)", "baseline: gamma 0.5", "LowLightEnhance", "original"]
        ))
    table(["photo", "dark in", "dark gamma", "dark ours", "%255 in", "%255 gamma", "%255 ours",
           "bright px change p99 (on original)"], rows)


def color_section(out_dir: str) -> None:
    print("\nColorEnhance (skin: hue 0-50 deg, S < 0.6 pixels)")
    rows = []
    for name in ("astronaut", "coffee", "rocket"):
        src = photo(name)
        hsv = cv2.cvtColor(src, cv2.COLOR_BGR2HSV)
        skin_hue = (hsv[..., 0] <= 25) & (hsv[..., 1] < 153) & (hsv[..., 1] > 25)
        other = ~skin_hue & (hsv[..., 1] > 25)
        hsv_base = hsv.copy()
        hsv_base[..., 1] = cv2.convertScaleAbs(hsv[..., 1], alpha=1.25)
        outputs = {"x1.25": cv2.cvtColor(hsv_base, cv2.COLOR_HSV2BGR)}
        for kind in ("weak", "normal", "strong"):
            outputs[kind] = run(color, src, {"Switch": "ON", "Type": kind})
        s0 = saturation(src)
        for label, out in outputs.items():
            gain = saturation(out) - s0
            rows.append([name, label, f"{s0.mean():.1f} -> {saturation(out).mean():.1f}",
                         f"{gain[skin_hue].mean():.1f}" if skin_hue.any() else "-",
                         f"{gain[other].mean():.1f}", f"{(clipped(out) - clipped(src)) * 100:+.2f}"])
        save(out_dir, f"color_{name}.png", labelled(
            [src, outputs["x1.25"], outputs["weak"], outputs["normal"], outputs["strong"]],
            ["input", "baseline: S x1.25", "weak", "normal", "strong"],
        ))
    table(["photo", "variant", "mean S", "skin-hue S gain", "other S gain", "clipped % change"], rows)


def sharpen_section(out_dir: str) -> None:
    print("\nSharpEnhance (baseline: plain unsharp mask of the same amount)")
    rows = []
    src = photo("astronaut")
    view = (slice(60, 260), slice(150, 350))
    panels, labels = [src[view]], ["input"]
    for intensity in (0.5, 1.0):
        amount = sharpen.MAX_AMOUNT * intensity
        plain = cv2.addWeighted(src, 1 + amount, cv2.GaussianBlur(src, (5, 5), 1.0), -amount, 0)
        ours = run(sharpen, src, {"Switch": "ON", "Intensity": intensity})
        for label, out in ((f"plain USM {amount:.2f}", plain), (f"Intensity {intensity}", ours)):
            rows.append([label, f"{laplacian_variance(src):.0f} -> {laplacian_variance(out):.0f}",
                         f"{overshoot(src, out):.0f}"])
        panels += [plain[view], ours[view]]
        labels += [f"plain USM {amount:.2f}", f"SharpEnhance {intensity}"]
    save(out_dir, "sharpen.png", labelled(panels, labels, zoom=2.0))
    table(["variant", "Laplacian variance", "overshoot p99.9 (levels)"], rows)


def quality_section(out_dir: str) -> None:
    print("\nImageQualityEnhance on JPEG q15 (baseline: the JPEG itself)")
    rows = []
    for name in ("astronaut", "coffee", "chelsea"):
        src = photo(name)
        ok, buf = cv2.imencode(".jpg", src, [cv2.IMWRITE_JPEG_QUALITY, 15])
        compressed = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        outputs = {"jpeg q15": compressed}
        for kind in ("weak", "normal", "strong"):
            outputs[kind] = run(quality, compressed, {"Switch": "ON", "Type": kind})
        for label, out in outputs.items():
            rows.append([name, label, f"{psnr(out, src):.2f}",
                         f"{structural_similarity(gray(out), gray(src)):.4f}",
                         f"{quality.blockiness(gray(out)):.2f}", f"{local_contrast(out):.2f}"])
        view = (slice(40, 240), slice(150, 350)) if name == "astronaut" else (slice(100, 300), slice(100, 300))
        save(out_dir, f"quality_{name}.png", labelled(
            [compressed[view], outputs["weak"][view], outputs["normal"][view], outputs["strong"][view], src[view]],
            ["JPEG q15", "weak", "normal", "strong", "original"], zoom=2.0,
        ))
    table(["photo", "variant", "PSNR dB", "SSIM", "blockiness", "local contrast"], rows)


def beauty_section(out_dir: str) -> None:
    print("\nBeautyConfig effects on the astronaut portrait")
    src = face_photo()
    rows = [["input", "-", f"{laplacian_variance(src, CHEEK):.0f}", f"{lightness(src, CHEEK):.1f}"]]
    panels, labels = [src[FACE]], ["input"]
    for kind, value in (("smooth", 60), ("smooth", 100), ("whiten", 60), ("rosy", 60), ("sharpen", 40)):
        out = run(beauty, src, {"BeautyEffectItems": [{"Switch": "ON", "Type": kind, "Value": value}]})
        rows.append([kind, value, f"{laplacian_variance(out, CHEEK):.0f}", f"{lightness(out, CHEEK):.1f}"])
        panels.append(out[FACE])
        labels.append(f"{kind} {value}")
    combo = [{"Switch": "ON", "Type": t, "Value": v} for t, v in (("smooth", 70), ("whiten", 40), ("rosy", 30))]
    out = run(beauty, src, {"BeautyEffectItems": combo})
    rows.append(
        ["smooth+whiten+rosy", "70/40/30", f"{laplacian_variance(out, CHEEK):.0f}", f"{lightness(out, CHEEK):.1f}"]
    )
    panels.append(out[FACE])
    labels.append("smooth70 whiten40 rosy30")
    save(out_dir, "beauty_effects.png", labelled(panels, labels, zoom=1.5))
    table(["effect", "Value", "cheek Laplacian var", "cheek L*"], rows)

    print("\nBeautyConfig filters (Value 100) on the coffee photo")
    src = photo("coffee")
    small = cv2.resize(src, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    panels, labels, rows = [small], ["input"], []
    for kind in ("natural", "warm", "cool", "vivid", "mono", "vintage"):
        out = run(beauty, small, {"BeautyFilterItems": [{"Switch": "ON", "Type": kind, "Value": 100}]})
        panels.append(out)
        labels.append(kind)
    for label, out in zip(labels, panels):
        lab = cv2.cvtColor(out, cv2.COLOR_BGR2LAB).astype(np.float64)
        rows.append([label, f"{saturation(out).mean():.1f}", f"{out[..., 2].mean() - out[..., 0].mean():+.1f}",
                     f"{lab[..., 0].std():.1f}", f"{np.percentile(lab[..., 0], 1):.0f}"])
    first, second = labelled(panels[:4], labels[:4]), labelled(panels[:1] + panels[4:], labels[:1] + labels[4:])
    save(out_dir, "beauty_filters.png", np.vstack([first, np.full((6, first.shape[1], 3), 255, np.uint8), second]))
    table(["filter", "mean S", "R - B", "L std (contrast)", "L 1st pct (blacks)"], rows)


SECTIONS = {
    "lowlight": lowlight_section,
    "color": color_section,
    "sharpen": sharpen_section,
    "quality": quality_section,
    "beauty": beauty_section,
}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.contact_sheets", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="bench/out", help="folder for the PNG sheets")
    parser.add_argument("--only", choices=sorted(SECTIONS), action="append", help="run only these sections")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for name in args.only or SECTIONS:
        SECTIONS[name](args.out)


if __name__ == "__main__":
    main()
