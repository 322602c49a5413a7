"""Operators' mistakes on the command line: one clear line and exit 1, never a traceback or a
secret; and nothing half-done left behind."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from tests.integration.test_cli import nluserve

SECRET = "s3cr3tpw"


def run(data: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return nluserve(*args, env={"NLUSERVE_DATA_DIR": str(data), **env})


def one_line_error(proc: subprocess.CompletedProcess[str], *words: str) -> str:
    said = " ".join(proc.stderr.split())  # the console wraps long lines
    assert proc.returncode == 1, said
    assert "Traceback" not in proc.stderr and said.startswith("error:"), said
    for word in words:
        assert word in said, said
    return said


@pytest.fixture
def migrated(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    assert run(data, "migrate").returncode == 0
    return data


def test_a_command_before_migrate_says_to_migrate(tmp_path: Path) -> None:
    one_line_error(run(tmp_path / "data", "tenant", "list"), "nluserve migrate")


BAD_VALUES: list[tuple[dict[str, object], str]] = [
    ({"rate": 0.0}, "rate must be"),
    ({"rate": 1e-300}, "rate must be"),
    ({"rate": float("inf")}, "rate must be"),
    ({"rate": float("nan")}, "rate must be"),
    ({"burst": -3}, "burst must be"),
    ({"quota_daily": 10**30}, "daily quota must be"),
    ({"name": "a b/c"}, "may hold only"),
    ({"name": "x" * 500}, "tenant name must be"),
]


@pytest.mark.parametrize(("values", "words"), BAD_VALUES)
def test_the_service_refuses_tenant_values_out_of_bounds(
    tmp_path: Path, values: dict[str, object], words: str
) -> None:
    from nluserve.db.migrate import upgrade
    from nluserve.settings import Settings
    from nluserve.tenancy.limits import InvalidValue
    from nluserve.tenancy.service import TenancyService, database_url

    settings = Settings(data_dir=tmp_path)
    upgrade(database_url(settings))
    service = TenancyService.from_settings(settings)
    acme, _ = service.create_tenant("acme")
    create = {"name": "new", **values}
    with pytest.raises(InvalidValue, match=words):
        service.create_tenant(**create)  # type: ignore[arg-type]
    if "name" not in values:
        field = {"rate": "rate_per_s"}.get(*values) or next(iter(values))
        with pytest.raises(InvalidValue, match=words):
            service.update(acme.id, **{field: next(iter(values.values()))})
    for days in (0.0, -1.0, 1e12, float("nan")):
        with pytest.raises(InvalidValue, match="expiry must be"):
            service.create_key(acme.id, "k", days)
    assert [t.name for t in service.repo.tenants()] == ["acme"]
    assert service.find("acme").rate_per_s == acme.rate_per_s
    service.repo.close()


def test_the_cli_says_so_in_one_line(migrated: Path) -> None:
    assert run(migrated, "tenant", "create", "acme").returncode == 0
    one_line_error(run(migrated, "tenant", "create", "zero", "--rate", "0"), "rate must be")
    one_line_error(run(migrated, "key", "create", "acme", "--expires-days", "0"), "expiry")
    listed = json.loads(run(migrated, "tenant", "list", "--json").stdout)
    assert [t["name"] for t in listed] == ["acme"]
    assert run(migrated, "tenant", "disable", "acme").returncode == 0
    one_line_error(run(migrated, "token", "issue", "acme"), "disabled")
    version = run(migrated, "--version")
    assert version.returncode == 0 and version.stdout.startswith("nluserve ")


def test_settings_errors_never_print_the_secret(migrated: Path) -> None:
    url = f"redis://:{SECRET}@cache.internal/notanumber"
    said = one_line_error(run(migrated, "tenant", "list", NLUSERVE_REDIS_URL=url), "redis_url")
    assert SECRET not in said
    db = f"postgresql://bob:{SECRET}@db.internal/app?x=<y>"
    said = one_line_error(run(migrated, "migrate", NLUSERVE_DATABASE_URL=db), "placeholder")
    assert SECRET not in said


def test_real_names_that_contain_todo_are_not_placeholders(migrated: Path) -> None:
    proc = run(migrated, "tenant", "list", NLUSERVE_REDIS_URL="redis://todo-cache.internal:6379/0")
    assert proc.returncode == 0, proc.stderr


def test_revoking_by_the_key_itself_works_and_never_echoes_it(migrated: Path) -> None:
    created = json.loads(run(migrated, "tenant", "create", "acme", "--json").stdout)
    key = created["api_key"]
    mangled = key[:-1] + ("A" if key[-1] != "A" else "B")
    said = one_line_error(run(migrated, "key", "revoke", mangled), "neither a key id")
    assert mangled not in said
    proc = run(migrated, "key", "revoke", key, "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["revoked_at"] is not None


def test_a_token_is_revoked_by_itself_and_never_echoed(migrated: Path) -> None:
    assert run(migrated, "tenant", "create", "acme").returncode == 0
    token = json.loads(run(migrated, "token", "issue", "acme", "--json").stdout)["access_token"]
    tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    said = one_line_error(run(migrated, "token", "revoke", tampered), "nor a token of this")
    assert tampered not in said
    proc = run(migrated, "token", "revoke", token, "--json")
    assert proc.returncode == 0, proc.stderr
    jti = json.loads(proc.stdout)["revoked"]
    assert len(jti) == 32 and token not in proc.stdout
    assert run(migrated, "token", "revoke", jti).returncode == 0  # by its id, again: no error


def test_a_corrupt_database_or_a_file_for_a_data_dir_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    one_line_error(run(tmp_path / "afile", "migrate"), "afile")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "nluserve.db").write_text("not a database")
    one_line_error(run(tmp_path / "bad", "tenant", "list"), "database error")


def test_restore_into_a_new_data_dir_is_private(migrated: Path, tmp_path: Path) -> None:
    backups = tmp_path / "backups"
    proc = run(migrated, "deploy", "backup", "--out", f"{backups}/", "--keep", "0")
    one_line_error(proc, "--keep")
    assert not backups.exists() or not list(backups.iterdir())  # refused before writing
    proc = run(migrated, "deploy", "backup", "--out", f"{backups}/", "--json")
    backup = Path(json.loads(proc.stdout)["backup"])
    fresh = tmp_path / "spare" / "data"
    # Without the old pepper every restored key would answer 401: refused, saying what to copy.
    said = one_line_error(run(fresh, "deploy", "restore", str(backup)), "no key pepper here")
    assert "secrets/pepper" in said
    assert not (fresh / "nluserve.db").exists() and not (fresh / "secrets").exists()
    (fresh / "secrets").mkdir(parents=True, mode=0o700)
    shutil.copy2(migrated / "secrets" / "pepper", fresh / "secrets" / "pepper")
    old = os.umask(0o022)
    try:
        assert run(fresh, "deploy", "restore", str(backup)).returncode == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE((fresh / "nluserve.db").stat().st_mode) == 0o600
    one_line_error(run(fresh, "deploy", "restore", str(fresh / "nluserve.db")), "itself")


def test_a_malformed_admin_key_leaves_no_half_made_admin(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert run(data, "migrate").returncode == 0
    from nluserve.settings import Settings
    from nluserve.tenancy.service import TenancyService

    service = TenancyService.from_settings(Settings(data_dir=data))
    service.settings = Settings(data_dir=data, admin_key="nlu_notavalidkey")
    with pytest.raises(Exception, match="not a valid nluserve key"):
        service.bootstrap_admin()
    assert service.repo.count_tenants() == 0  # a corrected key bootstraps on the next start
    service.repo.close()


def test_disabling_the_last_active_admin_tenant_is_refused(migrated: Path) -> None:
    from nluserve.settings import Settings
    from nluserve.tenancy.service import TenancyService

    service = TenancyService.from_settings(Settings(data_dir=migrated))
    assert service.bootstrap_admin() is not None
    service.repo.close()
    said = one_line_error(run(migrated, "tenant", "disable", "admin"), "last active admin")
    assert "lock every administrator out" in said
    shown = json.loads(run(migrated, "tenant", "show", "admin", "--json").stdout)
    assert shown["tenant"]["status"] == "active"
    # An ordinary tenant is disabled as before.
    assert run(migrated, "tenant", "create", "acme").returncode == 0
    assert run(migrated, "tenant", "disable", "acme").returncode == 0
    # What the refusal tells the operator to do works: make another admin tenant, then the
    # first may go, and the new one is now the last.
    made = json.loads(run(migrated, "tenant", "create", "ops", "--admin", "--json").stdout)
    assert made["tenant"]["admin"] is True
    assert run(migrated, "tenant", "disable", "admin").returncode == 0
    one_line_error(run(migrated, "tenant", "disable", "ops"), "last active admin")


def test_a_scope_naming_no_configured_model_is_refused(migrated: Path) -> None:
    said = one_line_error(
        run(migrated, "tenant", "create", "acme", "--scope", "general,generl"), "'generl'"
    )
    assert "general, medical, sentiment" in said
    assert run(migrated, "tenant", "show", "acme").returncode == 1  # nothing was made
    # A model the configuration names may be granted before this machine has its files.
    made = run(
        migrated, "tenant", "create", "acme", "--scope", "news,ner", NLUSERVE_MODELS='["news"]'
    )
    assert made.returncode == 0, made.stderr
    one_line_error(run(migrated, "tenant", "update", "acme", "--scope", "medicl"), "'medicl'")


def test_restore_with_the_old_pepper_keeps_the_keys_working(migrated: Path, tmp_path: Path) -> None:
    created = json.loads(run(migrated, "tenant", "create", "acme", "--json").stdout)
    key = created["api_key"]
    backup = tmp_path / "b.db"
    assert run(migrated, "deploy", "backup", "--out", str(backup)).returncode == 0
    fresh = tmp_path / "spare"

    def verifies(data: Path) -> bool:
        from nluserve.settings import Settings
        from nluserve.tenancy import keys as keyfmt
        from nluserve.tenancy.service import TenancyService

        service = TenancyService.from_settings(Settings(data_dir=data, models=[]))
        try:
            record = service.repo.key(str(keyfmt.parse(key)))
            return record is not None and keyfmt.matches(key, record.digest, service.pepper)
        finally:
            service.repo.close()

    proc = run(fresh, "deploy", "restore", str(backup), "--new-pepper")
    assert proc.returncode == 0, proc.stderr
    assert not verifies(fresh)  # what --new-pepper warns of
    (fresh / "secrets" / "pepper").write_bytes((migrated / "secrets" / "pepper").read_bytes())
    assert run(fresh, "deploy", "restore", str(backup)).returncode == 0
    assert verifies(fresh)


def test_backup_keep_makes_the_directory_it_rotates(migrated: Path, tmp_path: Path) -> None:
    out = tmp_path / "not-yet"
    for _ in range(3):
        proc = run(migrated, "deploy", "backup", "--out", str(out), "--keep", "2")
        assert proc.returncode == 0, proc.stderr
    assert out.is_dir() and len(list(out.glob("nluserve-*.db"))) == 2
    afile = tmp_path / "afile"
    afile.write_text("x")
    one_line_error(run(migrated, "deploy", "backup", "--out", str(afile), "--keep", "2"), "a file")


def test_usage_names_tenants_by_name(migrated: Path) -> None:
    from datetime import UTC, datetime

    from nluserve.settings import Settings
    from nluserve.tenancy.service import TenancyService
    from nluserve.tenancy.values import AuditRecord
    from tests.support.audit_rows import audit_row

    tenant = json.loads(run(migrated, "tenant", "create", "acme-corp", "--json").stdout)["tenant"]
    service = TenancyService.from_settings(Settings(data_dir=migrated, models=[]))
    try:
        row = audit_row("r1", tenant_id=tenant["id"], ts=datetime.now(UTC))
        service.repo.insert_audit([AuditRecord(**row)])
    finally:
        service.repo.close()
    proc = run(migrated, "usage", COLUMNS="200")
    assert proc.returncode == 0, proc.stderr
    assert "acme-corp" in proc.stdout and tenant["id"][:8] not in proc.stdout
