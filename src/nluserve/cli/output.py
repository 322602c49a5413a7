"""Shared CLI output helpers: rich console on stderr for humans, clean stdout for --json."""

from __future__ import annotations

import json
from typing import Any, NoReturn

import typer
from rich.console import Console

console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print a one-line error (no traceback) and exit."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, markup=True)
    raise typer.Exit(code)


def print_json(obj: Any) -> None:
    """One JSON document on stdout, nothing else."""
    typer.echo(json.dumps(obj, ensure_ascii=False, indent=2))
