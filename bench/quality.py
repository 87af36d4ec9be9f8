"""Engine quality, one after the other, each with its goal and the baseline measured in the same
run: super-resolution (Y-PSNR/SSIM against bicubic and Lanczos), ImageQualityEnhance on JPEG
artefacts (against waifu2x's photo denoisers at x1; writes bench/out/jpeg_artefacts.png), denoise
on Gaussian and camera noise (against tuned non-local means), FaceEnhance's face gain at sigma 20;
then the face-template speed goal (bench.engine_speed --templates-only: the spec template without
super-resolution on a 1080p portrait, against the classical-only template).

    python -m bench.quality [--quick]
"""

from bench import engine_speed  # first: it pins every thread pool to one thread
from bench import quality_denoise, quality_face, quality_jpeg, quality_sr


def main() -> None:
    quality_sr.main()  # reads --quick from the command line
    print()
    quality_jpeg.main([])
    print()
    quality_denoise.main()
    print()
    quality_face.main()
    print()
    engine_speed.main(["--templates-only"])


if __name__ == "__main__":
    main()
