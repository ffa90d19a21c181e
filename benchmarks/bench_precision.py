"""Reduced precision for the LiteMedSAM image encoder on this machine (issue 17, item 1): does it
pay, and does it keep the masks?

Variants, each against ONNX Runtime fp32 (segkit's CPU default) in the same run:
- ONNX Runtime int8, static QDQ quantisation (per-channel weights, activations calibrated on real
  slices), on every operator and on Conv/MatMul/Gemm only;
- ONNX Runtime int8, dynamic quantisation (no calibration);
- PyTorch eager fp32, and bf16 under torch.autocast (CPU) when --bf16 is given (minutes per slice
  where the CPU has no bf16 instructions).

Images: dipy's S0_10slices (a real b=0 brain volume installed with dipy, 128x128x10), slices 0-4
calibrate, slices 5-9 are scored. Each scored slice is decoded with three boxes by the real
LiteMedSAM prompt encoder and mask decoder; Dice of each mask against the fp32 mask is reported
(the issue's guard: >= 0.98), beside the largest absolute difference of the embeddings.

    .venv/bin/python benchmarks/bench_precision.py [--threads 1] [--repeats 3] [--bf16]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BOXES = ((30, 30, 100, 100), (40, 20, 90, 110), (10, 40, 60, 90))  # at the encoder's 256 px scale


def slices() -> list[np.ndarray]:
    import dipy.data
    import nibabel as nib

    path = Path(dipy.data.__file__).parent / "files" / "S0_10slices.nii.gz"
    volume = np.asarray(nib.load(str(path)).dataobj, dtype=np.float32)[..., 0]
    return [volume[:, :, k] for k in range(volume.shape[2])]


def session(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def quantised_models(fp32: Path, calibration: list[np.ndarray], folder: Path) -> dict[str, Path]:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{"input": x} for x in calibration])

        def get_next(self):
            return next(self.items, None)

    prepared = folder / "prepared.onnx"
    quant_pre_process(str(fp32), str(prepared))
    out = {"ort int8 static (all ops)": folder / "static_all.onnx",
           "ort int8 static (Conv/MatMul/Gemm)": folder / "static_mm.onnx",
           "ort int8 dynamic": folder / "dynamic.onnx"}
    common = dict(quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
                  weight_type=QuantType.QInt8)
    quantize_static(str(prepared), str(out["ort int8 static (all ops)"]), Reader(), **common)
    quantize_static(str(prepared), str(out["ort int8 static (Conv/MatMul/Gemm)"]), Reader(),
                    op_types_to_quantize=["Conv", "MatMul", "Gemm"], **common)
    quantize_dynamic(str(prepared), str(out["ort int8 dynamic"]), weight_type=QuantType.QInt8)
    return out


def masks(predictor, encode, images, shapes) -> tuple[list, list]:
    """(embeddings, masks) of every scored slice: three boxes each."""
    embeddings, result = [], []
    for (tensor, new_size), shape in zip(images, shapes):
        embedding = encode(tensor)
        embeddings.append(embedding.float().numpy())
        for box in BOXES:
            logits, _ = predictor.decode(embedding.float(), new_size, shape, box=np.array(box, np.float32))
            result.append(logits > 0)
    return embeddings, result


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 2.0 * int((a & b).sum()) / total if total else 1.0


def timed(encode, images, repeats: int) -> tuple[float, float]:
    """Median CPU and wall seconds per slice over `repeats` passes."""
    cpu, wall = [], []
    for _ in range(repeats):
        c, w = time.process_time(), time.perf_counter()
        for tensor, _ in images:
            encode(tensor)
        cpu.append((time.process_time() - c) / len(images))
        wall.append((time.perf_counter() - w) / len(images))
    return statistics.median(cpu), statistics.median(wall)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bf16", action="store_true", help="also time torch bf16 autocast (slow without CPU bf16)")
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)

    import torch

    from segkit.models.prompt import PromptPredictor
    from segkit.models.sam import checkpoint_path, load_with_encoder
    from segkit.runtime.onnx_backend import export_onnx
    from segkit.tasks.medsam.preprocess import preprocess_slice

    torch.set_num_threads(args.threads)
    net, _ = load_with_encoder("litemedsam", checkpoint_path("litemedsam"), "cpu", "torch")
    predictor = PromptPredictor(net, lambda x: x, 256)
    all_slices = slices()
    prepared = [preprocess_slice(s) for s in all_slices]
    calibration = [np.ascontiguousarray(p[0], np.float32) for p in prepared[:5]]
    scored = [(np.ascontiguousarray(p[0], np.float32), p[1]) for p in prepared[5:]]
    shapes = [s.shape for s in all_slices[5:]]

    with tempfile.TemporaryDirectory(prefix="segkit-precision-") as tmp:
        folder = Path(tmp)
        fp32 = folder / "fp32.onnx"
        export_onnx(net.image_encoder.eval(), torch.zeros(1, 3, 256, 256), fp32)
        started = time.perf_counter()
        models = {"ort fp32": fp32, **quantised_models(fp32, calibration, folder)}
        print(f"quantisation (3 models, calibration on 5 slices): {time.perf_counter() - started:.0f} s", flush=True)
        encoders = {}
        for name, path in models.items():
            s = session(path, args.threads)
            encoders[name] = lambda x, s=s: torch.from_numpy(s.run(None, {"input": x})[0])

        def eager(x):
            with torch.inference_mode():
                return net.image_encoder(torch.from_numpy(x))

        def eager_bf16(x):
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
                return net.image_encoder(torch.from_numpy(x)).float()

        encoders["torch eager fp32"] = eager
        if args.bf16:
            encoders["torch eager bf16 (autocast)"] = eager_bf16

        reference_embeddings, reference_masks = masks(predictor, encoders["ort fp32"], scored, shapes)
        print(f"CPU: {platform.processor() or platform.machine()}; torch CPU capability "
              f"{torch.backends.cpu.get_cpu_capability()}, mkldnn bf16 "
              f"{torch.ops.mkldnn._is_mkldnn_bf16_supported()}; {args.threads} thread(s); "
              f"load average at start {os.getloadavg()[0]:.1f}")
        print("| variant | CPU s / slice | wall s / slice | x ORT fp32 (CPU) | max abs diff of embeddings | mask Dice vs fp32: mean (min) |")
        print("|---|---|---|---|---|---|")
        base = None
        for name, encode in encoders.items():
            repeats = 1 if "bf16" in name else args.repeats
            cpu, wall = timed(encode, scored[:3] if "bf16" in name else scored, repeats)
            base = base or cpu
            embeddings, result = masks(predictor, encode, scored, shapes)
            diff = max(float(np.abs(a - b).max()) for a, b in zip(embeddings, reference_embeddings))
            dices = [dice(a, b) for a, b in zip(result, reference_masks)]
            print(f"| {name} | {cpu:.2f} | {wall:.2f} | {base / cpu:.2f} | {diff:.3g} | "
                  f"{np.mean(dices):.3f} ({min(dices):.3f}) |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
