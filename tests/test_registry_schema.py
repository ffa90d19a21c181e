"""The registry schema: the shipped file is valid and complete; every error names entry and field."""

from __future__ import annotations

import copy

import pytest
import yaml

from conftest import REPO_ROOT, file_entry, task_entry, write_registry
from segkit.errors import RegistryError
from segkit.registry.schema import load_registry, parse_registry

PRODUCT_TASKS = {"seg_sc_lesion_t2w_sci", "cc_fodf", "ais_ncct", "brats_autosam2", "lpm_nnsam2", "medsam"}
GOOD_SHA = "a" * 64


def test_shipped_registry_lists_every_product_task():
    registry = load_registry(REPO_ROOT / "models_registry.yaml")
    assert set(registry.tasks) == PRODUCT_TASKS


def test_shipped_registry_uses_the_reference_facts():
    registry = load_registry(REPO_ROOT / "models_registry.yaml")
    medsam = registry.get("medsam").files[0]
    assert medsam.sha256 == "79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76"
    assert medsam.size == 39370479
    sci = registry.get("seg_sc_lesion_t2w_sci")
    assert sci.files[0].sha256 is None and not sci.files[0].checksum_published and sci.files[0].unpack
    assert sci.files[0].mirrors[0].endswith("model_SCIsegV2_r20240729.zip")
    assert [label.suffix for label in sci.labels] == ["_sc_seg", "_lesion_seg"]
    assert sci.labels[0].values == (1, 2)
    sam_b = registry.get("ais_ncct").files[0]
    assert sam_b.sha256 == "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912"
    for name in ("cc_fodf", "ais_ncct", "brats_autosam2", "lpm_nnsam2"):
        task = registry.get(name)
        assert not task.weights_published and task.weights_note


def test_env_var_points_at_another_registry(tmp_path, monkeypatch):
    path = write_registry(tmp_path / "r.yaml", {"only_one": task_entry("only_one", [file_entry("a.bin", "https://x/a.bin", GOOD_SHA)])})
    monkeypatch.setenv("SEGKIT_REGISTRY", str(path))
    assert list(load_registry().tasks) == ["only_one"]


def _parse(tasks: dict):
    return parse_registry({"schema_version": 1, "tasks": tasks}, path="test.yaml")


def _good() -> dict:
    return {"t1": task_entry("t1", [file_entry("w.pth", "https://example.org/w.pth", GOOD_SHA, 10)])}


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda t: t["t1"].pop("description"), "task 't1', field 'description': is missing"),
        (lambda t: t["t1"].update(framework="keras"), "task 't1', field 'framework'"),
        (lambda t: t["t1"]["files"][0].update(sha256="xyz"), "task 't1', files[0], field 'sha256': must be 64"),
        (lambda t: t["t1"]["files"][0].update(sha256=None), "task 't1', files[0], field 'sha256': is null"),
        (lambda t: t["t1"]["files"][0].pop("size"), "task 't1', files[0], field 'size': is missing"),
        (lambda t: t["t1"]["files"][0].update(size="big"), "task 't1', files[0], field 'size': must be int"),
        (lambda t: t["t1"]["files"][0].update(mirrors=[]), "task 't1', files[0], field 'mirrors'"),
        (lambda t: t["t1"]["files"][0].update(mirrors=["ftp://x/y"]), "task 't1', files[0], field 'mirrors'"),
        (lambda t: t["t1"]["files"][0].update(unpack="yes"), "task 't1', files[0], field 'unpack': must be bool"),
        (lambda t: t["t1"]["labels"][0].update(suffix="seg"), "task 't1', labels[0], field 'suffix'"),
        (lambda t: t["t1"]["labels"][0].update(value=[]), "task 't1', labels[0], field 'value'"),
        (lambda t: t["t1"]["input"].update(orientation="XYZ"), "task 't1', input, field 'orientation'"),
        (lambda t: t["t1"]["input"].pop("channels"), "task 't1', input, field 'channels': is missing"),
        (lambda t: t["t1"].update(weights_published=False), "task 't1', field 'weights_note'"),
        (lambda t: t["t1"].update(labels=[{"name": "a", "value": 1, "suffix": "_x"}, {"name": "b", "value": 2, "suffix": "_x"}]), "task 't1', field 'labels': output suffixes (labels and artifacts) must be unique"),
    ],
)
def test_schema_errors_name_entry_and_field(mutate, expected):
    tasks = _good()
    mutate(tasks)
    with pytest.raises(RegistryError) as info:
        _parse(tasks)
    assert expected in str(info.value)


def test_good_entry_parses_to_typed_objects():
    registry = _parse(_good())
    task = registry.get("t1")
    assert task.files[0].size == 10 and task.files[0].mirrors == ("https://example.org/w.pth",)
    assert task.input.orientation == "RAS"


def test_unsupported_schema_version_is_named():
    with pytest.raises(RegistryError, match="schema_version"):
        parse_registry({"schema_version": 99, "tasks": {}}, path="x.yaml")


def test_invalid_yaml_and_missing_file_are_registry_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("tasks: [unclosed\n")
    with pytest.raises(RegistryError, match="not valid YAML"):
        load_registry(bad)
    with pytest.raises(RegistryError, match="cannot read registry"):
        load_registry(tmp_path / "absent.yaml")


def test_unknown_task_lists_known_ones():
    from segkit.errors import SegkitError

    registry = _parse(_good())
    with pytest.raises(SegkitError, match="unknown task 'nope'.*t1"):
        registry.get("nope")


def test_local_tasks_are_added_and_never_shadow_a_shipped_task(tmp_path, segkit_home, monkeypatch):
    shipped = {"only_one": task_entry("only_one", [file_entry("a.bin", "https://x/a.bin", GOOD_SHA)])}
    monkeypatch.setenv("SEGKIT_REGISTRY", str(write_registry(tmp_path / "r.yaml", shipped)))
    local = {
        "mine": task_entry("mine", [file_entry("m.zip", "file:///m.zip", GOOD_SHA)]),
        "only_one": task_entry("only_one", [file_entry("b.bin", "file:///b.bin", GOOD_SHA)]),
    }
    segkit_home.mkdir(parents=True)
    (segkit_home / "local_tasks.yaml").write_text(yaml.safe_dump({"schema_version": 1, "tasks": local}))
    registry = load_registry()
    assert set(registry.tasks) == {"only_one", "mine"}
    assert registry.get("only_one").files[0].name == "a.bin"


def test_an_unreadable_local_task_file_is_named(segkit_home):
    segkit_home.mkdir(parents=True)
    (segkit_home / "local_tasks.yaml").write_text("tasks: [")
    with pytest.raises(RegistryError, match="local_tasks.yaml is not readable YAML"):
        load_registry(REPO_ROOT / "models_registry.yaml")
