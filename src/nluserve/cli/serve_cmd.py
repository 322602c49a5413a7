"""``nluserve serve``."""

from __future__ import annotations

from typing import Annotated

import typer

from nluserve.cli.output import fail
from nluserve.errors import NluserveError


def serve(
    host: Annotated[str | None, typer.Option(help="bind address (default 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="bind port (default 8000)")] = None,
    workers: Annotated[int | None, typer.Option(help="HTTP workers; >1 runs gunicorn")] = None,
    models: Annotated[str | None, typer.Option(help="comma-separated models to serve")] = None,
) -> None:
    """Serve the HTTP API (SQLite + bundled models unless configured otherwise)."""
    from nluserve.server.run import prepare_metrics_dir
    from nluserve.server.run import serve as run_server
    from nluserve.settings import Settings

    overrides: dict[str, object] = {}
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    if workers is not None:
        overrides["workers"] = workers
    if models is not None:
        overrides["models"] = [m for m in models.split(",") if m]
    settings = Settings(**overrides)  # type: ignore[arg-type]
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if settings.workers > 1:
        prepare_metrics_dir(settings)
    try:
        run_server(settings)
    except NluserveError as exc:
        fail(str(exc))
