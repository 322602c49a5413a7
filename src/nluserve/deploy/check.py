"""``nluserve deploy check DIR``: every rendered file through its real validator, plus the
cross-file promises (same body limit, same ports, loopback bind) that no single tool can see."""

from __future__ import annotations

import json
import re
import stat
import tempfile
from pathlib import Path
from typing import Any

from nluserve.deploy import tools
from nluserve.deploy.render import (
    CADDYFILE,
    DASHBOARD,
    DEPLOY_HOOK,
    ENV_PATH,
    LOGROTATE,
    NGINX_DIR,
    PROMETHEUS_DIR,
    SYSTEMD_DIR,
)
from nluserve.deploy.tools import CheckResult, Status
from nluserve.settings import ENVIRONMENT_ONLY, Settings, describe_invalid

_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def check_dir(root: Path) -> list[CheckResult]:
    """Results for every file ``deploy render`` writes that is present under ``root``."""
    results: list[CheckResult] = []
    env_file = root.joinpath(*ENV_PATH.parts)
    env: dict[str, str] = {}
    if env_file.exists():
        env_result, env = check_env(env_file, str(ENV_PATH))
        results.append(env_result)
    with tempfile.TemporaryDirectory(prefix="nluserve-check-") as tmp:
        scratch = Path(tmp)
        units = sorted(root.joinpath(*SYSTEMD_DIR.parts).glob("nluserve*"))
        if units:
            results.append(tools.check_systemd(units, scratch, str(SYSTEMD_DIR)))
        sites = sorted(root.joinpath(*NGINX_DIR.parts).glob("*.conf"))
        if sites:
            results.append(tools.check_nginx(sites, scratch, str(NGINX_DIR)))
        caddyfile = root.joinpath(*CADDYFILE.parts)
        if caddyfile.exists():
            results.append(tools.check_caddy(caddyfile, scratch, str(CADDYFILE)))
        logrotate = root.joinpath(*LOGROTATE.parts)
        if logrotate.exists():
            results.append(tools.check_logrotate(logrotate, scratch, str(LOGROTATE)))
    prometheus = root.joinpath(*PROMETHEUS_DIR.parts)
    config = prometheus / "prometheus.yml"
    rules = sorted(prometheus.glob("*alerts*.yml"))
    if config.exists() or rules:
        results += tools.check_promtool(
            config if config.exists() else None, rules, str(PROMETHEUS_DIR)
        )
    hook = root.joinpath(*DEPLOY_HOOK.parts)
    if hook.exists():
        results.append(tools.check_shell(hook, str(DEPLOY_HOOK)))
    dashboard = root.joinpath(*DASHBOARD.parts)
    if dashboard.exists():
        results.append(check_dashboard(dashboard, str(DASHBOARD)))
    if env:
        results.append(check_consistency(root, env))
    return results


class _FileOnlySettings(Settings):
    """Settings from one env file and nothing else (not this shell's environment)."""

    @classmethod
    def settings_customise_sources(  # type: ignore[override]
        cls,
        settings_cls: Any,
        init_settings: Any,
        env_settings: Any,
        dotenv_settings: Any,
        **_: Any,
    ) -> tuple[Any, ...]:
        return (init_settings, dotenv_settings)


def check_env(path: Path, target: str) -> tuple[CheckResult, dict[str, str]]:
    """Owner-only mode, only known NLUSERVE_* names, and values the service accepts."""
    from dotenv import dotenv_values

    tool = "nluserve settings"
    problems = []
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        problems.append(f"mode is {mode:04o}: it holds secrets, make it 0600")
    values = {k: v or "" for k, v in dotenv_values(path).items()}
    known = {f"NLUSERVE_{name.upper()}" for name in Settings.model_fields} | ENVIRONMENT_ONLY
    problems += [f"unknown setting {k}" for k in values if k not in known]
    try:
        _FileOnlySettings(_env_file=path)
    except Exception as exc:  # pydantic's ValidationError or SettingsError: both say what
        problems.append(f"the service would refuse it: {describe_invalid(exc)}")
    status: Status = "failed" if problems else "ok"
    return CheckResult(target, tool, status, "\n".join(problems)), values


def check_dashboard(path: Path, target: str) -> CheckResult:
    """Valid JSON, and every panel queries something."""
    try:
        dashboard = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        return CheckResult(target, "json", "failed", str(exc))
    empty = [
        str(p.get("title"))
        for p in dashboard.get("panels", [])
        if not any(t.get("expr") for t in p.get("targets", []))
    ]
    if empty:
        return CheckResult(target, "json", "failed", "panels without a query: " + ", ".join(empty))
    return CheckResult(target, "json", "ok")


def check_consistency(root: Path, env: dict[str, str]) -> CheckResult:
    """What the proxy sends must be what the service accepts, on the ports it listens on."""
    problems = []
    host = env.get("NLUSERVE_HOST", "127.0.0.1")
    if host not in _LOOPBACK and not host.startswith("unix:"):
        problems.append(f"NLUSERVE_HOST={host}: behind a proxy the service binds loopback only")
    body = env.get("NLUSERVE_MAX_BODY_BYTES", str(Settings.model_fields["max_body_bytes"].default))
    ports = _service_ports(root, env)
    proxy_files = sorted(root.joinpath(*NGINX_DIR.parts).glob("*.conf"))
    caddyfile = root.joinpath(*CADDYFILE.parts)
    if caddyfile.exists():
        proxy_files.append(caddyfile)
    for path in proxy_files:
        text = path.read_text(encoding="utf-8")
        for size in re.findall(r"(?:client_max_body_size|max_size)\s+(\S+?);?$", text, re.M):
            if size != body:
                problems.append(f"{path.name}: body limit {size} != NLUSERVE_MAX_BODY_BYTES {body}")
        upstream = {int(p) for p in re.findall(r"127\.0\.0\.1:(\d+)", text)}
        if upstream and ports and upstream != ports:
            problems.append(f"{path.name}: upstream ports {sorted(upstream)} != {sorted(ports)}")
        if re.search(r"\b0\.0\.0\.0:\d+", text):
            problems.append(f"{path.name}: proxies to 0.0.0.0")
    status: Status = "failed" if problems else "ok"
    return CheckResult("(whole set)", "consistency", status, "\n".join(problems))


def _service_ports(root: Path, env: dict[str, str]) -> set[int]:
    if "NLUSERVE_PORT" in env:
        return {int(env["NLUSERVE_PORT"])}
    target = root.joinpath(*SYSTEMD_DIR.parts, "nluserve.target")
    if target.exists():
        return {int(p) for p in re.findall(r"nluserve@(\d+)\.service", target.read_text())}
    return set()
