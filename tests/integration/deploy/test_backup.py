"""`nluserve deploy backup|restore` on a real migrated SQLite database, through the CLI."""

from __future__ import annotations

import json
import re
import sqlite3
import stat
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nluserve.cli.app import app
from nluserve.deploy.backup import BackupError, pg_dump_command, prune


def _env(data_dir: Path) -> dict[str, str | None]:
    """This test's data directory, and no shared database from the surrounding shell."""
    return {
        "NLUSERVE_DATA_DIR": str(data_dir),
        "NLUSERVE_DATABASE_URL": None,
        "NLUSERVE_REDIS_URL": None,
        "NLUSERVE_KEY_PEPPER": None,
        "NLUSERVE_ADMIN_KEY": None,
    }


def _cli(data_dir: Path, *args: str) -> dict[str, object]:
    result = CliRunner(env=_env(data_dir)).invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    parsed: dict[str, object] = json.loads(result.stdout)
    return parsed


def _tenants(db: Path) -> set[str]:
    with sqlite3.connect(db) as conn:
        return {name for (name,) in conn.execute("SELECT name FROM tenants")}


def test_backup_then_change_then_restore_brings_back_the_backed_up_state(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _cli(data, "migrate")
    _cli(data, "tenant", "create", "alpha")
    db = data / "nluserve.db"

    backup = Path(str(_cli(data, "deploy", "backup", "--out", f"{tmp_path}/backups/")["backup"]))
    assert backup.parent == tmp_path / "backups" and backup.name.startswith("nluserve-")
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    assert _tenants(backup) == {"alpha"}
    # The JWT signing keys stay out: with one, a backup's holder could mint any tenant's tokens.
    assert _signing_keys(db) >= 1
    assert _signing_keys(backup) == 0
    wal = data / "nluserve.db-wal"
    assert b"PRIVATE KEY" in db.read_bytes() + (wal.read_bytes() if wal.exists() else b"")
    assert b"PRIVATE KEY" not in backup.read_bytes()

    _cli(data, "tenant", "create", "beta")
    _cli(data, "tenant", "disable", "alpha")
    assert _tenants(db) == {"alpha", "beta"}

    restored = _cli(data, "deploy", "restore", str(backup))
    assert _tenants(db) == {"alpha"}
    listed = _cli(data, "tenant", "list")
    assert isinstance(listed, list)
    assert [(t["name"], t["status"]) for t in listed] == [("alpha", "active")]
    previous = Path(str(restored["previous"]))
    assert _tenants(previous) == {"alpha", "beta"}  # what the restore replaced is kept
    # The restore made a new signing key: tokens can be issued at once.
    assert _signing_keys(db) == 1
    assert _cli(data, "token", "issue", "alpha")["access_token"]


def _signing_keys(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        (count,) = conn.execute("SELECT count(*) FROM signing_keys").fetchone()
    return int(count)


def test_backup_into_a_directory_keeps_only_the_newest(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _cli(data, "migrate")
    out = tmp_path / "backups"
    out.mkdir()
    made = [
        _cli(data, "deploy", "backup", "--out", str(out), "--keep", "2")["backup"] for _ in range(3)
    ]
    assert sorted(str(p) for p in out.glob("nluserve-*.db")) == sorted(str(p) for p in made[1:])


def test_restore_refuses_a_file_that_is_not_an_nluserve_database(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _cli(data, "migrate")
    _cli(data, "tenant", "create", "alpha")
    stranger = tmp_path / "other.db"
    with sqlite3.connect(stranger) as conn:
        conn.execute("CREATE TABLE t (x)")
    result = CliRunner(env=_env(data)).invoke(app, ["deploy", "restore", str(stranger)])
    assert result.exit_code == 1
    assert "not an nluserve database" in result.output
    assert _tenants(data / "nluserve.db") == {"alpha"}


def test_prune_removes_the_oldest_by_timestamped_name(tmp_path: Path) -> None:
    names = [f"nluserve-2026010{d}T031500000000Z.db" for d in range(1, 6)]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    removed = prune(tmp_path, 2)
    assert [p.name for p in removed] == names[:3]
    with pytest.raises(BackupError):
        prune(tmp_path, 0)


def test_pg_dump_gets_the_password_through_the_environment_not_argv(tmp_path: Path) -> None:
    url = "postgresql+psycopg://nlu:s%40cret@db.internal:5432/nluserve?sslmode=require"
    argv, env = pg_dump_command(url, tmp_path / "x.dump")
    assert env == {"PGPASSWORD": "s@cret"}
    assert "--dbname=postgresql://nlu@db.internal:5432/nluserve?sslmode=require" in argv
    assert "--exclude-table-data=signing_keys" in argv
    assert not any("cret" in a for a in argv)


def test_a_postgresql_backup_leaves_the_signing_keys_out(tmp_path: Path, postgres_url: str) -> None:
    env = {**_env(tmp_path / "data"), "NLUSERVE_DATABASE_URL": postgres_url}
    env["NLUSERVE_KEY_PEPPER"] = "0" * 64

    def cli(*args: str) -> dict[str, object]:
        result = CliRunner(env=env).invoke(app, [*args, "--json"])
        assert result.exit_code == 0, result.output
        parsed: dict[str, object] = json.loads(result.stdout)
        return parsed

    cli("migrate")
    cli("tenant", "create", "alpha")
    dump = Path(str(cli("deploy", "backup", "--out", f"{tmp_path}/backups/")["backup"]))
    assert stat.S_IMODE(dump.stat().st_mode) == 0o600
    listing = subprocess.run(
        ["pg_restore", "--list", str(dump)], capture_output=True, text=True, check=True
    ).stdout
    assert re.search(r"TABLE DATA public tenants ", listing), listing
    assert re.search(r"TABLE public signing_keys ", listing), listing  # the table, empty
    assert not re.search(r"TABLE DATA public signing_keys ", listing), listing
