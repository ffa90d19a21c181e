"""The SAM2 propagator with a real SAM 2.1 Hiera-tiny network from sam2's own config (random
weights, 128 px: the real checkpoint cannot be downloaded here), and the sam2 hook points."""

from __future__ import annotations

import importlib.metadata
import inspect

import numpy as np
import pytest

from segkit.io.image import Image
from segkit.tasks.lpm_nnsam2.sam2_propagator import SAM2_VERSION

TINY_OVERRIDES = [
    "++model.image_size=128",
    "++model.memory_attention.layer.self_attention.feat_sizes=[8,8]",
    "++model.memory_attention.layer.cross_attention.feat_sizes=[8,8]",
]


def test_sam2_hook_points_are_where_the_recorder_expects_them():
    """Fails loudly when a sam2 release moves what RecordingVideoPredictor hooks (pinned: 1.1.0)."""
    from sam2.modeling.sam2_base import SAM2Base
    from sam2.sam2_video_predictor import SAM2VideoPredictor

    assert importlib.metadata.version("sam2") == SAM2_VERSION, "re-check the hooks in sam2_propagator.py, then bump SAM2_VERSION"
    params = list(inspect.signature(SAM2VideoPredictor._run_single_frame_inference).parameters)
    assert params[:4] == ["self", "inference_state", "output_dict", "frame_idx"]
    source = inspect.getsource(SAM2Base._track_step)
    assert "return current_out, sam_outputs, high_res_features, pix_feat" in source
    heads = inspect.getsource(SAM2Base._forward_sam_heads)
    returned = heads[heads.rindex("return (") :]
    assert [line.strip(" ,") for line in returned.splitlines()[1:4]] == ["low_res_multimasks", "high_res_multimasks", "ious"]
    assert "obj_idx_to_id" in inspect.getsource(SAM2VideoPredictor.init_state)
    features = inspect.getsource(SAM2VideoPredictor._get_image_feature)
    assert list(inspect.signature(SAM2VideoPredictor._get_image_feature).parameters) == [
        "self", "inference_state", "frame_idx", "batch_size"]
    assert 'inference_state["cached_features"].get(' in features
    assert 'inference_state["cached_features"] = {frame_idx: (image, backbone_out)}' in features


@pytest.fixture(scope="module")
def propagator():
    import torch

    from segkit.tasks.lpm_nnsam2.sam2_propagator import Sam2Propagator, build_recording_predictor

    torch.manual_seed(0)
    predictor = build_recording_predictor("configs/sam2.1/sam2.1_hiera_t.yaml", None, "cpu", overrides=TINY_OVERRIDES)
    return Sam2Propagator(predictor, "cpu")


def support_and_target():
    """A support subject with its middle slice annotated, and another subject placed elsewhere,
    stored LAS (first axis toward Left), 3 axial slices."""
    from segkit.phantoms.lumbar import Pose, make_lumbar_phantom, single_slice_support
    from segkit.tasks.lpm_nnsam2.fewshot import prepare_support

    support = make_lumbar_phantom(0, shape=(40, 32, 3), spacing=(3.0, 3.0, 4.0))
    mask = single_slice_support(support.labels, 1)
    prepared = prepare_support(Image(support.ct, support.affine, "s.nii.gz"), Image(mask, support.affine, "m.nii.gz"), [1])
    phantom = make_lumbar_phantom(5, shape=(40, 32, 3), spacing=(3.0, 3.0, 4.0), pose=Pose((6.0, -6.0), 5.0, 1.1))
    data = phantom.ct[::-1].copy()
    affine = phantom.affine.copy()
    affine[:, 0] = -affine[:, 0]
    affine[0, 3] = phantom.affine[0, 3] + phantom.affine[0, 0] * (data.shape[0] - 1)
    target = Image(data=data, affine=affine, path="target.nii.gz")
    return prepared, target


@pytest.mark.slow
def test_sam2_records_iou_per_frame_and_object_and_outputs_land_in_the_target_grid(propagator):
    from segkit.tasks.lpm_nnsam2.fewshot import pseudo_label
    from segkit.tasks.lpm_nnsam2.sequence import SUPPORT, TARGET

    prepared, target = support_and_target()
    result = pseudo_label(target, prepared, propagator)
    propagation = result.propagation
    # upstream's interleaving: every target frame follows a mask-prompted support frame
    assert [(f.source, f.slice) for f in propagation.sequence] == [
        (SUPPORT, 0), (TARGET, 0), (SUPPORT, 1), (TARGET, 1), (SUPPORT, 2), (TARGET, 2)]
    for (position, obj), value in propagation.sequence_scores.items():
        if propagation.sequence[position].is_support:
            assert value == 1.0  # mask-prompted frames count as 1
        else:
            assert 0.0 < value <= 1.0  # recorded from the IoU head (never left at the default 0)
    assert propagation.scores.shape == (3, 2) and (propagation.scores > 0).all()
    assert result.labels.shape == target.data.shape and result.labels.dtype == np.uint8
    assert set(np.unique(result.labels)) <= {0, 1, 2}
    rows = result.table_rows()
    assert [r["file_index"] for r in rows] == [0, 1, 2] and all(r["file_axis"] == 2 for r in rows)
    assert {"agree_lpm_right", "area_jump_lpm_left", "centroid_jump_mm_lpm_right", "failed_lpm_left"} <= set(rows[0])


@pytest.mark.slow
def test_each_frame_is_encoded_once_with_the_same_result(propagator):
    """sam2 alone encodes each support frame three times (prompted, then consolidated per object);
    the kept features give the same propagation from one encoder call per frame."""
    import types

    from sam2.modeling.sam2_base import SAM2Base
    from sam2.sam2_video_predictor import SAM2VideoPredictor

    from segkit.tasks.lpm_nnsam2.fewshot import pseudo_label

    predictor = propagator.predictor
    calls = []

    def counted(image):
        calls.append(1)
        return SAM2Base.forward_image(predictor, image)

    prepared, target = support_and_target()
    predictor.segkit_image_features = counted
    try:
        kept = pseudo_label(target, prepared, propagator)
        kept_calls = len(calls)
        predictor._get_image_feature = types.MethodType(SAM2VideoPredictor._get_image_feature, predictor)
        calls.clear()
        plain = pseudo_label(target, prepared, propagator)
    finally:
        predictor.segkit_image_features = None
        predictor.__dict__.pop("_get_image_feature", None)
    n_frames = 2 * target.data.shape[2]
    assert (kept_calls, len(calls)) == (n_frames, 2 * n_frames)
    assert np.array_equal(kept.labels, plain.labels)
    assert np.array_equal(kept.propagation.scores, plain.propagation.scores)


@pytest.mark.slow
def test_onnx_image_features_propagate_as_torch_does(tmp_path):
    """--backend onnx: SAM 2.1's image features from a checked export cached beside the checkpoint."""
    import json

    import torch

    from segkit.tasks.lpm_nnsam2.fewshot import pseudo_label
    from segkit.tasks.lpm_nnsam2.sam2_propagator import Sam2Propagator, build_recording_predictor

    config = "configs/sam2.1/sam2.1_hiera_t.yaml"
    torch.manual_seed(0)
    checkpoint = tmp_path / "sam2.1_hiera_tiny.pt"
    torch.save({"model": build_recording_predictor(config, None, "cpu", overrides=TINY_OVERRIDES).state_dict()}, checkpoint)
    eager, onnx = (Sam2Propagator.from_checkpoint(checkpoint, config, "cpu", backend, TINY_OVERRIDES)
                   for backend in ("torch", "onnx"))
    assert (eager.backend, onnx.backend) == ("torch", "onnx")
    exported = onnx.predictor.segkit_image_features.onnx_path
    assert exported.parent == tmp_path / "onnx" and exported.name.startswith("sam2.1_hiera_tiny_image_features_")
    manifest = json.loads(exported.with_name(exported.name + ".json").read_text())
    assert len(manifest["validation"]["max_abs_diff"]) == 6 and max(manifest["validation"]["max_abs_diff"]) < 1e-3
    prepared, target = support_and_target()
    by_torch, by_onnx = (pseudo_label(target, prepared, p) for p in (eager, onnx))
    assert by_onnx.propagation.info["backend"] == "onnx"
    assert np.mean(by_torch.labels == by_onnx.labels) >= 0.99
    np.testing.assert_allclose(by_onnx.propagation.scores, by_torch.propagation.scores, atol=1e-3)


@pytest.mark.slow
def test_a_sam2_checkpoint_of_another_size_or_a_corrupt_one_is_one_clear_error(tmp_path):
    import torch

    from segkit.errors import SegkitError
    from segkit.tasks.lpm_nnsam2.sam2_propagator import Sam2Propagator, build_recording_predictor

    small = tmp_path / "sam2.1_hiera_small.pt"  # SAM 2.1 small (random weights), as the checkpoint files hold it
    torch.save({"model": build_recording_predictor("configs/sam2.1/sam2.1_hiera_s.yaml", None, "cpu").state_dict()}, small)
    with pytest.raises(SegkitError, match=r"not the SAM 2.1 checkpoint sam2.1_hiera_tiny.pt .* holds 46.1 M parameters in \d+ tensors, the model built from .*sam2.1_hiera_t.yaml has 39.0 M \((Missing|Unexpected) key"):
        Sam2Propagator.from_checkpoint(small, "configs/sam2.1/sam2.1_hiera_t.yaml", device="cpu")
    corrupt = tmp_path / "sam2.1_hiera_tiny.pt"
    corrupt.write_bytes(b"\x80\x04 truncated download")
    with pytest.raises(SegkitError, match="not a readable PyTorch checkpoint|refused"):
        Sam2Propagator.from_checkpoint(corrupt, "configs/sam2.1/sam2.1_hiera_t.yaml", device="cpu")


def test_the_registry_file_name_picks_the_sam2_size(tmp_path, segkit_home):
    """A registry whose lpm_nnsam2 entry lists the large checkpoint gets sam2's large config."""
    import hashlib

    from conftest import file_entry, task_entry, write_registry
    from segkit.errors import TaskNotInstalledError
    from segkit.registry.schema import load_registry
    from segkit.registry.store import install_task
    from segkit.tasks.lpm_nnsam2.sam2_propagator import installed_sam2_checkpoint

    weights = tmp_path / "sam2.1_hiera_large.pt"
    weights.write_bytes(b"not a real checkpoint")
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    entry = task_entry(
        "lpm_nnsam2", [file_entry("sam2.1_hiera_large.pt", weights.as_uri(), digest, role="backbone")],
        framework="nnsam2", weights_published=False, weights_note="few-shot",
    )
    spec = load_registry(write_registry(tmp_path / "registry.yaml", {"lpm_nnsam2": entry})).get("lpm_nnsam2")
    with pytest.raises(TaskNotInstalledError, match="--propagator litemedsam"):
        installed_sam2_checkpoint(spec)
    install_task(spec)
    path, config = installed_sam2_checkpoint(spec)
    assert path.name == "sam2.1_hiera_large.pt" and config == "configs/sam2.1/sam2.1_hiera_l.yaml"
