"""``nluserve serve``."""

from __future__ import annotations

from typing import Annotated

import typer
from pydantic import ValidationError
from pydantic_settings import SettingsError

from nluserve.cli.output import err_console, fail
from nluserve.errors import NluserveError
from nluserve.settings import Settings, describe_invalid, ensure_data_dir


def serve(
    host: Annotated[str | None, typer.Option(help="bind address (default 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="bind port (default 8000)")] = None,
    workers: Annotated[int | None, typer.Option(help="HTTP workers; >1 runs gunicorn")] = None,
    models: Annotated[str | None, typer.Option(help="comma-separated models to serve")] = None,
    device: Annotated[
        str | None,
        typer.Option(help="cpu (default) or cuda (onnxruntime-gpu)"),
    ] = None,
    inference_process: Annotated[
        str | None,
        typer.Option(
            help="auto (default: on with several workers on cuda, or on a CPU for a "
            "transformer-size graph), on or off: run the graphs in one process that every "
            "worker feeds"
        ),
    ] = None,
) -> None:
    """Serve the HTTP API (SQLite + bundled models unless configured otherwise)."""
    from nluserve.server.run import prepare_metrics_dir, settle_inference_process
    from nluserve.server.run import serve as run_server

    overrides: dict[str, object] = {}
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    if workers is not None:
        overrides["workers"] = workers
    if models is not None:
        overrides["models"] = [m for m in models.split(",") if m]
    if device is not None:
        overrides["device"] = device
    if inference_process is not None:
        overrides["inference_process"] = inference_process
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except (ValidationError, SettingsError) as exc:
        fail(describe_invalid(exc))
    ensure_data_dir(settings)
    settings = settle_inference_process(settings)
    if settings.auth:
        _prepare_tenancy(settings)
    elif settings.open_without_auth():
        # NLUSERVE_AUTH=false is meant for one user on loopback; a container or a proxy may
        # still need another bind, so this warns instead of refusing.
        err_console.print(
            f"[bold yellow]NLUSERVE_AUTH=false and bound to {settings.host}: anyone who can "
            "reach this port can call the models, with no key, quota or audit log.[/]"
        )
    if settings.workers > 1 or settings.use_inference_process():
        # The inference process is another process whose metrics /metrics must include.
        prepare_metrics_dir(settings)
    try:
        run_server(settings)
    except NluserveError as exc:
        fail(str(exc))


def _prepare_tenancy(settings: Settings) -> None:
    """Embedded SQLite: migrate here, once, before any worker. Shared databases: `nluserve
    migrate` is a separate deploy step (ExecStartPre, a Job), so only check the revision."""
    from nluserve.db.migrate import MIGRATIONS, current, upgrade
    from nluserve.tenancy.service import TenancyService, database_url

    url = database_url(settings)
    try:
        if url.startswith("sqlite"):
            upgrade(url)
        service = TenancyService.from_settings(settings)
        head = sorted(p.stem.split("_")[0] for p in (MIGRATIONS / "versions").glob("*.py"))[-1]
        if current(service.repo.engine) != head:
            fail("the database schema is not current: run `nluserve migrate` first")
        service.ensure_signing_key()
        admin_key = service.bootstrap_admin()
        service.repo.close()
    except NluserveError as exc:
        fail(str(exc))
    if admin_key:
        # Printed once to the terminal, never to the logs; only its hash is stored.
        err_console.print(
            f"[bold yellow]Created the admin tenant. Admin API key (shown once):[/]\n{admin_key}"
        )
