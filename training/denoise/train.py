"""Train the small denoising network shipped in vodimg/engine/weights/denoise/.

Runs offline on one CPU thread, in its own venv (torch stays out of the project venv):

    python3.11 -m venv /work/train-venv
    /work/train-venv/bin/pip install torch==2.13.0 numpy scikit-image opencv-python-headless onnx
    /work/train-venv/bin/python training/denoise/train.py --minutes 55 --out /tmp/denoise-run

Model: a three-level U-Net that works at half resolution after a 2x2 pixel-unshuffle (as FFDNet
does) and takes a noise-level map as a fourth input, so one network serves any sigma in 0-50
(the runtime's ``weak`` and ``strong`` differ only in the sigma they pass). It predicts the
noise (residual learning, as DnCNN); the output is input minus prediction.

Data: scikit-image's bundled photos with clear licences (see README.md). The benchmark and test
photos ``astronaut``, ``coffee`` and ``chelsea`` are HELD OUT: never used for training or for
choosing a checkpoint (the last checkpoint is the one shipped; held-out PSNR is only logged).

Fine-tuning for camera noise (``--init-onnx`` the shipped model ``--noise camera``): a share of
the crops get signal-dependent Poisson-Gaussian noise instead of white noise, some of them then
saved as JPEG quality 75-95, and the network's noise map is the one the service itself estimates
from the noisy crop (``vodimg.engine.steps.denoise.noise_level_function`` and ``noise_map``), so
it learns to remove what that estimate under-reads (JPEG-correlated noise reads low).
"""

from __future__ import annotations

import argparse
import math
import os
import time

import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from skimage import data

# Training photos, all public domain or CC0 (licences quoted in README.md).
COLOUR_PHOTOS = ("rocket", "immunohistochemistry", "retina", "hubble_deep_field")
GREY_PHOTOS = ("camera", "coins", "brick", "grass", "gravel", "text", "cell", "clock")
HELD_OUT = ("astronaut", "coffee", "chelsea")
SIGMA_MAX = 50.0
SCALES = (1.0, 0.75, 0.5)


class DenoiseUNet(nn.Module):
    """Noisy RGB (N,3,H,W) in 0..1 plus sigma map (N,1,H,W) in sigma/255 -> denoised RGB.

    H and W must be multiples of 8 (the runtime pads).
    """

    def __init__(self, c1: int = 32, c2: int = 64, c3: int = 96):
        super().__init__()
        act = nn.ReLU(inplace=True)

        def conv(cin, cout):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), act)

        self.head = nn.Sequential(conv(13, c1), conv(c1, c1))
        self.down1 = nn.Sequential(nn.Conv2d(c1, c2, 2, stride=2), act, conv(c2, c2), conv(c2, c2))
        self.down2 = nn.Sequential(nn.Conv2d(c2, c3, 2, stride=2), act, conv(c3, c3), conv(c3, c3), conv(c3, c3))
        self.up2 = nn.ConvTranspose2d(c3, c2, 2, stride=2)
        self.dec2 = nn.Sequential(conv(c2, c2), conv(c2, c2))
        self.up1 = nn.ConvTranspose2d(c2, c1, 2, stride=2)
        self.dec1 = nn.Sequential(conv(c1, c1), conv(c1, c1))
        self.tail = nn.Conv2d(c1, 12, 3, padding=1)

    def forward(self, noisy: torch.Tensor, sigma_map: torch.Tensor) -> torch.Tensor:
        x = F.pixel_unshuffle(noisy, 2)
        s = F.avg_pool2d(sigma_map, 2)
        e1 = self.head(torch.cat([x, s], dim=1))
        e2 = self.down1(e1)
        e3 = self.down2(e2)
        d2 = self.dec2(self.up2(e3) + e2)
        d1 = self.dec1(self.up1(d2) + e1)
        noise = F.pixel_shuffle(self.tail(d1), 2)
        return noisy - noise


def load_photos() -> list[tuple[np.ndarray, bool]]:
    """All training photos as float32 RGB 0..255 at several scales; (image, is_colour)."""
    out = []
    for name in COLOUR_PHOTOS + GREY_PHOTOS:
        img = getattr(data, name)()
        colour = img.ndim == 3
        img = img[..., :3] if colour else np.stack([img] * 3, axis=-1)
        for scale in SCALES:
            # Downscaling also averages away the source's own noise and JPEG artefacts.
            h, w = img.shape[:2]
            size = (int(w * scale), int(h * scale))
            small = img if scale == 1.0 else cv2.resize(img, size, interpolation=cv2.INTER_AREA)
            if min(small.shape[:2]) >= 160:
                out.append((small.astype(np.float32), colour))
    return out


def random_patch(rng: np.random.Generator, photos, size: int) -> np.ndarray:
    # Colour photos drawn more often: they teach the cross-channel statistics.
    colour_idx = [i for i, (_, c) in enumerate(photos) if c]
    grey_idx = [i for i, (_, c) in enumerate(photos) if not c]
    idx = rng.choice(colour_idx if rng.random() < 0.65 else grey_idx)
    img, colour = photos[idx]
    h, w = img.shape[:2]
    y, x = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
    p = img[y : y + size, x : x + size]
    p = np.rot90(p, rng.integers(0, 4))
    if rng.random() < 0.5:
        p = p[:, ::-1]
    if colour:
        p = p[..., rng.permutation(3)]
    else:
        # Tint grey photos so channels differ in level but stay correlated.
        p = p * rng.uniform(0.6, 1.0, size=3).astype(np.float32)
    return np.ascontiguousarray(p)


def sample_sigma(rng: np.random.Generator) -> float:
    # Half uniform over the whole range, half concentrated on typical photo noise.
    return float(rng.uniform(0, SIGMA_MAX) if rng.random() < 0.5 else rng.uniform(5, 35))


CAMERA_SHARE = 0.6  # of the crops, with --noise camera
JPEG_SHARE = 0.5  # of those, saved as JPEG too (quality JPEG_QUALITIES), as a phone does
JPEG_QUALITIES = (75, 95)


def camera_noisy(rng: np.random.Generator, clean: np.ndarray) -> np.ndarray:
    """Poisson-Gaussian noise (shot noise variance a * x, read noise std r, 0-1 scale) on an
    8-bit crop; half the time then JPEG-compressed."""
    shot = float(rng.uniform(0.0005, 0.02))
    read = float(rng.uniform(0.002, 0.03))
    unit = shot * 255.0
    noisy = rng.poisson(clean / unit) * unit + rng.normal(0.0, read * 255.0, clean.shape)
    noisy = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
    if rng.random() < JPEG_SHARE:
        quality = int(rng.integers(JPEG_QUALITIES[0], JPEG_QUALITIES[1] + 1))
        ok, data = cv2.imencode(".jpg", noisy, [cv2.IMWRITE_JPEG_QUALITY, quality])
        noisy = cv2.imdecode(data, cv2.IMREAD_COLOR)
    return noisy.astype(np.float32)


def make_camera_batch(rng, photos, batch: int, size: int):
    """Like make_batch, with CAMERA_SHARE of the crops camera-noisy, and every crop's noise map
    estimated from the noisy crop as the service does."""
    from vodimg.engine.steps import denoise as service

    clean = np.rint(np.stack([random_patch(rng, photos, size) for _ in range(batch)]))
    noisy, maps = [], []
    for crop in clean:
        if rng.random() < CAMERA_SHARE:
            degraded = camera_noisy(rng, crop)
        else:
            degraded = np.clip(np.rint(crop + rng.normal(size=crop.shape) * sample_sigma(rng)), 0, 255)
        pixels = degraded.astype(np.uint8)
        maps.append(service.noise_map(pixels, *service.noise_level_function(pixels)))
        noisy.append(degraded)
    to_t = lambda a: torch.from_numpy(np.ascontiguousarray(np.stack(a).transpose(0, 3, 1, 2)) / 255.0).float()
    sigma_map = torch.from_numpy(np.stack(maps) / 255.0)[:, None].float()
    return to_t(noisy), sigma_map, to_t(list(clean))


def load_onnx_weights(model: nn.Module, path: str) -> None:
    """Start from a shipped ONNX file: its initializers (float16 or float32), matched to the
    model's parameters by name, else in order by shape."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(path).graph
    tensors = {t.name: numpy_helper.to_array(t).astype(np.float32) for t in graph.initializer}
    state = model.state_dict()
    unused = [name for name in tensors if name not in state]
    for key, value in state.items():
        if key in tensors:
            source = tensors[key]
        else:
            match = next(name for name in unused if tensors[name].shape == tuple(value.shape))
            unused.remove(match)
            source = tensors[match]
        state[key] = torch.from_numpy(source.reshape(value.shape))
    model.load_state_dict(state)


def make_batch(rng, photos, batch: int, size: int):
    clean = np.stack([random_patch(rng, photos, size) for _ in range(batch)])
    clean = np.rint(clean)
    sigmas = np.array([sample_sigma(rng) for _ in range(batch)], dtype=np.float32)
    noise = rng.normal(size=clean.shape).astype(np.float32) * sigmas[:, None, None, None]
    # Same degradation as a real 8-bit image: clipped and rounded.
    noisy = np.clip(np.rint(clean + noise), 0, 255)
    to_t = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2)) / 255.0).float()
    sigma_map = torch.from_numpy(sigmas / 255.0)[:, None, None, None].expand(batch, 1, size, size)
    return to_t(noisy), sigma_map.contiguous(), to_t(clean)


def held_out_psnr(model: nn.Module, sigma: float = 25.0) -> float:
    """Monitoring only (never used to select a checkpoint): PSNR on a crop of a held-out photo."""
    rng = np.random.default_rng(123)
    clean = data.astronaut()[128:384, 128:384].astype(np.float32)
    noisy = np.clip(np.rint(clean + rng.normal(size=clean.shape) * sigma), 0, 255)
    x = torch.from_numpy(noisy.transpose(2, 0, 1)[None] / 255.0).float()
    s = torch.full((1, 1, 256, 256), sigma / 255.0)
    with torch.no_grad():
        y = model(x, s).clamp(0, 1)[0].numpy().transpose(1, 2, 0) * 255.0
    mse = np.mean((np.rint(y) - clean) ** 2)
    return float(10 * np.log10(255.0**2 / mse))


def export_onnx(model: nn.Module, path: str) -> None:
    model.eval()
    x = torch.rand(1, 3, 64, 64)
    s = torch.full((1, 1, 64, 64), 15 / 255.0)
    torch.onnx.export(
        model, (x, s), path, opset_version=17, dynamo=False,
        input_names=["noisy", "sigma"], output_names=["denoised"],
        dynamic_axes={"noisy": {2: "h", 3: "w"}, "sigma": {2: "h", 3: "w"}, "denoised": {2: "h", 3: "w"}},
    )
    model.train()


def learning_rate(fraction: float, peak: float) -> float:
    """Short warm-up, then cosine decay over the wall-time budget."""
    if fraction < 0.02:
        return peak * fraction / 0.02
    return 1e-6 + 0.5 * (peak - 1e-6) * (1 + math.cos(math.pi * min(1.0, fraction)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=55.0, help="wall-time budget")
    ap.add_argument("--out", default="/tmp/denoise-run")
    ap.add_argument("--batch", type=int, default=12)
    ap.add_argument("--patch", type=int, default=96)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--init-onnx", help="start from this ONNX model's weights (fine-tuning)")
    ap.add_argument("--noise", choices=("gaussian", "camera"), default="gaussian")
    args = ap.parse_args()

    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    os.makedirs(args.out, exist_ok=True)
    photos = load_photos()
    model = DenoiseUNet()
    if args.init_onnx:
        load_onnx_weights(model, args.init_onnx)
    batches = make_camera_batch if args.noise == "camera" else make_batch
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{len(photos)} training images, {n_params} parameters", flush=True)

    budget = args.minutes * 60.0
    start = last_save = time.monotonic()
    step, running = 0, 0.0
    while (elapsed := time.monotonic() - start) < budget:
        for group in opt.param_groups:
            group["lr"] = learning_rate(elapsed / budget, args.lr)
        noisy, sigma_map, clean = batches(rng, photos, args.batch, args.patch)
        loss = F.mse_loss(model(noisy, sigma_map), clean)
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        running = 0.98 * running + 0.02 * loss.item() if step > 1 else loss.item()
        if step % 100 == 0:
            psnr = 10 * math.log10(1.0 / running)
            print(f"step {step} {elapsed / 60:.1f} min lr {opt.param_groups[0]['lr']:.2e} "
                  f"train psnr {psnr:.2f}", flush=True)
        if time.monotonic() - last_save > 300:
            save(model, args.out, step)
            last_save = time.monotonic()
    save(model, args.out, step)


def save(model: nn.Module, out: str, step: int) -> None:
    torch.save(model.state_dict(), os.path.join(out, "checkpoint.pt"))
    export_onnx(model, os.path.join(out, "denoise.onnx"))
    print(f"saved at step {step}; held-out astronaut crop sigma 25: {held_out_psnr(model):.2f} dB "
          f"(monitoring only)", flush=True)


if __name__ == "__main__":
    main()
