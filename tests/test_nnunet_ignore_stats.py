"""nnU-Net's CT normalisation statistics come from annotated voxels, not from the ignore label."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np

from segkit.engines.nnunet.fingerprint import refit_without_ignore
from segkit.phantoms.lumbar import make_lumbar_phantom


def _raw_dataset(root, with_ignore: bool):
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    muscle = []
    for case, seed in (("lpm_000", 1), ("lpm_001", 2)):
        phantom = make_lumbar_phantom(seed, shape=(64, 56, 6), spacing=(1.75, 1.75, 4.0))
        labels = phantom.labels.copy()
        if with_ignore:
            labels[:, :, 2:] = 3  # slices outside round 1's selection: ignored whole, air and fat included
        muscle.append(phantom.ct[labels.astype(bool) & (labels != 3)])
        nib.save(nib.Nifti1Image(phantom.ct, phantom.affine), str(root / "imagesTr" / f"{case}_0000.nii.gz"))
        nib.save(nib.Nifti1Image(labels, phantom.affine), str(root / "labelsTr" / f"{case}.nii.gz"))
    names = {"background": 0, "lpm_right": 1, "lpm_left": 2, **({"ignore": 3} if with_ignore else {})}
    (root / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT"}, "labels": names, "numTraining": 2,
                                                   "file_ending": ".nii.gz"}))
    return np.concatenate(muscle)


def test_the_fingerprint_statistics_are_refit_on_muscle_voxels_only(tmp_path):
    muscle = _raw_dataset(tmp_path / "raw", with_ignore=True)
    labels = [np.asarray(nib.load(str(p)).dataobj) for p in sorted((tmp_path / "raw" / "labelsTr").iterdir())]
    images = [np.asarray(nib.load(str(p)).dataobj) for p in sorted((tmp_path / "raw" / "imagesTr").iterdir())]
    as_nnunet = np.concatenate([image[label > 0] for image, label in zip(images, labels)])
    assert as_nnunet.mean() < -200  # what nnU-Net's fingerprint takes: the ignored slices' air and fat
    fingerprint = tmp_path / "dataset_fingerprint.json"
    fingerprint.write_text(json.dumps({"spacings": [[4.0, 1.75, 1.75]],
                                       "foreground_intensity_properties_per_channel": {"0": {"mean": float(as_nnunet.mean())}}}))
    assert refit_without_ignore(tmp_path / "raw", fingerprint)
    written = json.loads(fingerprint.read_text())
    stats = written["foreground_intensity_properties_per_channel"]["0"]
    assert written["spacings"] == [[4.0, 1.75, 1.75]]  # the rest of the fingerprint is kept
    assert abs(stats["mean"] - muscle.mean()) < 1e-6 and abs(stats["std"] - muscle.std()) < 1e-6
    assert 0.0 < stats["mean"] < 60.0 and stats["percentile_00_5"] > -150.0
    assert set(stats) == {"max", "mean", "median", "min", "percentile_00_5", "percentile_99_5", "std"}


def test_a_dataset_without_an_ignore_label_keeps_nnunets_statistics(tmp_path):
    _raw_dataset(tmp_path / "raw", with_ignore=False)
    fingerprint = tmp_path / "dataset_fingerprint.json"
    fingerprint.write_text(json.dumps({"foreground_intensity_properties_per_channel": {"0": {"mean": 41.0}}}))
    assert not refit_without_ignore(tmp_path / "raw", fingerprint)
    assert json.loads(fingerprint.read_text())["foreground_intensity_properties_per_channel"]["0"]["mean"] == 41.0
