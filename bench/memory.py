"""Peak memory per image against the goal: at most 3x the decoded image plus 150 MB.

    python -m bench.memory [--cases png,jpeg] [--no-templates]
    python -m bench.memory --steps [--sizes 1500,2500,3500]

``--steps``: each enhancement step alone on square photos of each size, in a fresh child, as the
pipeline runs it (allowed to write over its input); the peak RSS above the child's memory
without the frame, fitted as bytes per pixel plus a fixed part, next to the figures the
estimate uses (``StepSpec.memory``, ``memory_fixed``): every measured peak must be at most the
estimate.

Each case runs ``process_image`` in a fresh child process (one thread) and reads the child's
peak RSS (VmHWM; ru_maxrss would carry the parent's over across fork and exec). Inputs, made
here: a 7000x7000 PNG (smooth content, about 150 KB: a header promising 147 MB of pixels) and a
7071x7071 JPEG (a photo enlarged; ``noisy``: the same with noise, so Denoise runs), each with a
plain re-encode and with the spec's
ModifyProcessImageAsyncTemplate example template without super-resolution (the seed template).
"decoded" is width x height x 3 bytes (BGR); "estimate" is the engine's own estimate before
decoding (vodimg/engine/memory.py), checked against ``max_memory_bytes``. The first row is the
child's memory after imports only, the baseline every other row includes.
"""

from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from bench.engine_speed import machine, spec_template, table, without_superres

REPO = Path(__file__).resolve().parents[1]
MB = 1024 * 1024
GOAL_FACTOR, GOAL_EXTRA_MB = 3, 150

CHILD = """
import os, sys, json, time
for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[name] = "1"
from vodimg.engine import process_image, Limits
import cv2
cv2.setNumThreads(1)
configure = json.loads(sys.argv[2])
started = time.monotonic()
if configure is not None:
    wanted = {"max_seconds": 10**6, "max_memory_bytes": 2**40}  # measure, do not refuse
    limits = Limits(**{key: value for key, value in wanted.items() if key in Limits.__dataclass_fields__})
    process_image(open(sys.argv[1], "rb").read(), configure, limits)
elapsed = time.monotonic() - started
peak = [int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM")][0]
print(json.dumps({"peak_kb": peak, "seconds": elapsed}))
"""


STEP_CHILD = """
import os, sys, json
for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[name] = "1"
import cv2
cv2.setNumThreads(1)
from vodimg.engine import memory, pipeline
from vodimg.engine.frame import Frame, StepContext
configure = json.loads(sys.argv[2])
step = pipeline.plan(configure)[0]
function = pipeline.load_step(step)
bgr = cv2.imread(sys.argv[1], cv2.IMREAD_COLOR)
memory.release_free_memory()
def status(key):
    return [int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith(key)][0]
before = status("VmRSS")
open("/proc/self/clear_refs", "w").write("5")  # VmHWM from here
pipeline._run_step(step, function, Frame(bgr), StepContext(overwrite_input=True, max_output_pixels=10**9))
print(json.dumps({"above": status("VmHWM") - (before - bgr.size)}))
"""
BEAUTY = {"BeautyEffectItems": [{"Type": kind, "Switch": "ON", "Value": 60} for kind in ("Whiten", "Smooth", "Rosy", "Sharpen")],
          "BeautyFilterItems": [{"Type": "Natural", "Switch": "ON", "Value": 60}]}
STEP_CASES = [  # (label, configure, input: photo, noisy (sigma 15) or q40 (a JPEG at quality 40))
    ("LowLightEnhance normal", {"EnhanceConfig": {"LowLightEnhance": {"Switch": "ON", "Type": "normal"}}}, "photo"),
    ("Denoise weak", {"EnhanceConfig": {"Denoise": {"Switch": "ON", "Type": "weak"}}}, "noisy"),
    ("Denoise strong", {"EnhanceConfig": {"Denoise": {"Switch": "ON", "Type": "strong"}}}, "noisy"),
    ("ImageQualityEnhance normal", {"EnhanceConfig": {"ImageQualityEnhance": {"Switch": "ON", "Type": "normal"}}}, "q40"),
    ("ImageQualityEnhance strong", {"EnhanceConfig": {"ImageQualityEnhance": {"Switch": "ON", "Type": "strong"}}}, "q40"),
    ("FaceEnhance", {"EnhanceConfig": {"FaceEnhance": {"Switch": "ON", "Intensity": 1}}}, "photo"),
    ("ColorEnhance strong", {"EnhanceConfig": {"ColorEnhance": {"Switch": "ON", "Type": "strong"}}}, "photo"),
    ("SharpEnhance", {"EnhanceConfig": {"SharpEnhance": {"Switch": "ON", "Intensity": 1}}}, "photo"),
    ("BeautyConfig (4 effects, a filter)", {"BeautyConfig": BEAUTY}, "photo"),
    ("AiCutOutConfig foreground", {"AiCutOutConfig": {"Switch": "ON"}}, "photo"),
]


def step_inputs(side: int, folder: Path) -> dict[str, Path]:
    from tests.engine.images import photo, with_gaussian_noise

    base = cv2.resize(photo("astronaut"), (side, side))
    ok, jpeg = cv2.imencode(".jpg", base, [cv2.IMWRITE_JPEG_QUALITY, 40])
    images = {"photo": base, "noisy": with_gaussian_noise(base, 15, seed=1), "q40": cv2.imdecode(jpeg, cv2.IMREAD_COLOR)}
    paths = {}
    for name, bgr in images.items():
        paths[name] = folder / f"{name}{side}.png"
        cv2.imwrite(str(paths[name]), bgr)
    return paths


def steps_table(sizes: list[int]) -> None:
    from vodimg.engine import pipeline

    measured: dict[str, list[float]] = {label: [] for label, _, _ in STEP_CASES}
    with tempfile.TemporaryDirectory() as tmp:
        for side in sizes:
            inputs = step_inputs(side, Path(tmp))
            for label, configure, source in STEP_CASES:
                done = subprocess.run([sys.executable, "-c", STEP_CHILD, str(inputs[source]), json.dumps(configure)],
                                      capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
                measured[label].append(json.loads(done.stdout.splitlines()[-1])["above"] if done.returncode == 0 else float("nan"))
    pixels = np.array([side * side for side in sizes], float)
    rows = []
    for label, configure, _ in STEP_CASES:
        spec = pipeline.plan(configure)[0].spec
        peaks = np.array(measured[label])
        slope, fixed = np.polyfit(pixels, peaks, 1)
        estimates = spec.memory * pixels + spec.memory_fixed
        rows.append([label, *(f"{peak / MB:.0f}" for peak in peaks), f"{slope:.1f}", f"{fixed / MB:.0f}",
                     f"{spec.memory:g} + {spec.memory_fixed / MB:.0f} MB", f"{np.max(peaks / estimates):.2f}"])
    print(f"machine: {machine()}")
    print("MB = MiB above the child without the frame; fit: bytes per pixel + fixed MB; a ratio above 1.00 "
          "means the estimate is low")
    print(table(["step", *(f"{side}x{side} MB" for side in sizes), "B/px", "fixed MB", "estimate",
                 "peak / estimate"], rows))


def smooth_png(width: int, height: int) -> bytes:
    """Gradients and a few flat shapes: a tiny file that decodes to a full-size image."""
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    bgr = np.empty((height, width, 3), np.uint8)
    bgr[..., 0] = (x * 0.5 + y * 0.5).astype(np.uint8)
    bgr[..., 1] = np.broadcast_to(x, (height, width)).astype(np.uint8)
    bgr[..., 2] = np.broadcast_to(y, (height, width)).astype(np.uint8)
    cv2.circle(bgr, (width // 2, height // 2), min(width, height) // 4, (40, 200, 90), -1)
    ok, buffer = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    return buffer.tobytes()


def photo_jpeg(width: int, height: int) -> bytes:
    from tests.engine.images import photo

    bgr = cv2.resize(photo("astronaut"), (width, height), interpolation=cv2.INTER_LINEAR)
    ok, buffer = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return buffer.tobytes()


def noisy_photo_jpeg(width: int, height: int) -> bytes:
    """The photo with Gaussian noise (sigma 15): Denoise really runs on it (minutes at 50 MP)."""
    from tests.engine.images import photo, with_gaussian_noise

    bgr = with_gaussian_noise(cv2.resize(photo("astronaut"), (width, height), interpolation=cv2.INTER_LINEAR), 15, seed=1)
    ok, buffer = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return buffer.tobytes()


INPUTS = {
    "png": ("PNG 7000x7000", 7000, 7000, smooth_png),
    "jpeg": ("JPEG 7071x7071", 7071, 7071, photo_jpeg),
    "noisy": ("noisy JPEG 7071x7071", 7071, 7071, noisy_photo_jpeg),
}


def run_child(path: Path | None, configure) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), json.dumps(configure)], capture_output=True, text=True,
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["?"])[-1][:80]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def estimate_mb(data: bytes, configure: dict) -> str:
    try:
        from vodimg.engine.memory import estimate_for_bytes
    except ImportError:
        return "n/a"
    return f"{estimate_for_bytes(data, configure) / MB:.0f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default="png,jpeg", help="comma-separated: png, jpeg, noisy (Denoise "
                                                             "at work on 50 MP: several minutes)")
    parser.add_argument("--no-templates", action="store_true", help="plain re-encode only")
    parser.add_argument("--steps", action="store_true", help="each step alone: its fit against the estimate")
    parser.add_argument("--sizes", default="1500,2500,3500", help="square sides for --steps")
    args = parser.parse_args(argv)
    if args.steps:
        steps_table([int(side) for side in args.sizes.split(",")])
        return
    templates = [("plain re-encode", {})]
    if not args.no_templates:
        templates.append(("seed template without super-resolution", without_superres(spec_template())))

    imports = run_child(None, None)
    rows = [["imports only", "", "", "", f"{imports['peak_kb'] / 1024:.0f}", "", ""]]
    with tempfile.TemporaryDirectory() as tmp:
        for case in args.cases.split(","):
            label, width, height, make = INPUTS[case]
            data = make(width, height)
            path = Path(tmp) / f"{case}.img"
            path.write_bytes(data)
            decoded = width * height * 3 / MB
            goal = GOAL_FACTOR * decoded + GOAL_EXTRA_MB
            for name, configure in templates:
                started = time.monotonic()
                result = run_child(path, configure)
                if "error" in result:
                    rows.append([f"{label} ({len(data) // 1024} KB), {name}", f"{decoded:.0f}", f"{goal:.0f}",
                                 estimate_mb(data, configure), "n/a: " + result["error"], "", ""])
                    continue
                peak = result["peak_kb"] / 1024
                rows.append([f"{label} ({len(data) // 1024} KB), {name}", f"{decoded:.0f}", f"{goal:.0f}",
                             estimate_mb(data, configure), f"{peak:.0f}", f"{peak / goal:.2f}",
                             f"{result['seconds']:.1f} ({time.monotonic() - started:.1f})"])
    print(f"machine: {machine()}")
    print("MB = MiB; goal = 3 x decoded + 150; a ratio above 1.00 misses the goal")
    print(table(["case", "decoded MB", "goal MB", "estimate MB", "peak RSS MB", "peak / goal",
                 "seconds (child)"], rows))


if __name__ == "__main__":
    main()
