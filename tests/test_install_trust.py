"""Issue 11 items 3 and 6: the registry's checksum wins for --custom-url; a rejected install pins nothing.

Downloads come from a real HTTP server on 127.0.0.1 (tests/weights_server.py) or file:// URLs.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import file_entry, task_entry, write_registry
from segkit.errors import InstallError, SegkitError
from segkit.registry.local import install_local_task
from segkit.registry.schema import load_registry
from segkit.registry.store import install_task, is_installed, read_pins
from weights_server import WeightsServer

PAYLOAD = os.urandom(50_000)
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


def _spec(tmp_path, url, sha=PAYLOAD_SHA):
    path = write_registry(tmp_path / "reg.yaml", {"demo": task_entry("demo", [file_entry("model.bin", url, sha, len(PAYLOAD))])})
    return load_registry(path).get("demo")


# ------------------------------------------------------------------------------ item 3


def test_custom_url_without_sha256_must_match_the_registry(tmp_path, segkit_home):
    other = os.urandom(1000)
    with WeightsServer() as server:
        spec = _spec(tmp_path, server.add("/model.bin", PAYLOAD))
        custom = server.add("/other.bin", other)
        with pytest.raises(InstallError, match="registry publishes this sha256.*--sha256"):
            install_task(spec, custom_url=custom)
        assert not is_installed("demo") and read_pins("demo") == {}
        # the same bytes from another place (a mirror) are fine, and recorded as the registry's hash
        installed = install_task(spec, custom_url=server.add("/copy.bin", PAYLOAD))
    assert installed.manifest["files"][0]["checksum_source"] == "registry"


def test_cli_custom_url_for_medsam_refuses_a_random_file(tmp_path, segkit_home):
    bogus = tmp_path / "lite_medsam.pth"
    bogus.write_bytes(os.urandom(2000))
    result = subprocess.run(
        [str(Path(sys.executable).with_name("segkit")), "install-task", "medsam", "--custom-url", bogus.as_uri()],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "sha256 mismatch" in result.stderr
    assert not is_installed("medsam")


# ------------------------------------------------------------------------------ item 6


def _nnunet_zip(path: Path, weights: bytes = b"w", model: bool = True) -> Path:
    """A results zip shaped like nnU-Net's (the install only checks the layout and the json)."""
    folder = "Dataset001_X/nnUNetTrainer__nnUNetPlans__3d_fullres"
    dataset = {"channel_names": {"0": "T2w"}, "labels": {"background": 0, "seg": 1}, "file_ending": ".nii.gz"}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(f"{folder}/dataset.json", json.dumps(dataset))
        if model:
            archive.writestr(f"{folder}/plans.json", json.dumps({"configurations": {}}))
        archive.writestr(f"{folder}/fold_0/checkpoint_final.pth", weights)
    path.write_bytes(buffer.getvalue())
    return path


def test_a_rejected_custom_zip_leaves_no_pin_and_the_fixed_one_installs(tmp_path, segkit_home):
    archive = _nnunet_zip(tmp_path / "m.zip", model=False)  # no plans.json: not a model
    with pytest.raises(SegkitError, match="not an nnU-Net v2 results zip"):
        install_local_task("mine", archive.as_uri())
    assert read_pins("mine") == {} and not is_installed("mine")
    _nnunet_zip(archive)  # fixed, same URL
    installed = install_local_task("mine", archive.as_uri())
    assert read_pins("mine") == {f"custom:{archive.as_uri()}": hashlib.sha256(archive.read_bytes()).hexdigest()}
    assert installed.manifest["files"][0]["checksum_source"] == "pinned at first install"


def test_force_re_pins_a_changed_custom_file(tmp_path, segkit_home):
    import shutil

    from segkit.registry.paths import task_dir

    archive = _nnunet_zip(tmp_path / "m.zip", weights=b"first")
    install_local_task("mine", archive.as_uri())
    _nnunet_zip(archive, weights=b"second")  # the user retrained and replaced the file
    shutil.rmtree(task_dir("mine"))  # so that a plain install must fetch it again
    with pytest.raises(InstallError, match="sha256 mismatch"):
        install_local_task("mine", archive.as_uri())  # held to the pin
    install_local_task("mine", archive.as_uri(), force=True)  # the user says: this file now
    assert read_pins("mine")[f"custom:{archive.as_uri()}"] == hashlib.sha256(archive.read_bytes()).hexdigest()


# ------------------------------------------------------------------------------ item 9


def _zip_spec(tmp_path, members: dict, name="m.zip"):
    archive = tmp_path / name
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for member, data in members.items():
            zf.writestr(member, data)
    data = archive.read_bytes()
    entry = file_entry(name, archive.as_uri(), hashlib.sha256(data).hexdigest(), len(data), unpack=True)
    return load_registry(write_registry(tmp_path / "r.yaml", {"z": task_entry("z", [entry])})).get("z")


def test_an_archive_unpacking_past_the_limit_is_refused(tmp_path, segkit_home, monkeypatch):
    monkeypatch.setenv("SEGKIT_MAX_UNPACK_GB", "0.01")  # 10 MB here; the default is a few times the largest model
    spec = _zip_spec(tmp_path, {"M/zeros.bin": bytes(30_000_000)})  # 30 MB of zeros in a ~30 kB zip
    assert (tmp_path / "m.zip").stat().st_size < 100_000
    with pytest.raises(InstallError, match=r"would unpack to .* limit \(SEGKIT_MAX_UNPACK_GB\)"):
        install_task(spec)
    assert not is_installed("z") and not list((segkit_home / "staging").glob("*/*"))


def test_zip_slip_is_checked_by_path_components(tmp_path, segkit_home):
    """'../m_evil/x' starts with the string 'm' of the folder it unpacks into, but leaves it."""
    spec = _zip_spec(tmp_path, {"M/plans.json": b"{}", "../m_evil/x": b"x"})
    with pytest.raises(InstallError, match="unsafe path '../m_evil/x'"):
        install_task(spec)
    assert not is_installed("z")


# ------------------------------------------------------------------------------ item 11: shared caches


def test_an_install_is_readable_by_the_group_of_a_shared_cache(tmp_path, segkit_home):
    previous = os.umask(0o002)  # a site's shared-cache umask
    try:
        archive = _nnunet_zip(tmp_path / "m.zip")
        install_local_task("mine", archive.as_uri())
    finally:
        os.umask(previous)
    from segkit.registry.paths import task_dir

    assert task_dir("mine").stat().st_mode & 0o070 == 0o070  # not mkdtemp's 0700
