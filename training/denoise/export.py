"""Export a training checkpoint to the ONNX file the service ships.

    /work/train-venv/bin/python training/denoise/export.py /work/denoise-run/checkpoint.pt \
        vodimg/engine/weights/denoise/denoise.onnx

Opset 17, dynamic H/W (multiples of 8). Weights are stored as float16 with a Cast to float32
in front of each (onnxruntime folds the casts when it loads the model), which halves the file;
inference stays float32. The export is checked against the PyTorch model before it is written.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train import DenoiseUNet, export_onnx  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from onnx_fp16 import store_weights_as_float16  # noqa: E402


def main(checkpoint: str, out: str) -> None:
    torch.set_num_threads(1)
    net = DenoiseUNet()
    net.load_state_dict(torch.load(checkpoint, map_location="cpu"))
    net.eval()
    with tempfile.TemporaryDirectory() as tmp:
        full = Path(tmp) / "full.onnx"
        export_onnx(net, str(full))
        model = store_weights_as_float16(onnx.load(str(full)))
    onnx.save(model, out)
    check(net, out)


def check(net: DenoiseUNet, path: str) -> None:
    import onnxruntime as ort

    rng = np.random.default_rng(0)
    x = rng.random((1, 3, 96, 136), dtype=np.float32)
    s = np.full((1, 1, 96, 136), 20 / 255.0, np.float32)
    with torch.no_grad():
        expected = net(torch.from_numpy(x), torch.from_numpy(s)).numpy()
    got = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"noisy": x, "sigma": s})[0]
    err = float(np.abs(got - expected).max() * 255)
    print(f"wrote {path} ({Path(path).stat().st_size} bytes); max difference from PyTorch {err:.3f}/255")
    assert err < 0.5, "float16 weights changed the output too much"


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
