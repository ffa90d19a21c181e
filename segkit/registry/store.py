"""The model store: verified, atomic, lock-protected installs of a task's files into the cache.

Layout under the cache home (SEGKIT_HOME, else the platform cache dir):

    tasks/<task>/manifest.json      present only for a complete, verified install
    tasks/<task>/<file>             the verified file (or <file stem>/ when unpacked)
    pins/<task>.json                sha256 pinned at first install for upstreams without checksums
    locks/<task>.lock               one installer at a time per task
    staging/<task>-<pid>-<rand>/    an install in progress; renamed onto tasks/<task> at the end

An install is built in a staging folder and moved into place with one rename, so a killed,
truncated or corrupt download can never leave something that counts as installed.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import shutil
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from segkit import __version__
from segkit.errors import InstallError, SegkitError, TaskNotInstalledError
from segkit.registry.schema import FileSpec, TaskSpec

MANIFEST = "manifest.json"
DEFAULT_RETRIES = 2  # extra attempts per mirror after the first
_CHUNK = 1 << 20


# ---------------------------------------------------------------------------- locations


def cache_home() -> Path:
    """SEGKIT_HOME, else the platform's user cache directory for segkit."""
    override = os.environ.get("SEGKIT_HOME")
    if override:
        return Path(override).expanduser()
    import platformdirs  # a dependency of pooch; imported lazily to keep --help fast

    return Path(platformdirs.user_cache_dir("segkit"))


def mirror_base() -> str | None:
    """SEGKIT_MIRROR: a folder or URL holding the model files by name, tried before upstream."""
    value = os.environ.get("SEGKIT_MIRROR", "").strip()
    if not value:
        return None
    if "://" not in value:
        value = Path(value).expanduser().resolve().as_uri()
    return value.rstrip("/")


def task_dir(task: str) -> Path:
    return cache_home() / "tasks" / task


def _max_retries() -> int:
    try:
        return max(0, int(os.environ.get("SEGKIT_RETRIES", DEFAULT_RETRIES)))
    except ValueError:
        raise SegkitError("SEGKIT_RETRIES must be a whole number") from None


# ---------------------------------------------------------------------------- manifest


@dataclass(frozen=True)
class InstalledTask:
    task: str
    root: Path
    manifest: dict

    def file_path(self, name: str) -> Path:
        """Where an installed file (or its unpacked folder) lives."""
        for entry in self.manifest["files"]:
            if entry["name"] == name:
                return self.root / entry["local_path"]
        raise TaskNotInstalledError(f"task '{self.task}' has no installed file '{name}'; reinstall with --force")

    def sha256(self, name: str) -> str:
        for entry in self.manifest["files"]:
            if entry["name"] == name:
                return entry["sha256"]
        raise TaskNotInstalledError(f"task '{self.task}' has no installed file '{name}'")


def read_manifest(task: str) -> InstalledTask | None:
    root = task_dir(task)
    try:
        manifest = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not all((root / f["local_path"]).exists() for f in manifest.get("files", [])):
        return None
    return InstalledTask(task=task, root=root, manifest=manifest)


def is_installed(task: str) -> bool:
    return read_manifest(task) is not None


def require_installed(spec: TaskSpec) -> InstalledTask:
    installed = read_manifest(spec.name)
    if installed is None:
        raise TaskNotInstalledError(
            f"task '{spec.name}' is not installed; run `segkit install-task {spec.name}` "
            f"(cache: {cache_home()})"
        )
    return installed


# ---------------------------------------------------------------------------- pins


def _pins_path(task: str) -> Path:
    return cache_home() / "pins" / f"{task}.json"


def read_pins(task: str) -> dict[str, str]:
    try:
        return json.loads(_pins_path(task).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _write_json(path: Path, data: dict) -> None:
    # imported here: the io layer loads nibabel, which `list-tasks` (is_installed) does not need
    from segkit.io.writer import atomic_write_json

    atomic_write_json(path, data, sort_keys=True)


# ---------------------------------------------------------------------------- fetching


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _package_file(url: str) -> Path:
    """package://DIST/PATH -> the file inside that installed distribution (without importing it)."""
    import importlib.util

    parsed = urlparse(url)
    module = parsed.netloc.replace("-", "_")
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the Python package '{parsed.netloc}' is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / unquote(parsed.path.lstrip("/"))


def _copy_local(source: Path, dest: Path, progress) -> None:
    if not source.is_file():
        raise FileNotFoundError(f"{source} does not exist")
    tmp = dest.with_name(dest.name + ".part")
    total = source.stat().st_size
    progress.start(dest.name, total)
    with open(source, "rb") as src, open(tmp, "wb") as dst:
        for block in iter(lambda: src.read(_CHUNK), b""):
            dst.write(block)
            progress.advance(len(block))
    os.replace(tmp, dest)


def _download_http(url: str, dest: Path, progress) -> None:
    import pooch

    pooch.get_logger().setLevel("WARNING")  # segkit reports hashes itself
    bar = progress.pooch_bar(dest.name)
    downloader = pooch.HTTPDownloader(progressbar=bar, timeout=float(os.environ.get("SEGKIT_TIMEOUT", 60)))
    # known_hash=None: segkit verifies the hash itself, so that pins and custom hashes share one path.
    pooch.retrieve(url, known_hash=None, fname=dest.name, path=dest.parent, downloader=downloader)


def _fetch_once(url: str, dest: Path, progress) -> None:
    scheme = urlparse(url).scheme
    if scheme == "package":
        _copy_local(_package_file(url), dest, progress)
    elif scheme == "file":
        _copy_local(Path(unquote(urlparse(url).path)), dest, progress)
    else:
        _download_http(url, dest, progress)


def _describe(exc: BaseException) -> str:
    """A short reason: requests' messages repeat the URL and nest three exceptions deep."""
    response = getattr(exc, "response", None)
    if response is not None and getattr(response, "status_code", None):
        return f"HTTP {response.status_code}"
    text = str(exc)
    for marker, reason in (
        ("NameResolution", "host name could not be resolved (no network?)"),
        ("Connection refused", "connection refused"),
        ("timed out", "timed out"),
        ("IncompleteRead", "connection closed before the file was complete"),
        ("Connection broken", "connection closed before the file was complete"),
        ("RemoteDisconnected", "server closed the connection"),
    ):
        if marker in text:
            return reason
    return f"{type(exc).__name__}: {text.splitlines()[0][:120]}" if text else type(exc).__name__


def candidate_urls(task: str, file: FileSpec, custom_url: str | None) -> list[str]:
    if custom_url:
        return [custom_url]
    urls = list(file.mirrors)
    base = mirror_base()
    if base:
        urls.insert(0, f"{base}/{file.name}")
    return urls


def fetch_verified(task: str, file: FileSpec, dest: Path, expected: str | None, urls: list[str], progress) -> tuple[str, str]:
    """Fetch `file` into `dest`, trying each URL with bounded retries; returns (url, sha256).

    `expected` is the sha256 to insist on, or None for a first install of an unpinned upstream.
    A file that fails verification is deleted before the next attempt.
    """
    failures: list[str] = []
    for url in urls:
        for attempt in range(_max_retries() + 1):
            dest.unlink(missing_ok=True)
            try:
                _fetch_once(url, dest, progress)
            except FileNotFoundError as exc:
                failures.append(f"{url}: {exc}")
                break  # a missing local file will not appear on retry
            except Exception as exc:  # noqa: BLE001 - network errors come in many types
                failures.append(f"{url}: {_describe(exc)}")
                if _is_http_client_error(exc):
                    break  # 404 and friends: retrying the same URL is pointless
                time.sleep(min(2.0, 0.25 * (attempt + 1)))
                continue
            finally:
                progress.stop()
            actual = sha256_of(dest)
            if expected is None or actual == expected:
                return url, actual
            dest.unlink(missing_ok=True)
            failures.append(f"{url}: sha256 mismatch (got {actual[:12]}..., expected {expected[:12]}...)")
    raise InstallError(_failure_message(task, file, failures))


def _is_http_client_error(exc: BaseException) -> bool:
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    return status is not None and 400 <= status < 500 and status not in (408, 429)


def _failure_message(task: str, file: FileSpec, failures: list[str]) -> str:
    failures = list(dict.fromkeys(failures))  # the same reason on every retry is said once
    mismatch = any("sha256 mismatch" in f for f in failures)
    what = "failed sha256 verification" if mismatch else "could not be fetched"
    return (
        f"{file.name} for task '{task}' {what} ({'; '.join(failures[-3:])}). "
        f"To install offline: put {file.name} in a folder and set SEGKIT_MIRROR to it, or run "
        f"`segkit install-task {task} --custom-url file:///path/to/{file.name} --sha256 HEX`, "
        f"or copy a populated cache into SEGKIT_HOME ({cache_home()})"
    )


def _unpack(archive: Path, into: Path) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            for member in zf.namelist():
                target = (into / member).resolve()
                if not str(target).startswith(str(into.resolve())):
                    raise InstallError(f"{archive.name} contains an unsafe path '{member}'")
            zf.extractall(into)
    except zipfile.BadZipFile:
        raise InstallError(f"{archive.name} is not a valid zip archive") from None


# ---------------------------------------------------------------------------- install


def _expected_sha256(task: str, file: FileSpec, custom_sha256: str | None, custom_url: str | None) -> str | None:
    if custom_sha256:
        return custom_sha256.lower()
    if custom_url:
        return read_pins(task).get(f"custom:{custom_url}")
    return file.sha256 or read_pins(task).get(file.name)


def _pin_key(file: FileSpec, custom_url: str | None) -> str:
    return f"custom:{custom_url}" if custom_url else file.name


def _clean_stale_staging(task: str) -> None:
    staging_root = cache_home() / "staging"
    for leftover in staging_root.glob(f"{task}-*"):
        shutil.rmtree(leftover, ignore_errors=True)


def _install_one(spec: TaskSpec, file: FileSpec, staging: Path, custom_url, custom_sha256, progress) -> tuple[dict, dict]:
    expected = _expected_sha256(spec.name, file, custom_sha256, custom_url)
    dest = staging / file.name
    url, actual = fetch_verified(spec.name, file, dest, expected, candidate_urls(spec.name, file, custom_url), progress)
    new_pins = {_pin_key(file, custom_url): actual} if expected is None else {}
    if custom_sha256:
        source = "--sha256"
    elif custom_url or file.sha256 is None:
        source = "pinned at first install"
    else:
        source = "registry"
    entry = {
        "name": file.name,
        "url": url,
        "sha256": actual,
        "size": dest.stat().st_size,
        "version": file.version,
        "checksum_source": source,
        "local_path": file.name,
    }
    if file.unpack:
        entry["local_path"] = Path(file.name).stem
        _unpack(dest, staging / entry["local_path"])
        dest.unlink()
    return entry, new_pins


def _install_files(spec: TaskSpec, staging: Path, custom_url, custom_sha256, progress) -> tuple[list[dict], dict]:
    entries, new_pins = [], {}
    primary = _primary_file_index(spec)
    for index, file in enumerate(spec.files):
        override = (custom_url, custom_sha256) if index == primary else (None, None)
        entry, pins = _install_one(spec, file, staging, *override, progress)
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
) -> InstalledTask:
    """Install every file of `spec` into the cache, verified, atomically, once across processes."""
    from filelock import FileLock

    if not spec.files and custom_url:
        spec = _with_user_model_file(spec, custom_url)
    if not spec.files:
        raise SegkitError(f"task '{spec.name}' has nothing to download: {spec.weights_note}")
    if custom_sha256 and not custom_url:
        raise SegkitError("--sha256 only applies together with --custom-url")
    progress = progress or NullProgress()
    lock_path = cache_home() / "locks" / f"{spec.name}.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock_path)):
        existing = read_manifest(spec.name)
        if existing is not None and not force and _matches_request(existing, custom_url, custom_sha256):
            return existing
        _clean_stale_staging(spec.name)
        staging = Path(tempfile.mkdtemp(prefix=f"{spec.name}-{os.getpid()}-", dir=_ensure(cache_home() / "staging")))
        try:
            entries, new_pins = _install_files(spec, staging, custom_url, custom_sha256, progress)
            manifest = {
                "task": spec.name,
                "segkit_version": __version__,
                "installed_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "files": entries,
            }
            _write_json(staging / MANIFEST, manifest)
            _swap_into_place(staging, task_dir(spec.name))
            if new_pins:
                _write_json(_pins_path(spec.name), {**read_pins(spec.name), **new_pins})
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    installed = read_manifest(spec.name)
    assert installed is not None, "manifest vanished right after install"
    return installed


def _with_user_model_file(spec: TaskSpec, custom_url: str) -> TaskSpec:
    """A task with no published files (trained with `segkit train`) takes the user's model from
    --custom-url: one file, unpacked when it is a zip, pinned at first install unless --sha256."""
    import dataclasses

    name = Path(unquote(urlparse(custom_url).path)).name or f"{spec.name}_model.zip"
    user_file = FileSpec(
        name=name, version="user-trained", sha256=None, size=None, unpack=name.lower().endswith(".zip"),
        mirrors=(custom_url,), checksum_published=False,
    )
    return dataclasses.replace(spec, files=(user_file,))


def _matches_request(existing: InstalledTask, custom_url: str | None, custom_sha256: str | None) -> bool:
    if custom_url is None:
        return True
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
    installed = read_manifest(spec.name)
    if installed is not None:
        return installed
    if not spec.files or not all(m.startswith(("package://", "file://")) for f in spec.files for m in f.mirrors):
        return require_installed(spec)
    return install_task(spec, progress=progress)


# ---------------------------------------------------------------------------- progress


class NullProgress:
    def start(self, name: str, total: int) -> None:
        pass

    def advance(self, n: int) -> None:
        pass

    def stop(self) -> None:
        pass

    def pooch_bar(self, name: str):
        return False


class RichProgress(NullProgress):
    """A rich progress bar on stderr; silent when stderr is not a terminal (logs stay clean)."""

    def __init__(self) -> None:
        from rich.console import Console

        self.console = Console(stderr=True)
        self._progress = None
        self._task = None

    def start(self, name: str, total: int) -> None:
        if not self.console.is_terminal:
            return  # logs stay clean: only the final result or one error line
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

        self._progress = Progress(
            TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), console=self.console
        )
        self._progress.start()
        self._task = self._progress.add_task(name, total=total or None)

    def advance(self, n: int) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, n)

    def restart(self) -> None:
        if self._progress is not None:
            self._progress.reset(self._task)

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def pooch_bar(self, name: str):
        return _PoochAdapter(self, name)


class _PoochAdapter:
    """The object pooch's HTTPDownloader drives: it sets .total, then calls update/reset/close."""

    def __init__(self, owner: RichProgress, name: str):
        self.owner = owner
        self.name = name

    @property
    def total(self) -> int:
        return 0

    @total.setter
    def total(self, value: int) -> None:
        self.owner.start(self.name, value)

    def update(self, n: int) -> None:
        self.owner.advance(n)

    def reset(self) -> None:
        self.owner.restart()

    def close(self) -> None:
        self.owner.stop()

