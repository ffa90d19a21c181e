"""Run a torch module's forward through ONNX Runtime, exported once and cached on disk.

The cache file is named by the caller's key (for LiteMedSAM: the weights' sha256) and written
atomically (segkit.io.writer.atomic_output), so a reader sees either no file or a complete one.
Processes that race both export and the last rename wins with an identical graph; a file that
fails to load (e.g. truncated by a crash of an older version) is re-exported.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

ONNX_OPSET = 17


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def export_onnx(module, example_input, path: Path) -> None:
    """Export `module` (eval mode) for a fixed input shape, atomically, to `path`.

    torch 2.x keeps the TorchScript-based exporter behind ``dynamo=False``; it works offline and
    needs no onnxscript (not installed here). TinyViT reads the batch size from the input as a
    Python int while tracing, so the graph is fixed to the example's shape (batch 1).
    """
    import warnings

    import torch

    from segkit.io.writer import atomic_output

    # The tracer warns about Python-int shape reads that are fixed for a fixed input size.
    with atomic_output(path) as tmp, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, (example_input,), str(tmp), dynamo=False, opset_version=ONNX_OPSET,
            input_names=["input"], output_names=["output"],
        )


def onnx_providers(device: str) -> list[str]:
    """CUDA first when the device is a GPU and this onnxruntime build has the provider, else CPU."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device.startswith("cuda") and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class OnnxModule:
    """Callable numpy-in, numpy-out wrapper around an ONNX Runtime session of a cached export."""

    def __init__(self, path: Path, device: str = "cpu"):
        import onnxruntime as ort

        from segkit.runtime.device import requested_threads

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # warnings about unused initialisers are noise for users
        # ORT's memory pattern keeps a second planned block per input shape: 656 -> 374 MiB for the
        # LiteMedSAM encoder after a few runs, with no measurable change in speed (benchmarks/README.md)
        options.enable_mem_pattern = False
        threads = requested_threads()  # cohort workers set it to their thread count; else ORT's default
        if threads is not None:
            options.intra_op_num_threads = threads
        ort.set_default_logger_severity(3)  # and the process-wide logger's notices (issue 11: one line)
        self.providers = onnx_providers(device)
        provider_options = None
        if device.startswith("cuda:") and self.providers[0] == "CUDAExecutionProvider":
            provider_options = [{"device_id": int(device.split(":")[1])}, {}]
        self.session = ort.InferenceSession(
            str(path), options, providers=self.providers, provider_options=provider_options
        )
        self.input_name = self.session.get_inputs()[0].name
        self.path = Path(path)

    def __call__(self, array: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: np.ascontiguousarray(array, dtype=np.float32)})[0]


def cached_onnx_module(module_factory, example_input, cache_path: Path, device: str = "cpu") -> OnnxModule:
    """Load the ONNX export at cache_path, exporting `module_factory()` first when absent or broken."""
    cache_path = Path(cache_path)
    if cache_path.exists():
        try:
            return OnnxModule(cache_path, device)
        except Exception:  # a damaged cache file is rebuilt rather than reported
            pass
    export_onnx(module_factory(), example_input, cache_path)
    return OnnxModule(cache_path, device)
