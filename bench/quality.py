"""Engine quality: super-resolution (Y-PSNR/SSIM against bicubic and Lanczos) and denoise
(PSNR against tuned non-local means), one after the other.

    python -m bench.quality [--quick]
"""

from bench import quality_denoise, quality_sr


def main() -> None:
    quality_sr.main()  # reads --quick from the command line
    print()
    quality_denoise.main()


if __name__ == "__main__":
    main()
