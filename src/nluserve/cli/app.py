"""The ``nluserve`` command-line entry point."""

from __future__ import annotations

import typer

from nluserve.cli import predict_cmd, serve_cmd, tenant_cmd, train_cmd
from nluserve.cli.deploy_cmd import deploy_app
from nluserve.cli.model_cmd import model_app

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
    """Console-script entry point."""
    app()


@app.callback()
def _root() -> None:
    """Serve Chinese NER and sentiment models over HTTP, for many tenants."""
