"""Run a torch module's forward through ONNX Runtime, exported once, checked, and cached on disk.

A cached export is named by everything that decides its graph (`OnnxExport`: the source weights'
sha256, the input shape, the precision, the opset and the exporting torch version) and has a
manifest beside it (`<file>.json`) that repeats them, records the file's own sha256 and how far
ONNX Runtime's outputs were from the module's at export (max abs difference per output, on a
seeded random input). An export whose outputs disagree beyond the tolerance is not kept.
Both files are written atomically (segkit.io.writer): a reader sees either no file or a complete
one. Processes that race both export, and the last rename wins with an identical graph; a file
that fails to load, or does not match its manifest, is exported again.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import numpy as np

from segkit.errors import SegkitError

log = logging.getLogger(__name__)

BACKENDS = ("auto", "onnx", "torch")
ONNX_OPSET = 17
# |onnx - torch| <= ATOL + RTOL * max|torch| per output: float32 reorderings stay far below it (1e-7 to 1e-4
# measured on the LiteMedSAM, SAM 2.1 and nnU-Net networks); a wrong graph does not
EXPORT_ATOL = 1e-3
EXPORT_RTOL = 1e-3


class OnnxMismatchError(SegkitError):
    """The export's outputs differ from the module's: the graph is not the network."""


@dataclass(frozen=True)
class OnnxExport:
    """What an export is keyed by: its file name holds each part, its manifest repeats them."""

    name: str  # what is exported, e.g. "litemedsam_encoder"
    source_sha256: str  # of the weights it was exported from
    input_shape: tuple[int, ...]  # the example's; with dynamic_batch, any batch size runs
    precision: str = "fp32"
    dynamic_batch: bool = False
    dynamic_spatial: bool = False  # every axis after the channels may vary (a whole-volume network)

    @property
    def filename(self) -> str:
        spatial = ["S" if self.dynamic_spatial else str(n) for n in self.input_shape[2:]]
        batch = "B" if self.dynamic_batch else str(self.input_shape[0])
        shape = "x".join([batch, *[str(n) for n in self.input_shape[1:2]], *spatial])
        torch_version = version("torch").split("+")[0]
        return f"{self.name}_{self.source_sha256[:16]}_{shape}_{self.precision}_opset{ONNX_OPSET}_torch{torch_version}.onnx"

    def manifest(self) -> dict:
        import onnxruntime  # the distribution is onnxruntime or onnxruntime-gpu: ask the module

        return {"name": self.name, "source_sha256": self.source_sha256, "input_shape": list(self.input_shape),
                "precision": self.precision,
                "dynamic_batch": self.dynamic_batch, "dynamic_spatial": self.dynamic_spatial,
                "opset": ONNX_OPSET, "torch": version("torch"),
                "onnxruntime": onnxruntime.__version__}


def choose_backend(backend: str, device: str) -> str:
    """auto -> ONNX Runtime on the CPU (never slower than eager in benchmarks/README.md), torch on GPUs.

    On a GPU, torch eager is already fast and avoids coupling segkit to onnxruntime-gpu's
    CUDA/cuDNN versions; `onnx` can still be asked for explicitly there.
    """
    if backend not in BACKENDS:
        raise SegkitError(f"--backend {backend!r} is not one of {', '.join(BACKENDS)}")
    if backend == "onnx" and not onnxruntime_available():
        raise SegkitError("--backend onnx needs the onnxruntime package; install it or use --backend torch")
    if backend == "onnx" and device == "mps":
        raise SegkitError("--backend onnx cannot run on --device mps; use --backend torch")
    if backend == "auto":
        return "onnx" if device == "cpu" and onnxruntime_available() else "torch"
    return backend


def default_cache_dir(kind: str) -> Path:
    """SEGKIT_HOME/cache/onnx/<kind>: for networks whose weights sit in a user's folder, not written to."""
    from segkit.registry.paths import cache_home

    return cache_home() / "cache" / "onnx" / kind


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def export_onnx(module, example_input, path: Path, output_names=("output",), dynamic_batch: bool = False,
                dynamic_spatial: bool = False) -> None:
    """Export `module` (eval mode) for the example's input shape, atomically, to `path`; with
    dynamic_batch, the first axis of the input and of every output may vary; with dynamic_spatial,
    every axis after the channels (each tensor's own: outputs may be at other resolutions).

    torch 2.x keeps the TorchScript-based exporter behind ``dynamo=False``; it works offline and
    needs no onnxscript (not installed here). TinyViT reads the batch size from the input as a
    Python int while tracing, so its graph is fixed to the example's shape (batch 1).
    """
    import warnings

    import torch

    from segkit.io.writer import atomic_output

    if isinstance(example_input, np.ndarray):
        example_input = torch.from_numpy(example_input)
    # The tracer warns about Python-int shape reads that are fixed for a fixed input size.
    with atomic_output(path) as tmp, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, (example_input,), str(tmp), dynamo=False, opset_version=ONNX_OPSET,
            input_names=["input"], output_names=list(output_names),
            dynamic_axes=_dynamic_axes(["input", *output_names], example_input.ndim, dynamic_batch, dynamic_spatial),
        )


def _dynamic_axes(names, ndim: int, batch: bool, spatial: bool) -> dict | None:
    axes = ([0] if batch else []) + (list(range(2, ndim)) if spatial else [])
    return {name: {axis: f"{name}_{axis}" for axis in axes} for name in names} if axes else None


def onnx_providers(device: str) -> list[str]:
    """CUDA first when the device is a GPU and this onnxruntime build has the provider, else CPU."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device.startswith("cuda") and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class OnnxModule:
    """Callable numpy-in, numpy-out wrapper around an ONNX Runtime session of a cached export."""

    def __init__(self, path: Path, device: str = "cpu", manifest: dict | None = None):
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
        self.manifest = manifest or {}

    def run_all(self, array: np.ndarray) -> list[np.ndarray]:
        return self.session.run(None, {self.input_name: np.ascontiguousarray(array, dtype=np.float32)})

    def __call__(self, array: np.ndarray) -> np.ndarray:
        return self.run_all(array)[0]


def cached_onnx_module(module_factory, export: OnnxExport, folder: Path, device: str = "cpu",
                       output_names=("output",)) -> OnnxModule:
    """The checked export of `module_factory()` in `folder`, exporting and checking it first when
    it is absent, damaged, or not the file its manifest describes."""
    path = Path(folder) / export.filename
    module = _load_cached(path, export, device)
    if module is not None:
        return module
    net = module_factory()
    example = validation_input(export.input_shape)
    export_onnx(net, example, path, output_names, export.dynamic_batch, export.dynamic_spatial)
    examples = _validation_examples(example, export)
    checker = OnnxModule(path, "cpu")
    try:
        differences = np.max([_compare_with_module(net, checker, x) for x in examples], axis=0).tolist()
    except OnnxMismatchError:
        path.unlink(missing_ok=True)
        raise
    manifest = {**export.manifest(), "onnx_sha256": _sha256(path), "validation": {
        "input": "standard normal, seed 0", "max_abs_diff": differences,
        "tolerance": f"{EXPORT_ATOL} + {EXPORT_RTOL} * max|torch output|"}}
    from segkit.io.writer import atomic_write_text

    atomic_write_text(_manifest_path(path), json.dumps(manifest, indent=2) + "\n")
    log.info("exported %s (max |onnx - torch| %s)", path.name, differences)
    if device == "cpu":  # the checking session is the one to run
        checker.manifest = manifest
        return checker
    return OnnxModule(path, device, manifest)


def cached_export(module_factory, export, folder: Path, device: str, output_names=("output",)):
    """cached_onnx_module in `folder`, or in a temporary folder for this process when `folder` is
    read-only (an installed model's folder may be)."""
    try:
        return cached_onnx_module(module_factory, export, folder, device, output_names)
    except OSError as exc:
        log.warning("cannot cache the ONNX export in %s (%s); exporting to a temporary folder", folder, exc)
        scratch = tempfile.TemporaryDirectory(prefix="segkit-onnx-")  # removed when the module goes
        module = cached_onnx_module(module_factory, export, Path(scratch.name), device, output_names)
        module.scratch = scratch
        return module


def onnx_or_torch(make_onnx, make_torch, backend: str):
    """The ONNX backend; with --backend auto, torch when the export does not match the network
    (an explicit --backend onnx reports it instead)."""
    try:
        return make_onnx()
    except OnnxMismatchError as exc:
        if backend != "auto":
            raise
        log.warning("%s; using torch", exc)
        return make_torch()


def _validation_examples(example: np.ndarray, export: OnnxExport) -> list[np.ndarray]:
    """A dynamic axis is checked at two sizes: a size the tracer baked in would fail the second."""
    examples = [example]
    if export.dynamic_batch and example.shape[0] > 1:
        examples.append(example[:1])
    if export.dynamic_spatial:
        examples.append(np.concatenate([example, example], axis=2))  # the first spatial axis doubled
    return examples


def validation_input(shape) -> np.ndarray:
    """Network inputs here are normalised images: a seeded standard normal exercises every path."""
    return np.random.default_rng(0).standard_normal(shape).astype(np.float32)


def _load_cached(path: Path, export: OnnxExport, device: str) -> OnnxModule | None:
    manifest_path = _manifest_path(path)
    if not (path.exists() and manifest_path.exists()):
        return None
    try:
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("source_sha256") != export.source_sha256 or manifest.get("onnx_sha256") != _sha256(path):
            return None
        return OnnxModule(path, device, manifest)
    except Exception:  # noqa: BLE001 - a damaged cache file is rebuilt rather than reported
        return None


def _compare_with_module(net, checker: OnnxModule, example: np.ndarray) -> list[float]:
    """Max |onnx - torch| per output on `example`; OnnxMismatchError beyond the tolerance."""
    import torch

    with torch.inference_mode():
        expected = net(torch.from_numpy(example))
    expected = [t.float().numpy() for t in (expected if isinstance(expected, (tuple, list)) else [expected])]
    got = checker.run_all(example)
    differences = [float(np.max(np.abs(g - e))) for g, e in zip(got, expected)]
    for diff, reference in zip(differences, expected):
        if not diff <= EXPORT_ATOL + EXPORT_RTOL * float(np.max(np.abs(reference))):
            raise OnnxMismatchError(f"{checker.path.name}: the ONNX export differs from the network by {diff:.3g} "
                                    f"(max abs); use --backend torch")
    return differences


def _manifest_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def _sha256(path: Path) -> str:
    from segkit.registry.fetch import sha256_cached

    return sha256_cached(path)
