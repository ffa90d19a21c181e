"""Cached ONNX exports: keyed, checked against the network at export, described by a manifest."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from segkit.runtime.onnx_backend import (
    ONNX_OPSET, OnnxExport, OnnxMismatchError, cached_onnx_module, onnx_or_torch, validation_input,
)

SHAPE = (1, 2, 16, 16)


class TinyNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(2, 3, 3, padding=1)

    def forward(self, x):
        y = torch.relu(self.conv(x))
        return y, y.mean(dim=(2, 3))


class TracedDifferently(TinyNet):
    """Behaves differently while exported, as data-dependent Python control flow frozen by the tracer does."""

    def forward(self, x):
        y, pooled = super().forward(x)
        return (y + 1.0 if torch.onnx.is_in_onnx_export() else y), pooled


def export_of(net_sha: str = "ab" * 32) -> OnnxExport:
    return OnnxExport("tiny", net_sha, SHAPE)


def test_export_is_checked_and_described_by_its_manifest(tmp_path):
    module = cached_onnx_module(lambda: TinyNet().eval(), export_of(), tmp_path, output_names=("map", "pooled"))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([module.path.name, module.path.name + ".json"])
    assert module.path.name.startswith("tiny_abababababababab_1x2x16x16_fp32_opset17_torch")
    manifest = json.loads((tmp_path / (module.path.name + ".json")).read_text())
    assert manifest["source_sha256"] == "ab" * 32 and manifest["precision"] == "fp32"
    assert manifest["opset"] == ONNX_OPSET and manifest["input_shape"] == list(SHAPE)
    assert manifest["torch"] == torch.__version__.split("+")[0] and manifest["onnxruntime"]
    assert len(manifest["validation"]["max_abs_diff"]) == 2 and max(manifest["validation"]["max_abs_diff"]) < 1e-5
    x = np.random.default_rng(1).standard_normal(SHAPE).astype(np.float32)
    expected = TinyNet().eval()(torch.from_numpy(x))
    got = module.run_all(x)
    assert np.abs(got[0] - expected[0].detach().numpy()).max() < 1e-5
    assert np.abs(got[1] - expected[1].detach().numpy()).max() < 1e-5


def test_cached_export_is_reused_and_a_file_unlike_its_manifest_is_redone(tmp_path):
    first = cached_onnx_module(lambda: TinyNet().eval(), export_of(), tmp_path)
    stamp = first.path.stat().st_mtime_ns

    def no_export():
        raise AssertionError("exported again although the cache is valid")

    assert cached_onnx_module(no_export, export_of(), tmp_path).path.stat().st_mtime_ns == stamp
    manifest_path = first.path.with_name(first.path.name + ".json")
    manifest = json.loads(manifest_path.read_text())
    manifest_path.write_text(json.dumps({**manifest, "onnx_sha256": "0" * 64}))  # the file is not the one checked
    redone = cached_onnx_module(lambda: TinyNet().eval(), export_of(), tmp_path)
    assert json.loads(manifest_path.read_text())["onnx_sha256"] != "0" * 64
    assert redone.path == first.path
    other = cached_onnx_module(lambda: TinyNet().eval(), export_of("cd" * 32), tmp_path)
    assert other.path != first.path  # other weights, another file


def test_an_export_unlike_the_network_is_refused_and_auto_falls_back_to_torch(tmp_path):
    with pytest.raises(OnnxMismatchError, match="differs from the network by 1"):
        cached_onnx_module(lambda: TracedDifferently().eval(), export_of(), tmp_path)
    assert not any(p.suffix == ".onnx" for p in tmp_path.iterdir())  # nothing kept to be loaded next time

    def make_onnx():
        return cached_onnx_module(lambda: TracedDifferently().eval(), export_of(), tmp_path)

    assert onnx_or_torch(make_onnx, lambda: "torch", "auto") == "torch"
    with pytest.raises(OnnxMismatchError):
        onnx_or_torch(make_onnx, lambda: "torch", "onnx")


def test_validation_input_is_seeded():
    assert np.array_equal(validation_input(SHAPE), validation_input(SHAPE))
