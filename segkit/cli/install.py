"""`segkit install-task TASK`: fetch and verify a task's model files into the cache."""

from __future__ import annotations

import re

import typer

from segkit.cli.main import app
from segkit.errors import SegkitError


@app.command("install-task")
def install_task(
    task: str = typer.Argument(..., help="Task name (see `segkit list-tasks`)."),
    custom_url: str = typer.Option(
        None, "--custom-url", "-custom-url", help="Fetch the model file from this URL (http(s)://, file://) instead."
    ),
    sha256: str = typer.Option(None, "--sha256", "-sha256", help="Expected sha256 of the file at --custom-url."),
    force: bool = typer.Option(False, "--force", "-f", help="Reinstall even if already installed."),
) -> None:
    """Download a task's files, verify every sha256, and record a manifest."""
    from segkit.registry.schema import load_registry
    from segkit.registry.store import RichProgress, install_task as install

    if sha256 is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", sha256):
        raise SegkitError(f"--sha256 must be 64 hexadecimal digits, got '{sha256}'")
    registry = load_registry()
    if task not in registry.tasks and custom_url:
        # a name the registry does not know + a URL: install any nnU-Net v2 results zip as a local task
        from segkit.registry.local import install_local_task

        installed = install_local_task(task, custom_url, sha256, force=force, progress=RichProgress())
    else:
        spec = registry.get(task)
        installed = install(spec, custom_url=custom_url, custom_sha256=sha256, force=force, progress=RichProgress())
    for entry in installed.manifest["files"]:
        typer.echo(f"{task}\t{entry['name']}\tsha256:{entry['sha256']}\t{installed.root / entry['local_path']}")
