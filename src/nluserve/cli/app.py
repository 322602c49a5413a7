"""The ``nluserve`` command-line entry point."""

from __future__ import annotations

import sqlite3
import sys
from typing import Annotated

import typer

from nluserve.cli import predict_cmd, serve_cmd, tenant_cmd, train_cmd
from nluserve.cli.deploy_cmd import deploy_app
from nluserve.cli.model_cmd import model_app
from nluserve.cli.output import err_console

app = typer.Typer(
    name="nluserve",
    help="Serve Chinese NER and sentiment models over HTTP, for many tenants.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command(name="serve")(serve_cmd.serve)
app.command(name="train")(train_cmd.train)
app.command(name="predict")(predict_cmd.predict)
app.command(name="eval")(predict_cmd.evaluate)
app.add_typer(model_app, name="model")
app.command(name="migrate")(tenant_cmd.migrate)
app.command(name="usage")(tenant_cmd.usage)
app.add_typer(tenant_cmd.tenant_app, name="tenant")
app.add_typer(tenant_cmd.key_app, name="key")
app.add_typer(tenant_cmd.token_app, name="token")
app.add_typer(tenant_cmd.signing_app, name="signing-key")
app.add_typer(deploy_app, name="deploy")


def main() -> None:
    """Console-script entry point: an operator's mistake is one line and exit 1, no traceback."""
    try:
        app()
    except Exception as exc:
        message = operator_error(exc)
        if message is None:
            raise  # a bug: the traceback is what its report needs
        err_console.print(f"[bold red]error:[/] {message}", highlight=False)
        sys.exit(1)


def operator_error(exc: Exception) -> str | None:
    """What to tell an operator about an error their setup caused; None for anything else.

    Never the exception's full text for database errors: SQLAlchemy appends the statement
    and its parameters, and a driver may quote its connection string."""
    from alembic.util.exc import CommandError
    from pydantic import ValidationError
    from pydantic_settings import SettingsError
    from sqlalchemy.exc import DBAPIError, OperationalError

    from nluserve.settings import describe_invalid

    if isinstance(exc, (ValidationError, SettingsError)):
        return f"invalid setting: {describe_invalid(exc)}"
    if isinstance(exc, OperationalError) and "no such table" in str(exc.orig):
        return f"the database has no schema ({exc.orig}): run `nluserve migrate` first"
    if isinstance(exc, DBAPIError):
        first = str(exc.orig).strip().splitlines()
        return f"database error: {type(exc.orig).__name__}: {first[0] if first else ''}"
    if isinstance(exc, sqlite3.DatabaseError):
        return f"database error: {exc} (is the data directory's nluserve.db a SQLite file?)"
    if isinstance(exc, CommandError):
        return (
            f"database migration: {exc} (a database written by a newer nluserve? "
            'see "Upgrade and rollback" in docs/deploy.md)'
        )
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.strerror or type(exc).__name__}: {exc.filename}"
    return None


def _version(given: bool) -> None:
    if given:
        from nluserve import __version__

        typer.echo(f"nluserve {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="print the version"),
    ] = False,
) -> None:
    """Serve Chinese NER and sentiment models over HTTP, for many tenants."""
