"""Fetch one model file from its URLs (package://, file://, http(s)://) and verify its sha256.

Each URL is tried with bounded retries; a file that fails verification is deleted before the next
attempt, and the final error says what failed and how to install offline.
"""

from __future__ import annotations

import hashlib
import os
import time
import zipfile
from pathlib import Path
from urllib.parse import unquote, urlparse

from segkit.errors import InstallError, SegkitError
from segkit.registry.paths import cache_home, mirror_base
from segkit.registry.schema import FileSpec

DEFAULT_RETRIES = 2  # extra attempts per mirror after the first
_CHUNK = 1 << 20


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


_VERIFIED: dict[tuple, str] = {}  # (path, size, mtime_ns) -> sha256, for this process


def sha256_cached(path: Path) -> str:
    """sha256_of, computed once per process for a file whose path, size and mtime are unchanged
    (a rewritten file changes its mtime or size, so it is hashed again)."""
    stat = os.stat(path)
    key = (str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _VERIFIED:
        _VERIFIED[key] = sha256_of(Path(path))
    return _VERIFIED[key]


def tree_sha256(folder: Path) -> str:
    """One sha256 for an unpacked folder: over each file's relative path, size and sha256."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(folder).as_posix()}\0{path.stat().st_size}\0{sha256_cached(path)}\n".encode())
    return digest.hexdigest()


def candidate_urls(file: FileSpec, custom_url: str | None) -> list[str]:
    """--custom-url alone, else SEGKIT_MIRROR first and then the registry's mirrors."""
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
            except SegkitError:
                raise  # a settings error, not a failed download
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


# The largest shipped model file is 375 MB; unpacked zips may hold a few times that.
DEFAULT_MAX_UNPACK_GB = 4.0


def unpack_zip(archive: Path, into: Path) -> None:
    """Extract `archive` into `into`, refusing members that would land outside it and archives
    that unpack to more than SEGKIT_MAX_UNPACK_GB (a small zip of zeros can hold gigabytes)."""
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            _check_unpacked_size(archive, members)
            root = into.resolve()
            for member in members:
                target = (root / member.filename).resolve()
                if target != root and not target.is_relative_to(root):  # by path components, not prefix
                    raise InstallError(f"{archive.name} contains an unsafe path '{member.filename}'")
            zf.extractall(into)
    except zipfile.BadZipFile:
        raise InstallError(f"{archive.name} is not a valid zip archive") from None


def _check_unpacked_size(archive: Path, members) -> None:
    total = sum(m.file_size for m in members)  # zipfile stops each member at its declared size
    limit = max_unpack_bytes()
    if total > limit:
        raise InstallError(f"{archive.name} would unpack to {total / 1e9:.1f} GB, more than the "
                           f"{limit / 1e9:.1f} GB limit (SEGKIT_MAX_UNPACK_GB)")


def max_unpack_bytes() -> int:
    text = os.environ.get("SEGKIT_MAX_UNPACK_GB", str(DEFAULT_MAX_UNPACK_GB))
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise SegkitError(f"SEGKIT_MAX_UNPACK_GB={text!r}: give a size in GB, e.g. 4")
    return int(value * 1e9)


def _max_retries() -> int:
    try:
        return max(0, int(os.environ.get("SEGKIT_RETRIES", DEFAULT_RETRIES)))
    except ValueError:
        raise SegkitError("SEGKIT_RETRIES must be a whole number") from None


def network_timeout() -> float:
    """SEGKIT_TIMEOUT in seconds: a settings error (not a network failure) when it is not a number."""
    text = os.environ.get("SEGKIT_TIMEOUT", "60")
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise SegkitError(f"SEGKIT_TIMEOUT={text!r}: give the network timeout in seconds, e.g. 60")
    return value


def _fetch_once(url: str, dest: Path, progress) -> None:
    scheme = urlparse(url).scheme
    if scheme == "package":
        _copy_local(_package_file(url), dest, progress)
    elif scheme == "file":
        _copy_local(Path(unquote(urlparse(url).path)), dest, progress)
    else:
        _download_http(url, dest, progress)


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
    # dest is inside the install's staging folder: a half copy is never seen as installed
    tmp = dest.with_name(dest.name + ".part")
    progress.start(dest.name, source.stat().st_size)
    with open(source, "rb") as src, open(tmp, "wb") as dst:
        for block in iter(lambda: src.read(_CHUNK), b""):
            dst.write(block)
            progress.advance(len(block))
    os.replace(tmp, dest)


def _download_http(url: str, dest: Path, progress) -> None:
    import pooch

    pooch.get_logger().setLevel("WARNING")  # segkit reports hashes itself
    bar = progress.pooch_bar(dest.name)
    downloader = pooch.HTTPDownloader(progressbar=bar, timeout=network_timeout())
    # known_hash=None: segkit verifies the hash itself, so that pins and custom hashes share one path.
    pooch.retrieve(url, known_hash=None, fname=dest.name, path=dest.parent, downloader=downloader)


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
