"""cc_fodf training: dataset discovery, batches and augmentation, the loop with best/last checkpoints
and --resume, and the model package (card, sha256, zip) that the runner loads."""

import json
import zipfile

import nibabel as nib
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from segkit.errors import SegkitError  # noqa: E402
from segkit.tasks.cc_fodf import task as cc_task  # noqa: E402
from segkit.tasks.cc_fodf import batches as cc_batches  # noqa: E402
from segkit.tasks.cc_fodf import cube as cc_cube  # noqa: E402
from segkit.tasks.cc_fodf import dataset as cc_dataset  # noqa: E402
from segkit.tasks.cc_fodf import train as cc_train  # noqa: E402

SHAPE = (18, 20, 14)


def _synthetic_peaks_subject(seed: int):
    """A block 'brain' of weak random peaks with a left-right bundle (the 'CC') of strong x peaks."""
    rng = np.random.default_rng(seed)
    peaks = np.zeros(SHAPE + (9,), dtype=np.float32)
    peaks[2:-2, 2:-2, 2:-2, :3] = rng.normal(0, 0.2, (SHAPE[0] - 4, SHAPE[1] - 4, SHAPE[2] - 4, 3))
    mask = np.zeros(SHAPE, dtype=np.uint8)
    y0, z0 = 8 + seed % 3, 6 + seed % 2
    mask[4:-4, y0 : y0 + 4, z0 : z0 + 2] = 1
    peaks[mask > 0, 0] = 1.0 + rng.normal(0, 0.05, int(mask.sum()))
    return peaks, mask


def _write(data, path, affine=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0]) if affine is None else affine), str(path))


@pytest.fixture
def peaks_dataset(tmp_path):
    root = tmp_path / "data"
    for k in range(3):
        peaks, mask = _synthetic_peaks_subject(k)
        _write(peaks, root / "imagesTr" / f"cc_{k:03d}_0000.nii.gz")
        _write(mask, root / "labelsTr" / f"cc_{k:03d}.nii.gz")
    return root


def test_discover_cases_pairs_images_labels_and_gradients(tmp_path, peaks_dataset):
    cases = cc_dataset.discover_cases(peaks_dataset)
    assert [c.name for c in cases] == ["cc_000", "cc_001", "cc_002"]
    assert all(not c.is_dwi for c in cases)
    images = peaks_dataset / "imagesTr"
    (images / "cc_001_0000.bval").write_text("0 1000\n")
    (images / "cc_001_0000.bvec").write_text("0 1\n0 0\n0 0\n")
    dwi_case = cc_dataset.discover_cases(peaks_dataset)[1]
    assert dwi_case.is_dwi and dwi_case.bvec.name == "cc_001_0000.bvec"
    (images / "cc_001_0000.bvec").unlink()
    with pytest.raises(SegkitError, match="only one of"):
        cc_dataset.discover_cases(peaks_dataset)


def test_discover_cases_reports_a_label_without_image(peaks_dataset):
    (peaks_dataset / "imagesTr" / "cc_002_0000.nii.gz").unlink()
    with pytest.raises(SegkitError, match="cc_002"):
        cc_dataset.discover_cases(peaks_dataset)
    with pytest.raises(SegkitError, match="imagesTr"):
        cc_dataset.discover_cases(peaks_dataset / "imagesTr")


def test_split_keeps_validation_apart():
    cases = [cc_dataset.Case(f"c{i}", None, None) for i in range(5)]
    train, val = cc_dataset.split_cases(cases, 0.2, [], seed=0)
    assert len(val) == 1 and len(train) == 4 and not set(c.name for c in val) & set(c.name for c in train)
    train, val = cc_dataset.split_cases(cases, 0.2, ["c3"], seed=0)
    assert [c.name for c in val] == ["c3"]
    with pytest.raises(SegkitError, match="c9"):
        cc_dataset.split_cases(cases, 0.2, ["c9"], seed=0)
    with pytest.raises(SegkitError, match="at least 2"):
        cc_dataset.split_cases(cases[:1], 0.2, [], seed=0)


@pytest.mark.parametrize("shape", [(10, 30, 16), (40, 8, 16)])
def test_fit_to_cube_round_trip_pads_and_crops_around_the_content(shape):
    volume = np.zeros(shape + (9,), dtype=np.float32)
    volume[3:7, 4:7, 5:9] = np.arange(9, dtype=np.float32) + 1
    cube, box = cc_cube.fit_to_cube(volume, 16)
    assert cube.shape == (16, 16, 16, 9)
    assert np.abs(cube).sum() == np.abs(volume).sum()  # the content survives the crop
    back = cc_cube.restore_from_cube(cube[..., 0], box, shape)
    np.testing.assert_array_equal(back, volume[..., 0])


def test_normalise_slices_zero_mean_unit_variance_per_sample():
    x = torch.randn(4, 9, 8, 8) * torch.tensor([1.0, 5.0, 0.1, 3.0]).view(4, 1, 1, 1) + 7
    y = cc_batches.normalise_slices(x)
    assert torch.allclose(y.mean(dim=(1, 2, 3)), torch.zeros(4), atol=1e-5)
    assert torch.allclose(y.std(dim=(1, 2, 3)), torch.ones(4), atol=1e-4)
    assert torch.isfinite(cc_batches.normalise_slices(torch.zeros(1, 9, 8, 8))).all()


def test_sample_batch_takes_slices_of_one_subject_along_one_axis():
    peaks, mask = _synthetic_peaks_subject(0)
    cube, box = cc_cube.fit_to_cube(peaks, 16)
    subject = cc_dataset.Subject("s", cube, cc_cube.fit_to_cube(mask, 16, box=box)[0], SHAPE)
    images, masks = cc_batches.sample_batch([subject], 6, torch.Generator().manual_seed(1))
    assert images.shape == (6, 9, 16, 16) and masks.shape == (6, 1, 16, 16)
    assert set(np.unique(masks.numpy())) <= {0.0, 1.0}


def test_augment_moves_images_and_masks_together():
    generator = torch.Generator().manual_seed(0)
    masks = torch.zeros(8, 1, 48, 48)
    masks[:, :, 16:32, 12:36] = 1
    images = torch.zeros(8, 9, 48, 48)
    images[:, 0:1] = masks * 4.0  # channel 0 carries the structure
    images[:, 1] = 1.0
    aug_images, aug_masks = cc_batches.augment(images, masks, generator)
    assert aug_images.shape == images.shape and aug_masks.shape == masks.shape
    assert set(np.unique(aug_masks.numpy())) <= {0.0, 1.0}
    assert torch.isfinite(aug_images).all()
    assert not torch.equal(aug_masks, masks)  # something moved
    inside = aug_images[:, 0][aug_masks[:, 0] > 0].mean()
    outside = aug_images[:, 0][aug_masks[:, 0] == 0].mean()
    assert inside > outside + 1.0  # the image structure followed the mask


def test_augment_is_reproducible_with_the_generator():
    images, masks = torch.randn(2, 9, 32, 32), (torch.rand(2, 1, 32, 32) > 0.5).float()
    first = cc_batches.augment(images, masks, torch.Generator().manual_seed(3))
    second = cc_batches.augment(images, masks, torch.Generator().manual_seed(3))
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])


def _config(data, out, **overrides):
    settings = dict(data=data, output=out, architecture="unet", slice_size=16, width=0.0625, epochs=2,
                    batches_per_epoch=2, batch_size=4, device="cpu")
    settings.update(overrides)
    return cc_train.TrainConfig(**settings)


def test_training_writes_checkpoints_and_a_verified_model_package(peaks_dataset, tmp_path):
    out = tmp_path / "run"
    events = []
    result = cc_train.train(_config(peaks_dataset, out), on_event=events.append)
    assert (out / "checkpoints" / "best.pt").is_file() and (out / "checkpoints" / "last.pt").is_file()
    assert [e["epoch"] for e in events if e["event"] == "epoch"] == [1, 2]
    card = json.loads((result.model_dir / "model_card.json").read_text())
    from segkit.registry.store import sha256_of

    assert card["weights"]["sha256"] == sha256_of(result.model_dir / "model.pt")
    assert card["network"]["architecture"] == "unet" and card["network"]["slice_size"] == 16
    assert len(card["training"]["train_cases"]) == 2 and len(card["training"]["validation_cases"]) == 1
    assert card["training"]["recipe"]["optimizer"] == "Adamax"
    assert 0.0 <= card["validation"]["dice_mean"] <= 1.0
    assert card["training"]["best_epoch"] == result.best_epoch
    with zipfile.ZipFile(result.zip_path) as zf:
        assert sorted(zf.namelist()) == ["model.pt", "model_card.json"]
    loaded = cc_task.load_model_package(result.model_dir)
    assert loaded.slice_size == 16
    with torch.no_grad():
        assert loaded.net(torch.randn(1, 9, 16, 16)).shape == (1, 1, 16, 16)


def test_resume_continues_from_the_last_epoch_and_refuses_mismatches(peaks_dataset, tmp_path):
    out = tmp_path / "run"
    cc_train.train(_config(peaks_dataset, out, epochs=1))
    with pytest.raises(SegkitError, match="--resume"):
        cc_train.train(_config(peaks_dataset, out, epochs=2))
    events = []
    result = cc_train.train(_config(peaks_dataset, out, epochs=2, resume=True), on_event=events.append)
    assert [e["epoch"] for e in events if e["event"] == "epoch"] == [2]
    card = json.loads((result.model_dir / "model_card.json").read_text())
    assert [h["epoch"] for h in card["training"]["history"]] == [1, 2]
    with pytest.raises(SegkitError, match="differ"):
        cc_train.train(_config(peaks_dataset, out, epochs=3, resume=True, width=0.125))
    with pytest.raises(SegkitError, match="no checkpoint"):
        cc_train.train(_config(peaks_dataset, tmp_path / "fresh", resume=True))


def test_sc2snet_training_starts_from_litemedsam(peaks_dataset, tmp_path):
    result = cc_train.train(_config(peaks_dataset, tmp_path / "sam", architecture="sc2snet", sam_grid=7, epochs=1, batches_per_epoch=1))
    card = json.loads((result.model_dir / "model_card.json").read_text())
    assert card["network"]["architecture"] == "sc2snet"
    assert "LiteMedSAM" in card["training"]["pretrained_init"]["source"]
    assert len(card["training"]["pretrained_init"]["sha256"]) == 64


def test_a_tampered_package_is_refused(peaks_dataset, tmp_path):
    result = cc_train.train(_config(peaks_dataset, tmp_path / "run", epochs=1, batches_per_epoch=1))
    with open(result.model_dir / "model.pt", "ab") as handle:
        handle.write(b"x")
    with pytest.raises(cc_task.ModelPackageError, match="sha256"):
        cc_task.load_model_package(result.model_dir)
    with pytest.raises(cc_task.ModelPackageError, match="model_card.json"):
        cc_task.load_model_package(tmp_path)


def test_invalid_network_settings_are_a_user_error(peaks_dataset, tmp_path):
    with pytest.raises(SegkitError, match="multiple of 16"):
        cc_train.train(_config(peaks_dataset, tmp_path / "bad", slice_size=20))


def test_sc2snet_through_onnx_runtime_predicts_as_torch(peaks_dataset, tmp_path, segkit_home):
    """--backend onnx|auto on a CPU: one checked export with a dynamic batch (the last batch of a
    cube is smaller), cached under SEGKIT_HOME by the weights' sha256."""
    result = cc_train.train(_config(peaks_dataset, tmp_path / "sam", architecture="sc2snet", sam_grid=7, epochs=1,
                                    batches_per_epoch=1))
    eager = cc_task.load_model_package(result.model_dir)
    onnx = cc_task.with_backend(eager, "cpu", "onnx")
    assert (eager.backend, onnx.backend) == ("torch", "onnx") and cc_task.with_backend(eager, "cpu", "torch") is eager
    exported = onnx.forward.module.path
    assert exported.parent == segkit_home / "cache" / "onnx" / "cc_fodf"
    assert exported.name.startswith(f"sc2snet_{eager.sha256[:16]}_Bx9x16x16_fp32_")
    assert json.loads(exported.with_name(exported.name + ".json").read_text())["dynamic_batch"] is True
    peaks, _ = _synthetic_peaks_subject(0)
    cube, _ = cc_cube.fit_to_cube(peaks, 16)
    by_torch = cc_task.predict_cube(eager.forward, cube, batch_size=5)  # 5: batches of 5 and a rest
    by_onnx = cc_task.predict_cube(onnx.forward, cube, batch_size=5)
    assert by_torch.max() > 0 and np.abs(by_onnx - by_torch).max() < 1e-4
