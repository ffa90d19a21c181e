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


@pytest.fixture(scope="module")
def propagator():
    import torch

    from segkit.tasks.lpm_nnsam2.sam2_propagator import Sam2Propagator, build_recording_predictor

    torch.manual_seed(0)
    predictor = build_recording_predictor("configs/sam2.1/sam2.1_hiera_t.yaml", None, "cpu", overrides=TINY_OVERRIDES)
    return Sam2Propagator(predictor, "cpu")


@pytest.mark.slow
def test_sam2_records_iou_per_frame_and_object_and_outputs_land_in_the_target_grid(propagator):
    from segkit.tasks.lpm_nnsam2.fewshot import Support, pseudo_label
    from segkit.tasks.lpm_nnsam2.sequence import SUPPORT, TARGET

    rng = np.random.default_rng(0)
    support_frames = rng.integers(0, 255, (3, 256, 256)).astype(np.uint8)
    support_labels = np.zeros((3, 256, 256), np.uint8)
    support_labels[1, 60:120, 40:100] = 1
    support_labels[1, 60:120, 150:210] = 2
    support = Support(support_frames, support_labels, [1], "ct")
    # target stored LAS (first axis toward Left), 3 axial slices
    data = rng.normal(40, 30, (40, 32, 3)).astype(np.float32)
    data[:2] = -1000.0
    affine = np.diag([-1.5, 1.5, 4.0, 1.0])
    target = Image(data=data, affine=affine, path="target.nii.gz")
    result = pseudo_label(target, support, propagator)
    propagation = result.propagation
    assert [(f.source, f.slice) for f in propagation.sequence] == [(TARGET, 0), (SUPPORT, 1), (TARGET, 1), (TARGET, 2)]
    for (position, obj), value in propagation.sequence_scores.items():
        if propagation.sequence[position].is_support:
            assert value == 1.0  # mask-prompted frames count as 1
        else:
            assert 0.0 < value <= 1.0  # recorded from the IoU head (never left at the default 0)
    assert propagation.scores.shape == (3, 2) and (propagation.scores > 0).all()
    assert result.labels.shape == data.shape and result.labels.dtype == np.uint8
    assert set(np.unique(result.labels)) <= {0, 1, 2}
    rows = result.table_rows()
    assert [r["file_index"] for r in rows] == [0, 1, 2] and all(r["file_axis"] == 2 for r in rows)


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
