"""brats_autosam2's parts, each on its own: slice selector and prompt generator (exact), blending,
input handling and normalisation, the networks' shapes and the tumour phantom."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from segkit.errors import SegkitError
from segkit.tasks.brats_autosam2.prompts import PromptSettings, make_prompts, padded_box
from segkit.tasks.brats_autosam2.slices import informative_slices, positional_slices, slice_count


# ------------------------------------------------------------------------------ slice selector


def test_slice_count_is_floor_with_at_least_one():
    assert [slice_count(40, p) for p in (0, 0.01, 0.1, 0.3, 0.6)] == [0, 1, 4, 12, 24]


def test_positional_few_slices_centre_first():
    assert positional_slices(40, 0.0) == []
    assert positional_slices(40, 0.01) == [20]
    assert positional_slices(40, 0.1) == [4, 12, 20, 28]
    assert positional_slices(50, 0.1) == [5, 15, 25, 35, 45]


def test_positional_bands_for_many_slices():
    # n = 30: 15 in [0.4, 0.6), 4 in [0.2, 0.4), 5 in [0.6, 0.8), 3 in [0, 0.2), 3 in [0.8, 1)
    expected = [3, 10, 16, 22, 27, 32, 37, 40, 42, 43, 44, 46, 47, 48, 50, 51, 52, 54, 55, 56, 58, 59,
                62, 66, 70, 74, 78, 83, 90, 96]
    assert positional_slices(100, 0.3) == expected


def test_positional_drops_duplicates_on_short_volumes():
    chosen = positional_slices(12, 0.6)  # n = 7 on 12 slices
    assert chosen == sorted(set(chosen)) and len(chosen) <= 7 and all(0 <= z < 12 for z in chosen)
    assert chosen == [1, 3, 5, 6, 8, 10]


def test_informative_ranks_by_tumour_probability_ties_to_lower_index():
    probability = np.zeros((10, 4, 4))
    for z, total in {2: 3.0, 5: 7.0, 6: 3.0, 8: 1.0}.items():
        probability[z, 0, 0] = total
    assert informative_slices(probability, 0.1) == [5]
    assert informative_slices(probability, 0.3) == [2, 5, 6]  # 2 and 6 tie: both fit
    assert informative_slices(probability, 0.2) == [2, 5]  # the tie goes to the lower index
    assert informative_slices(probability, 0.6) == [2, 5, 6, 8]  # slices without tumour never chosen
    assert informative_slices(np.zeros((10, 4, 4)), 0.6) == []


# ------------------------------------------------------------------------------ prompt generator


def _two_regions() -> np.ndarray:
    probability = np.zeros((20, 20))
    probability[2:6, 2:6] = 0.8  # region A, 16 pixels
    probability[3, 4] = 0.95  # its maximum
    probability[12:14, 14:16] = 0.7  # region B, 4 pixels
    return probability


def test_positive_points_regions_first_then_diverse():
    prompts = make_prompts(_two_regions(), PromptSettings(n_positive=4, n_negative=0, min_distance=2))
    # (x, y): A's maximum, B's first maximum, then high-probability pixels at least 2 px apart
    assert prompts.points.tolist() == [[4, 3], [14, 12], [2, 2], [2, 4]]
    assert prompts.labels.tolist() == [1, 1, 1, 1]


def test_positive_points_fall_back_to_most_probable_when_none_is_far():
    prompts = make_prompts(_two_regions(), PromptSettings(n_positive=4, n_negative=0, min_distance=3))
    assert prompts.points.tolist() == [[4, 3], [14, 12], [2, 2], [3, 2]]


def test_positive_points_never_exceed_the_mask():
    probability = np.zeros((10, 10))
    probability[4:6, 4:5] = 0.9
    prompts = make_prompts(probability, PromptSettings(n_positive=10, n_negative=0))
    assert prompts.points.tolist() == [[4, 4], [4, 5]]


def test_default_counts_are_ten_positive_three_negative():
    probability = np.zeros((40, 40))
    probability[10:25, 12:30] = np.linspace(0.6, 0.9, 18)[None, :]
    prompts = make_prompts(probability)
    assert prompts.n_positive == 10 and int((prompts.labels == 0).sum()) == 3
    assert prompts.labels.tolist() == [1] * 10 + [0] * 3


def test_negative_points_from_the_ring_at_three_angles():
    probability = np.zeros((20, 20))
    probability[8:12, 8:12] = 0.9
    prompts = make_prompts(probability, PromptSettings(n_positive=1, n_negative=3, ring_inner=1, ring_outer=2))
    negatives = prompts.points[prompts.labels == 0].tolist()
    # around the centroid (9.5, 9.5): angle 0 -> (row 9, col 13); 120 deg -> (13, 7); 240 deg -> (6, 7)
    assert negatives == [[13, 9], [7, 13], [7, 6]]


def test_box_padding_min_five_pixels_or_ten_percent_clipped():
    small = np.zeros((20, 20), dtype=bool)
    small[8:12, 8:12] = True
    assert padded_box(small, PromptSettings()) == (3, 3, 16, 16)
    large = np.zeros((100, 100), dtype=bool)
    large[30:90, 20:50] = True  # 60 rows -> pad 6; 30 columns -> pad 5
    assert padded_box(large, PromptSettings()) == (15, 24, 54, 95)
    corner = np.zeros((20, 20), dtype=bool)
    corner[0:3, 17:20] = True
    assert padded_box(corner, PromptSettings()) == (12, 0, 19, 7)


def test_no_tumour_no_prompts():
    assert make_prompts(np.full((8, 8), 0.5)) is None  # threshold is strict


# ------------------------------------------------------------------------------ blending


def test_blend_on_processed_slice_matches_the_formula():
    torch = pytest.importorskip("torch")
    from segkit.tasks.brats_autosam2.blend import blend_volume

    unet = torch.tensor([0.4, 0.3, 0.2, 0.1]).reshape(4, 1, 1, 1).repeat(1, 3, 1, 1)
    sam = {1: torch.tensor([[0.8]])}
    out = blend_volume(unet, sam, bg_blend=0.25, tumor_blend=0.75)
    shares = np.array([0.3, 0.2, 0.1]) / 0.6
    expected = np.array([0.25 * 0.4 + 0.75 * 0.2, *(0.75 * np.array([0.3, 0.2, 0.1]) + 0.25 * 0.8 * shares)])
    expected /= expected.sum()
    assert np.allclose(out[:, 1, 0, 0].numpy(), expected)
    assert torch.equal(out[:, 0], unet[:, 0]) and torch.equal(out[:, 2], unet[:, 2])  # outside the processed range


def test_blend_interpolates_between_processed_slices():
    torch = pytest.importorskip("torch")
    from segkit.tasks.brats_autosam2.blend import blend_volume

    unet = torch.tensor([0.5, 0.5, 0.0, 0.0]).reshape(4, 1, 1, 1).repeat(1, 5, 1, 1)
    out = blend_volume(unet, {0: torch.tensor([[1.0]]), 4: torch.tensor([[0.0]])}, 0.5, 0.5)
    # slice 1 gets SAM foreground 0.75: background 0.5*0.5 + 0.5*0.25, NCR 0.5*0.5 + 0.5*0.75
    assert np.allclose(out[:2, 1, 0, 0].numpy(), [0.375, 0.625])
    kept = blend_volume(unet, {0: torch.tensor([[1.0]]), 4: torch.tensor([[0.0]])}, 0.5, 0.5, interpolate=False)
    assert torch.equal(kept[:, 1], unet[:, 1])


# ------------------------------------------------------------------------------ inputs


def test_normalise_contrast_zscore_then_percentile_clip():
    from segkit.tasks.brats_autosam2.inputs import normalise_contrast

    rng = np.random.default_rng(0)
    image = np.zeros((20, 20, 20))
    image[2:18, 2:18, 2:18] = rng.normal(100, 10, (16, 16, 16))
    image[5, 5, 5] = 1000  # an outlier, clipped
    out = normalise_contrast(image)
    inside = image > 0
    z = (image[inside] - image[inside].mean()) / image[inside].std()
    assert out[~inside].max() == 0 and out[~inside].min() == 0
    assert np.isclose(out[inside].max(), np.percentile(z, 99)) and np.isclose(out[inside].min(), np.percentile(z, 1))
    middle = (z > np.percentile(z, 1)) & (z < np.percentile(z, 99))
    assert np.allclose(out[inside][middle], z[middle], atol=1e-5)


def test_case_folder_and_loose_files(tmp_path):
    from segkit.tasks.brats_autosam2.inputs import group_cases

    case = tmp_path / "BraTS-GLI-00001-000"
    case.mkdir()
    for suffix in ("t1n", "t1c", "t2w", "t2f", "seg"):
        (case / f"BraTS-GLI-00001-000-{suffix}.nii.gz").write_bytes(b"")
    loose = [tmp_path / f"{n}.nii.gz" for n in ("a", "b", "c", "d")]
    groups = group_cases([case, *loose])
    assert [p.name.split("-")[-1] for p in groups[0]] == ["t1n.nii.gz", "t1c.nii.gz", "t2w.nii.gz", "t2f.nii.gz"]
    assert groups[1] == tuple(loose)
    with pytest.raises(SegkitError, match="four contrasts"):
        group_cases(loose[:3])
    (case / "BraTS-GLI-00001-000-t2f.nii.gz").unlink()
    with pytest.raises(SegkitError, match="FLAIR"):
        group_cases([case])


# ------------------------------------------------------------------------------ networks


def test_unet_bridge_mapper_shapes_and_method_sizes():
    torch = pytest.importorskip("torch")
    from segkit.tasks.brats_autosam2.network import Bridge, MriToRgb, NetworkConfig, UNet3D

    assert NetworkConfig().channels() == (16, 32, 64, 128, 128)
    unet = UNet3D(NetworkConfig(width=0.5)).eval()
    assert unet.stem[0].kernel_size == (5, 5, 5)
    logits, mid = unet(torch.zeros(1, 4, 16, 32, 16))
    assert logits.shape == (1, 4, 16, 32, 16) and mid.shape == (1, 16, 4, 8, 4)
    bridge = Bridge(c_in=32)
    assert float(bridge.scale) == 1.5
    assert bridge(torch.randn(2, 32, 8, 8)).shape == (2, 256, 8, 8)
    rgb = MriToRgb()(torch.randn(1, 4, 12, 12))
    assert rgb.shape == (1, 3, 12, 12) and 0 < float(rgb.min()) and float(rgb.max()) < 1


def test_untrained_mapper_shows_flair_t1ce_t2_and_bridge_adds_nothing():
    torch = pytest.importorskip("torch")
    from segkit.tasks.brats_autosam2.network import Bridge, MriToRgb

    x = torch.randn(1, 4, 6, 6)
    assert torch.allclose(MriToRgb()(x), torch.sigmoid(x[:, [3, 1, 2]]), atol=1e-6)
    assert float(Bridge(c_in=32)(torch.randn(1, 32, 8, 8)).abs().max()) == 0.0


# ------------------------------------------------------------------------------ phantom


def test_tumour_phantom_follows_brats_appearance_and_varies():
    from segkit.phantoms.brats import ED, ET, NCR, make_tumour_phantom

    sizes, counts = [], set()
    for seed in range(4):
        p = make_tumour_phantom(seed, (40, 40, 32))
        normal = (p.labels == 0) & (p.images[1] > 0)
        ratio = {v: p.images[:, p.labels == v].mean(axis=1) / np.median(p.images[:, normal], axis=1) for v in (NCR, ED, ET)}
        t1, t1ce, t2, flair = 0, 1, 2, 3
        assert ratio[ET][t1ce] > 1.4 and ratio[NCR][t1ce] < ratio[ET][t1ce] / 1.5  # ring enhancement, dark core
        assert ratio[ED][flair] > 1.3 and ratio[ED][t2] > 1.3  # FLAIR/T2-bright oedema
        assert ratio[NCR][t1] < 0.8 and ratio[ET][t1] < 0.95 and ratio[ED][t1] < 1.0  # T1-dark (against the brain's median)
        assert set(np.unique(p.labels)) == {0, NCR, ED, ET}
        sizes.append(int((p.labels > 0).sum()))
        counts.add(p.n_tumours)
    assert counts == {1, 2} and max(sizes) > 1.5 * min(sizes)
    again = make_tumour_phantom(1, (40, 40, 32))
    assert np.array_equal(again.labels, make_tumour_phantom(1, (40, 40, 32)).labels)
    assert not math.isclose(float(again.images[0].sum()), float(make_tumour_phantom(2, (40, 40, 32)).images[0].sum()))


# ------------------------------------------------------------------------------ training data


def test_label_meaning_from_dataset_json():
    from segkit.tasks.brats_autosam2.dataset import DEFAULT_MAPPING, label_mapping

    msd = {"labels": {"0": "background", "1": "edema", "2": "non-enhancing tumor", "3": "enhancing tumour"}}
    assert label_mapping(msd) == {0: 0, 1: 2, 2: 1, 3: 3}
    nnunet = {"labels": {"background": 0, "NETC": 1, "SNFH": 2, "ET": 3, "RC": 4}}  # BraTS 2024 names
    assert label_mapping(nnunet) == {0: 0, 1: 1, 2: 2, 3: 3, 4: 0}
    assert label_mapping(None) == DEFAULT_MAPPING and DEFAULT_MAPPING[4] == 3  # ET was 4 before 2023
    with pytest.raises(SegkitError, match="region-based"):
        label_mapping({"labels": {"background": 0, "whole tumor": [1, 2, 3]}})
    with pytest.raises(SegkitError, match="not a BraTS sub-region"):
        label_mapping({"labels": {"background": 0, "liver": 1}})


def test_channels_put_in_t1_t1ce_t2_flair_order_by_name(tmp_path):
    import nibabel as nib

    from segkit.phantoms.brats import make_tumour_phantom
    from segkit.tasks.brats_autosam2.dataset import channel_order, discover, load_case
    from segkit.tasks.brats_autosam2.inputs import normalise_case

    msd = {"modality": {"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"}}
    assert channel_order(msd) == [1, 2, 3, 0]
    root = tmp_path / "Task01"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    msd_labels = np.array([0, 2, 1, 3], dtype=np.uint8)  # BraTS class -> MSD value (1 edema, 2 non-enhancing)
    for seed in (0, 1):
        p = make_tumour_phantom(seed, (24, 24, 16))
        for channel, contrast in zip(range(4), (3, 0, 1, 2)):  # stored FLAIR, T1, T1ce, T2
            nib.save(nib.Nifti1Image(p.images[contrast], p.affine), str(root / "imagesTr" / f"c{seed}_{channel:04d}.nii.gz"))
        nib.save(nib.Nifti1Image(msd_labels[p.labels], p.affine), str(root / "labelsTr" / f"c{seed}.nii.gz"))
    (root / "dataset.json").write_text(json.dumps({**msd, "labels": {"0": "background", "1": "edema",
                                                                      "2": "non-enhancing tumor", "3": "enhancing tumour"}}))
    cases, mapping = discover(root)
    volume, labels = load_case(cases[1], mapping)
    truth = make_tumour_phantom(1, (24, 24, 16))
    assert np.array_equal(labels, truth.labels)
    assert np.allclose(volume, normalise_case(truth.images), atol=1e-5)
