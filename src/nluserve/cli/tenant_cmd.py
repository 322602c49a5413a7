"""``nluserve migrate | tenant | key | token | usage | signing-key``: rich tables, --json everywhere."""

from __future__ import annotations

import weakref
from dataclasses import asdict
from typing import Annotated, Any

import typer
from rich.table import Table

from nluserve.cli.output import console, fail, print_json
from nluserve.errors import NluserveError
from nluserve.settings import ensure_data_dir

tenant_app = typer.Typer(
    no_args_is_help=True, help="Tenants: create, list, show, update, disable, enable."
)
key_app = typer.Typer(no_args_is_help=True, help="API keys: create, list, revoke.")
token_app = typer.Typer(no_args_is_help=True, help="Access tokens.")
signing_app = typer.Typer(no_args_is_help=True, help="JWT signing keys.")

JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON for machines")]


def _service() -> Any:
    from nluserve.models.store import served_names
    from nluserve.settings import Settings
    from nluserve.tenancy.service import TenancyService

    try:
        settings = Settings()
        service = TenancyService.from_settings(settings)
    except NluserveError as exc:
        fail(str(exc))
    service.served_models = served_names(settings.models)
    # Each command uses the service once and returns; its pooled database connections are
    # closed when the repository goes, instead of being dropped open (PostgreSQL logs those).
    weakref.finalize(service.repo, service.repo.engine.dispose)
    return service


def _plain(obj: Any) -> Any:
    out = asdict(obj)
    return {
        k: (v.isoformat() if hasattr(v, "isoformat") else list(v) if isinstance(v, tuple) else v)
        for k, v in out.items()
        if k != "digest"
    }


def _guard(fn: Any) -> Any:
    from nluserve.tenancy.service import Conflict, NotFound

    try:
        return fn()
    except (NotFound, Conflict, NluserveError) as exc:
        fail(str(exc))


def migrate(as_json: JsonOpt = False) -> None:
    """Create or upgrade the database schema (idempotent; safe from several machines at once)."""
    from nluserve.db.migrate import upgrade
    from nluserve.settings import Settings
    from nluserve.tenancy.service import database_url

    settings = Settings()
    ensure_data_dir(settings)
    revision = upgrade(database_url(settings))
    service = _service()
    service.ensure_signing_key()
    if as_json:
        print_json({"revision": revision})
    else:
        console.print(f"database at revision [bold]{revision}[/]")


def _tenant_table(tenants: list[Any]) -> Table:
    table = Table("id", "name", "status", "quota/day", "rate/s", "burst", "scopes")
    for t in tenants:
        table.add_row(
            t.id,
            t.name,
            f"{t.status}, admin" if t.admin else t.status,
            str(t.quota_daily),
            str(t.rate_per_s),
            str(t.burst),
            ",".join(t.scopes) or "*",
        )
    return table


@tenant_app.command("create")
def tenant_create(
    name: str,
    quota_daily: Annotated[int | None, typer.Option(help="calls per UTC day")] = None,
    rate: Annotated[float | None, typer.Option(help="sustained calls per second")] = None,
    burst: Annotated[int | None, typer.Option(help="burst size")] = None,
    scope: Annotated[str, typer.Option(help="comma-separated models/tasks (empty: all)")] = "",
    admin: Annotated[
        bool, typer.Option("--admin", help="its keys may manage tenants and keys")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Create a tenant and print its first API key (shown once)."""
    svc = _service()
    scopes = [s for s in scope.split(",") if s]
    tenant, key = _guard(lambda: svc.create_tenant(name, quota_daily, rate, burst, scopes, admin))
    if as_json:
        print_json({"tenant": _plain(tenant), "api_key": key.api_key})
        return
    console.print(_tenant_table([tenant]))
    console.print(f"API key (shown once): [bold]{key.api_key}[/]")


@tenant_app.command("list")
def tenant_list(as_json: JsonOpt = False) -> None:
    """All tenants."""
    tenants = _service().repo.tenants()
    if as_json:
        print_json([_plain(t) for t in tenants])
    else:
        console.print(_tenant_table(tenants))


@tenant_app.command("show")
def tenant_show(tenant: str, as_json: JsonOpt = False) -> None:
    """One tenant by name or id, with its keys."""
    svc = _service()
    t = _guard(lambda: svc.find(tenant))
    keys = svc.keys(t.id)
    if as_json:
        print_json({"tenant": _plain(t), "keys": [_plain(k) for k in keys]})
        return
    console.print(_tenant_table([t]))
    _print_keys(keys)


@tenant_app.command("update")
def tenant_update(
    tenant: str,
    quota_daily: Annotated[int | None, typer.Option()] = None,
    rate: Annotated[float | None, typer.Option()] = None,
    burst: Annotated[int | None, typer.Option()] = None,
    scope: Annotated[str | None, typer.Option(help="comma-separated; '' for all")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Change a tenant's limits or scope."""
    svc = _service()
    scopes = None if scope is None else [s for s in scope.split(",") if s]
    t = _guard(
        lambda: svc.update(
            tenant, quota_daily=quota_daily, rate_per_s=rate, burst=burst, scopes=scopes
        )
    )
    print_json(_plain(t)) if as_json else console.print(_tenant_table([t]))


def _set_status(tenant: str, status: str, as_json: bool) -> None:
    svc = _service()
    t = _guard(lambda: svc.update(tenant, status=status))
    print_json(_plain(t)) if as_json else console.print(f"{t.name}: {t.status}")


@tenant_app.command("disable")
def tenant_disable(tenant: str, as_json: JsonOpt = False) -> None:
    """Lock a tenant out (within seconds on every worker)."""
    _set_status(tenant, "disabled", as_json)


@tenant_app.command("enable")
def tenant_enable(tenant: str, as_json: JsonOpt = False) -> None:
    """Let a disabled tenant back in."""
    _set_status(tenant, "active", as_json)


def _print_keys(keys: list[Any]) -> None:
    table = Table("key id", "name", "created", "expires", "revoked", "last used")
    for k in keys:
        table.add_row(
            k.id,
            k.name,
            str(k.created_at)[:19],
            str(k.expires_at or "")[:19],
            str(k.revoked_at or "")[:19],
            str(k.last_used_at or "")[:19],
        )
    console.print(table)


@key_app.command("create")
def key_create(
    tenant: str,
    name: Annotated[str, typer.Option()] = "",
    expires_days: Annotated[float | None, typer.Option()] = None,
    as_json: JsonOpt = False,
) -> None:
    """A new API key for a tenant (shown once)."""
    svc = _service()
    new = _guard(lambda: svc.create_key(tenant, name, expires_days))
    if as_json:
        print_json({"key": _plain(new.record), "api_key": new.api_key})
    else:
        console.print(f"key {new.record.id} (shown once): [bold]{new.api_key}[/]")


@key_app.command("list")
def key_list(tenant: str, as_json: JsonOpt = False) -> None:
    """A tenant's keys (never the secrets)."""
    keys = _guard(lambda: _service().keys(tenant))
    print_json([_plain(k) for k in keys]) if as_json else _print_keys(keys)


@key_app.command("revoke")
def key_revoke(key_id: str, as_json: JsonOpt = False) -> None:
    """Revoke a key by its id, or by the key itself (say, one that leaked): calls and tokens
    from it fail within seconds."""
    from nluserve.tenancy import keys as keyfmt

    if key_id.startswith("nlu_"):
        parsed = keyfmt.parse(key_id)
        if parsed is None:  # never echo it back: it may be a real key with a typo
            fail("that is neither a key id nor a well-formed API key")
        key_id = parsed
    record = _guard(lambda: _service().revoke_key(key_id))
    print_json(_plain(record)) if as_json else console.print(f"revoked {record.id}")


@token_app.command("issue")
def token_issue(tenant: str, as_json: JsonOpt = False) -> None:
    """Issue a short-lived JWT for a tenant (operators' testing aid)."""
    svc = _service()
    t = _guard(lambda: svc.find(tenant))
    if not t.active:
        fail(f"tenant {t.name!r} is disabled: the service would refuse its tokens")
    token, expires_in = _guard(lambda: svc.issue_token(t, None))
    if as_json:
        print_json({"access_token": token, "token_type": "Bearer", "expires_in": expires_in})
    else:
        console.print(token, soft_wrap=True)


@token_app.command("revoke")
def token_revoke(token: str, as_json: JsonOpt = False) -> None:
    """Revoke one access token, given itself or its id (jti); refused within seconds.
    Revoking its API key (or disabling the tenant) reaches every token of that key."""
    jti = _guard(lambda: _service().revoke_token(token))
    print_json({"revoked": jti}) if as_json else console.print(f"revoked token {jti}")


@signing_app.command("rotate")
def signing_rotate(as_json: JsonOpt = False) -> None:
    """New signing key; the old one keeps verifying until its tokens expire."""
    kid = _service().rotate_signing_key()
    print_json({"kid": kid}) if as_json else console.print(f"current signing key: {kid}")


def usage(
    tenant: Annotated[str | None, typer.Argument(help="one tenant (default: all)")] = None,
    days: Annotated[int, typer.Option(min=1, max=366, help="days back from today")] = 7,
    as_json: JsonOpt = False,
) -> None:
    """Calls, texts and characters by day and model."""
    service = _service()
    rows = _guard(lambda: service.usage(tenant, days))
    if as_json:
        print_json([asdict(r) for r in rows])
        return
    names = {t.id: t.name for t in _guard(service.repo.tenants)}
    table = Table("day", "tenant", "model", "calls", "texts", "chars", "errors")
    for r in rows:
        who = names.get(r.tenant_id, r.tenant_id[:8])  # a deleted tenant: its id
        table.add_row(r.day, who, r.model, str(r.calls), str(r.texts), str(r.chars), str(r.errors))
    console.print(table)
