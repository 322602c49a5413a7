"""`nluserve deploy check`: rendered sets pass nginx -t, caddy validate, systemd-analyze verify,
promtool and logrotate; broken files fail them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nluserve.cli.app import app
from tests.integration.deploy.conftest import missing_tool, render


def _check(directory: Path) -> tuple[int, list[dict[str, str]]]:
    result = CliRunner().invoke(app, ["deploy", "check", str(directory), "--json"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, json.loads(result.stdout)


def _require_every_tool(results: list[dict[str, str]]) -> None:
    for r in results:
        if r["status"] == "not checked":
            missing_tool(f"{r['tool']} ({r['detail']})")


@pytest.mark.parametrize(
    ("proxy", "backends"),
    [("nginx", 2), ("caddy", 1)],
)
def test_rendered_set_passes_the_real_tools(tmp_path: Path, proxy: str, backends: int) -> None:
    out = render(tmp_path / "set", proxy=proxy, backends=backends)
    code, results = _check(out)
    _require_every_tool(results)
    failed = [r for r in results if r["status"] != "ok"]
    assert not failed, failed
    assert code == 0
    tools = {r["tool"] for r in results}
    proxy_tool = "nginx -t" if proxy == "nginx" else "caddy validate"
    assert {
        proxy_tool,
        "systemd-analyze verify",
        "promtool check config",
        "promtool check rules",
        "logrotate -d",
        "nluserve settings",
        "consistency",
    } <= tools


def test_broken_files_fail_their_checks_and_the_exit_code(tmp_path: Path) -> None:
    out = render(tmp_path / "set", backends=2)

    def edit(relative: str, old: str, new: str) -> None:
        path = out / relative
        text = path.read_text()
        assert old in text, (relative, old)
        path.write_text(text.replace(old, new, 1))

    edit("etc/nginx/sites-available/nluserve.conf", "server_tokens off;", "server_tokens maybe;")
    edit("etc/systemd/system/nluserve@.service", "NoNewPrivileges=yes", "NoNewPrivileges=perhaps")
    edit("etc/prometheus/nluserve-alerts.yml", "> 0.05", "> > 0.05")
    edit("etc/logrotate.d/nluserve", "notifempty", "notifempty\n    rotatefrequently")
    edit(
        "etc/nluserve/nluserve.env",
        "NLUSERVE_WORKERS=2",
        "NLUSERVE_WORKERS=two\nNLUSERVE_WORKRES=2",
    )
    (out / "etc/nluserve/nluserve.env").chmod(0o644)
    edit(
        "etc/nginx/sites-available/nluserve.conf",
        "client_max_body_size 1048576;",
        "client_max_body_size 1048577;",
    )

    code, results = _check(out)
    _require_every_tool(results)
    by_tool = {r["tool"]: r for r in results}
    assert code == 1
    for tool in (
        "nginx -t",
        "systemd-analyze verify",
        "promtool check rules",
        "logrotate -d",
        "nluserve settings",
        "consistency",
    ):
        assert by_tool[tool]["status"] == "failed", by_tool[tool]
    assert 'invalid value "maybe"' in by_tool["nginx -t"]["detail"]
    assert re.search(
        r"nluserve@\d+\.service:\d+: .*perhaps", by_tool["systemd-analyze verify"]["detail"]
    )
    env_detail = by_tool["nluserve settings"]["detail"]
    assert "0644" in env_detail and "NLUSERVE_WORKRES" in env_detail and "workers" in env_detail
    assert re.search(
        r"1048577 != NLUSERVE_MAX_BODY_BYTES 1048576", by_tool["consistency"]["detail"]
    )
    assert by_tool["promtool check config"]["status"] == "failed"  # it loads the same rules


def test_check_of_a_directory_without_a_rendered_set_is_an_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["deploy", "check", str(tmp_path)])
    assert result.exit_code == 1
    assert "nothing that `nluserve deploy render` writes" in result.output


def test_the_env_file_may_hold_the_settings_read_from_the_environment(tmp_path: Path) -> None:
    from nluserve.deploy.check import check_env

    env = tmp_path / "nluserve.env"
    env.write_text("NLUSERVE_MODELS_DIR=/srv/models\nNLUSERVE_ORT_THREADS=2\nNLUSERVE_WORKERS=2\n")
    env.chmod(0o600)
    result, _ = check_env(env, "nluserve.service")
    assert result.status == "ok", result
    env.write_text("NLUSERVE_MODLES_DIR=/srv/models\n")
    result, _ = check_env(env, "nluserve.service")
    assert result.status == "failed" and "NLUSERVE_MODLES_DIR" in result.detail


@pytest.mark.parametrize(("value", "ok"), [("verbose", False), ("WARNING", True), ("debug", True)])
def test_the_env_file_log_level_is_one_the_service_starts_with(
    tmp_path: Path, value: str, ok: bool
) -> None:
    # A level the logging module does not know crashed `serve` after it had made the admin
    # tenant; under systemd that is a restart loop that `deploy check` passed.
    from nluserve.deploy.check import check_env

    env = tmp_path / "nluserve.env"
    env.write_text(f"NLUSERVE_LOG_LEVEL={value}\n")
    env.chmod(0o600)
    result, _ = check_env(env, "nluserve.service")
    assert (result.status == "ok") is ok, result
    if not ok:
        assert "log_level" in result.detail and value not in result.detail
