"""`segkit install-task TASK`: fetch and verify a task's model files into the cache."""

from __future__ import annotations

import typer

from segkit.cli.app import app


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
    from segkit import api
    from segkit.registry.store import RichProgress

    installed = api.install_task(task, custom_url=custom_url, sha256=sha256, force=force, progress=RichProgress())
    for entry in installed.manifest["files"]:
        typer.echo(f"{task}\t{entry['name']}\tsha256:{entry['sha256']}\t{installed.root / entry['local_path']}")
