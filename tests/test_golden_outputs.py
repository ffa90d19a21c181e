"""Golden outputs: every task, eval and quantify run on fixed inputs gives exactly what the
pre-refactor code (commit d627c68) gave, recorded in tests/golden/record.json.

What is compared, and what is normalised, is described in tests/golden/cases.py. To see why a
case fails, read the diff in the assertion message (`recorded` is the record, `now` this run),
then the stderr of each command below it. Re-record only for a change that was asked for:

    python tests/golden/record.py --out tests/golden/record.json          # all cases
    python tests/golden/record.py --out tests/golden/record.json -k NAME  # one case, the others kept
    python tests/golden/record.py --compare tests/golden/record.json -k NAME  # one case, by hand

`pytest tests/test_golden_outputs.py -k nnunet` runs a group; `-m "not slow"` leaves out the cases
that run a model (eval, quantify and the input errors take a few seconds).
"""

from __future__ import annotations

import pytest

from golden import cases

RECORD = cases.load_record()


@pytest.fixture(scope="module")
def session(tmp_path_factory) -> cases.Session:
    return cases.Session(tmp_path_factory.mktemp("golden"))


def _params():
    for name in cases.CASES:
        marks = [pytest.mark.slow] if name in cases.MODEL_CASES else []
        yield pytest.param(name, id=name, marks=marks)


def test_every_case_is_recorded_and_every_record_has_a_case():
    assert sorted(RECORD["cases"]) == sorted(cases.CASES)


@pytest.mark.parametrize("name", list(_params()))
def test_outputs_match_the_record(session, name):
    summary, debug = session.run_case(name)
    expected = RECORD["cases"][name]
    if summary != expected:
        facts = cases.environment_facts()
        changed = {k: (RECORD["environment"].get(k), v) for k, v in facts.items() if RECORD["environment"].get(k) != v}
        pytest.fail(
            f"case {name}: outputs differ from tests/golden/record.json\n{cases.diff(expected, summary)}\n\n"
            f"library versions changed since recording (recorded, now): {changed or 'none'}\n\n{debug}",
            pytrace=False,
        )


def test_a_changed_voxel_or_sidecar_value_is_caught(tmp_path):
    """The comparison itself can fail: one flipped voxel changes the mask summary, and one changed
    sidecar value changes the JSON summary (both against a freshly recorded reference)."""
    import json

    import nibabel as nib
    import numpy as np

    norm = cases.Normaliser()
    mask = np.zeros((6, 5, 4), np.uint8)
    mask[1:4, 1:3, 1:3] = 1
    path = tmp_path / "m.nii.gz"
    nib.save(nib.Nifti1Image(mask, np.eye(4)), str(path))
    before = cases.summarise_file(path, norm, output=True)
    mask[5, 4, 3] = 1
    nib.save(nib.Nifti1Image(mask, np.eye(4)), str(path))
    after = cases.summarise_file(path, norm, output=True)
    assert before["sha256"] != after["sha256"] and before["voxels_per_value"] != after["voxels_per_value"]
    assert "sha256" in cases.diff(before, after)

    sidecar = tmp_path / "m.json"
    sidecar.write_text(json.dumps({"runtime_s": 1.0, "task": "medsam", "prompts": [{"lo": [1, 2, 3]}]}))
    first = cases.summarise_file(sidecar, norm, output=True)
    sidecar.write_text(json.dumps({"runtime_s": 9.0, "task": "medsam", "prompts": [{"lo": [1, 2, 4]}]}))
    second = cases.summarise_file(sidecar, norm, output=True)
    assert first != second  # the prompt changed
    assert first["content"]["runtime_s"] == second["content"]["runtime_s"] == cases.TIME_VALUE  # times are not compared
