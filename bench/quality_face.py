"""FaceEnhance's face-region gain on the astronaut portrait with Gaussian noise sigma 20.

    python -m bench.quality_face

Face box PSNR against the clean photo, before and after FaceEnhance at Intensity 1 (the same
measurement as ``bench.contact_sheets_face``). Goal (issue 12, with the faster face step): keep
the gain it had before (22.3 -> 29.2 dB), losing at most 0.3 dB of it: after >= 28.9 dB.
"""

from __future__ import annotations

import cv2

from tests.engine.images import face_photo, psnr, with_gaussian_noise
from vodimg.engine.faces import detect_faces
from vodimg.engine.frame import Frame, StepContext
from vodimg.engine.steps import face

BEFORE_DB, AFTER_DB, MOST_LOST_DB = 22.3, 29.2, 0.3


def main() -> None:
    cv2.setNumThreads(1)
    clean = face_photo()
    (box,) = detect_faces(clean)
    region = (slice(box.y, box.y + box.h), slice(box.x, box.x + box.w))
    noisy = with_gaussian_noise(clean, 20.0, seed=1)
    enhanced = face.apply(Frame(noisy), {"Switch": "ON", "Intensity": 1.0}, StepContext()).bgr
    before, after = psnr(noisy[region], clean[region]), psnr(enhanced[region], clean[region])
    goal = AFTER_DB - MOST_LOST_DB
    verdict = "MET" if after >= goal else "NOT MET"
    print(f"FaceEnhance, astronaut, noise sigma 20, face box PSNR: {before:.2f} -> {after:.2f} dB "
          f"(gain {after - before:+.2f}; before this change {BEFORE_DB} -> {AFTER_DB})")
    print(f"Goal: after >= {goal:.1f} dB (at most {MOST_LOST_DB} dB of the gain lost) -> {verdict}")


if __name__ == "__main__":
    main()
