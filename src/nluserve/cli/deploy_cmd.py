"""``nluserve deploy render | check | backup | restore | admin-key``."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Annotated

import typer
from rich.table import Table

from nluserve.cli.output import console, err_console, fail, print_json
from nluserve.errors import NluserveError

deploy_app = typer.Typer(
    no_args_is_help=True,
    help="Deployment: render host configuration, check it with the real tools, back up, restore.",
)

JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON for machines")]


@deploy_app.command("render")
def render(
    domain: Annotated[str, typer.Option(help="public DNS name the proxy serves")],
    out: Annotated[Path, typer.Option(help="directory to write the files into")],
    proxy: Annotated[str, typer.Option(help="nginx (with certbot) or caddy")] = "nginx",
    workers: Annotated[
        int | None, typer.Option(help="workers per instance (default: sized from cores/memory)")
    ] = None,
    backends: Annotated[int, typer.Option(help="instances on consecutive ports")] = 1,
    user: Annotated[str, typer.Option(help="dedicated system user")] = "nluserve",
    prefix: Annotated[str, typer.Option(help="install prefix holding .venv")] = "/opt/nluserve",
    data_dir: Annotated[str, typer.Option(help="NLUSERVE_DATA_DIR")] = "/var/lib/nluserve",
    port: Annotated[int, typer.Option(help="first instance's port on 127.0.0.1")] = 8000,
    email: Annotated[str, typer.Option(help="ACME account e-mail")] = "",
    memory_gib: Annotated[
        float | None, typer.Option(help="target machine's memory (default: this machine's)")
    ] = None,
    cores: Annotated[
        int | None, typer.Option(help="target machine's cores (default: this machine's)")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Write systemd, proxy, TLS, logrotate, Prometheus, Grafana and backup files for one box."""
    from nluserve.deploy.render import RenderOptions, render_files, write_files
    from nluserve.deploy.sizing import Machine, recommend_workers, this_machine

    if proxy not in ("nginx", "caddy"):
        fail("--proxy must be nginx or caddy")
    here = this_machine()
    machine = Machine(cores or here.cores, memory_gib or here.memory_gib)
    chosen = workers or recommend_workers(machine, backends)
    try:
        opts = RenderOptions(
            domain=domain,
            workers=chosen,
            proxy="caddy" if proxy == "caddy" else "nginx",
            backends=backends,
            user=user,
            prefix=PurePosixPath(prefix),
            data_dir=PurePosixPath(data_dir),
            port=port,
            acme_email=email,
            cores=machine.cores,
        )
        written = write_files(render_files(opts), out)
    except NluserveError as exc:
        fail(str(exc))
    if as_json:
        print_json({"workers": chosen, "files": [str(p) for p in written]})
        return
    for path in written:
        console.print(str(path), highlight=False)
    err_console.print(
        f"{chosen} worker(s) x {backends} instance(s) for {machine.cores} cores and "
        f"{machine.memory_gib:.1f} GiB; next: nluserve deploy check {out}, then {out}/README.md"
    )


@deploy_app.command("check")
def check(directory: Path, as_json: JsonOpt = False) -> None:
    """Validate a rendered set with the real tools; exit 1 if a check that could run failed."""
    from nluserve.deploy.check import check_dir

    if not directory.is_dir():
        fail(f"{directory} is not a directory")
    results = check_dir(directory.resolve())  # the checkers run in their own working dirs
    failed = [r for r in results if r.status == "failed"]
    if as_json:
        print_json([r.__dict__ for r in results])
    else:
        table = Table("file", "tool", "result", "detail")
        for column in table.columns:
            column.overflow = "fold"
        colour = {"ok": "green", "failed": "red", "not checked": "yellow"}
        for r in results:
            table.add_row(r.target, r.tool, f"[{colour[r.status]}]{r.status}[/]", r.detail)
        console.print(table)
        skipped = [r for r in results if r.status == "not checked"]
        if skipped:
            err_console.print(f"[yellow]{len(skipped)} check(s) could not run here[/]")
    if not results:
        fail(f"nothing that `nluserve deploy render` writes was found in {directory}")
    if failed:
        raise typer.Exit(1)


@deploy_app.command("backup")
def backup(
    out: Annotated[
        str, typer.Option(help="backup file, or a directory (existing, or ending in /)")
    ],
    keep: Annotated[
        int | None, typer.Option(help="in a directory, keep only the newest N backups")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Back up the configured database while the service runs (SQLite online backup, pg_dump)."""
    from nluserve.deploy.backup import backup as run_backup
    from nluserve.settings import Settings
    from nluserve.tenancy.service import database_url

    try:
        path = run_backup(database_url(Settings()), out, keep)
    except NluserveError as exc:
        fail(str(exc))
    print_json({"backup": str(path)}) if as_json else console.print(str(path), highlight=False)


@deploy_app.command("restore")
def restore(
    backup_file: Path,
    new_pepper: Annotated[
        bool,
        typer.Option(
            help="restore without the old key pepper: every restored API key stops working "
            "and has to be issued again"
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Replace the SQLite database with a backup (stop the service first; the old one is kept)."""
    from nluserve.deploy.backup import restore as run_restore
    from nluserve.settings import Settings
    from nluserve.tenancy.service import TenancyService, database_url, pepper_path

    settings = Settings()
    if not (settings.key_pepper or pepper_path(settings).exists() or new_pepper):
        # Backups leave the pepper out; a fresh machine would make a new one on first use,
        # and every restored key would then answer 401 with nothing to say why.
        fail(
            "no key pepper here: the backup's API keys are hashed with the pepper of the "
            f"machine that made it. Copy that machine's {pepper_path(settings).relative_to(settings.data_dir)} "
            f"to {pepper_path(settings)} (mode 0600) or set NLUSERVE_KEY_PEPPER, then restore "
            "again (or pass --new-pepper and issue every key again)"
        )
    try:
        safety = run_restore(database_url(settings), backup_file)
        # Backups hold no signing keys (a stolen one could mint tokens): make the new current
        # one now, as a start would, so that tokens can be issued at once.
        service = TenancyService.from_settings(settings)
        service.ensure_signing_key()
        service.repo.close()
    except NluserveError as exc:
        fail(str(exc))
    if as_json:
        print_json({"restored": str(backup_file), "previous": str(safety) if safety else None})
        return
    console.print(f"restored {backup_file}", highlight=False)
    if safety:
        console.print(f"previous database kept at {safety}", highlight=False)


@deploy_app.command("admin-key")
def admin_key() -> None:
    """Print a new well-formed admin API key for NLUSERVE_ADMIN_KEY (nothing is stored)."""
    from nluserve.tenancy.keys import generate

    typer.echo(generate()[1])
