"""`nluserve deploy render`: the promises the rendered files must keep, read from the files."""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nluserve.cli.app import app
from nluserve.deploy.render import RenderError, render_files
from nluserve.deploy.sizing import Machine, recommend_workers
from nluserve.server.run import KEEPALIVE_S
from tests.integration.deploy.conftest import DOMAIN, options, render, settings

NGINX = "etc/nginx/sites-available/nluserve.conf"
NGINX_HTTP = "etc/nginx/sites-available/nluserve-http.conf"
CADDY = "etc/caddy/Caddyfile"
ENV = "etc/nluserve/nluserve.env"
UNIT = "etc/systemd/system/nluserve.service"


def _files(**overrides: object) -> dict[str, str]:
    return {str(f.path): f.text for f in render_files(options(**overrides))}


def _directives(text: str, name: str) -> list[str]:
    """Values of ``name=value`` (systemd) or ``name value;`` (nginx) lines, comments ignored."""
    pattern = rf"^\s*{re.escape(name)}(?:=|\s+)(.*?);?\s*$"
    return [m.group(1) for m in re.finditer(pattern, text, re.M)]


def _upstream_block(nginx: str) -> str:
    m = re.search(r"^upstream nluserve \{\n(.*?)^\}", nginx, re.M | re.S)
    assert m, "the rendered nginx site has no upstream block"
    return m[1]


def _seconds(value: str) -> int:
    m = re.fullmatch(r"(\d+)s", value)
    assert m, value
    return int(m[1])


def _env(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if re.match(r"^[A-Z_]+=", line))
    return {k: v for k, v in pairs}


@pytest.mark.parametrize("proxy", ["nginx", "caddy"])
def test_service_binds_loopback_only_and_trusts_only_the_local_proxy(proxy: str) -> None:
    files = _files(proxy=proxy, backends=2)
    env = _env(files[ENV])
    assert env["NLUSERVE_HOST"] == "127.0.0.1"
    assert json.loads(env["NLUSERVE_TRUSTED_PROXIES"].strip("'")) == ["127.0.0.1"]
    for path, text in files.items():
        assert "0.0.0.0" not in text, path
    proxy_text = files[NGINX] if proxy == "nginx" else files[CADDY]
    assert "127.0.0.1:8000" in proxy_text and "127.0.0.1:8001" in proxy_text


@pytest.mark.parametrize("proxy", ["nginx", "caddy"])
def test_proxy_body_limit_equals_the_services_limit(proxy: str) -> None:
    files = _files(proxy=proxy, settings=settings(max_body_bytes=2_500_000))
    assert _env(files[ENV])["NLUSERVE_MAX_BODY_BYTES"] == "2500000"
    if proxy == "nginx":
        assert _directives(files[NGINX], "client_max_body_size") == ["2500000"]
    else:
        assert _directives(files[CADDY], "max_size") == ["2500000"]


def test_proxy_waits_longer_than_the_service_deadline_and_systemd_longer_than_the_drain() -> None:
    files = _files(settings=settings(request_timeout_s=42.5, graceful_timeout_s=25))
    assert _env(files[ENV])["NLUSERVE_REQUEST_TIMEOUT_S"] == "42.5"
    for name in ("proxy_read_timeout", "proxy_send_timeout"):
        (value,) = _directives(files[NGINX], name)
        assert 42.5 < int(value.rstrip("s")) <= 60
    caddy = _files(proxy="caddy", settings=settings(request_timeout_s=42.5))[CADDY]
    (header_timeout,) = _directives(caddy, "response_header_timeout")
    assert int(header_timeout.rstrip("s")) > 42.5
    unit = files[UNIT]
    assert _directives(unit, "KillSignal") == ["SIGTERM"]
    assert int(_directives(unit, "TimeoutStopSec")[0]) > 25
    assert _env(files[ENV])["NLUSERVE_GRACEFUL_TIMEOUT_S"] == "25"


def test_nginx_gives_a_slow_client_the_services_own_client_timeout() -> None:
    files = _files(settings=settings(client_timeout_s=12.5))
    assert _env(files[ENV])["NLUSERVE_CLIENT_TIMEOUT_S"] == "13"
    for name in ("client_body_timeout", "client_header_timeout"):
        assert [_seconds(v) for v in _directives(files[NGINX], name)] == [13], name


def test_unit_is_hardened_and_writes_only_the_data_directory() -> None:
    unit = _files(data_dir="/srv/nlu", prefix="/opt/nlu", user="svc")[UNIT]
    assert _directives(unit, "ReadWritePaths") == ["/srv/nlu"]
    assert _directives(unit, "ExecStartPre") == ["/opt/nlu/.venv/bin/nluserve migrate"]
    assert _directives(unit, "ExecStart") == ["/opt/nlu/.venv/bin/nluserve serve"]
    assert _directives(unit, "User") == ["svc"]
    assert _directives(unit, "EnvironmentFile") == ["/etc/nluserve/nluserve.env"]
    assert _directives(unit, "CapabilityBoundingSet") == [""]
    assert _directives(unit, "SystemCallFilter")[0] == "@system-service"
    for name, value in {
        "Restart": "always",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "LockPersonality": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
    }.items():
        assert _directives(unit, name) == [value], name
    assert _directives(unit, "RestrictAddressFamilies") == ["AF_INET AF_INET6 AF_UNIX"]


def test_files_are_written_with_their_modes_and_no_secret_is_set(tmp_path: Path) -> None:
    out = render(tmp_path / "set")
    env_file = out / ENV
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    hook = out / "etc/letsencrypt/renewal-hooks/deploy/reload-nginx.sh"
    assert stat.S_IMODE(hook.stat().st_mode) == 0o755
    env = _env(env_file.read_text())
    for secret in ("KEY_PEPPER", "ADMIN_KEY", "DATABASE_URL", "REDIS_URL"):
        assert f"NLUSERVE_{secret}" not in env
        assert f"# NLUSERVE_{secret}=" in env_file.read_text()


def test_tls_is_1_2_and_1_3_only_with_hsts_and_http_redirects() -> None:
    files = _files()
    assert _directives(files[NGINX], "ssl_protocols") == ["TLSv1.2 TLSv1.3"]
    assert "Strict-Transport-Security" in files[NGINX]
    http = files[NGINX_HTTP]
    assert "location ^~ /.well-known/acme-challenge/" in http
    assert f"return 301 https://{DOMAIN}$request_uri;" in http  # never the client's Host
    assert "$host" not in http
    assert "listen 443" not in http
    caddy = _files(proxy="caddy")[CADDY]
    assert "tls1.2 tls1.3" in _directives(caddy, "protocols")
    assert "Strict-Transport-Security" in caddy


def test_nginx_forwards_client_and_request_id_and_limits_rate_before_the_service() -> None:
    nginx = _files(backends=3)[NGINX]
    assert _directives(nginx, "proxy_set_header X-Forwarded-For") == ["$proxy_add_x_forwarded_for"]
    assert _directives(nginx, "proxy_set_header X-Forwarded-Proto") == ["$scheme"]
    assert _directives(nginx, "proxy_set_header X-Request-ID") == ["$nluserve_request_id"]
    assert nginx.index("limit_req_zone") < nginx.index("upstream nluserve")
    assert len(re.findall(r"^\s*server 127\.0\.0\.1:\d+", nginx, re.M)) == 3
    assert _directives(nginx, "keepalive") == ["32"]
    assert "location = /metrics" in nginx


@pytest.mark.parametrize(
    ("given", "forwarded"),
    [("e2e-1:a.B_c", True), ("x" * 128, True), ("x" * 129, False), ("a b", False), ("", False)],
)
def test_proxies_forward_only_a_request_id_the_service_would_keep(
    given: str, forwarded: bool
) -> None:
    from nluserve.api.middleware import _SAFE_ID

    assert bool(_SAFE_ID.match(given)) is forwarded  # the rule below is the service's
    nginx = _files()[NGINX]
    m = re.search(r"map \$http_x_request_id \$nluserve_request_id \{\n(.*?)\n\}", nginx, re.S)
    assert m, "no X-Request-ID map"
    entries = dict(re.findall(r'^\s*("[^"]*"|\S+)\s+(\S+);', m[1], re.M))
    assert entries.pop("default") == "$request_id"
    ((pattern, value),) = entries.items()
    assert value == "$http_x_request_id" and pattern.startswith('"~')
    assert bool(re.match(pattern[2:-1], given)) is forwarded
    caddy = _files(proxy="caddy")[CADDY]
    (matcher,) = _directives(caddy, "@no_request_id")
    negated, kind, name, regexp = matcher.split()
    assert (negated, kind, name) == ("not", "header_regexp", "X-Request-ID")
    assert bool(re.match(regexp, given)) is forwarded
    assert _directives(caddy, "request_header @no_request_id X-Request-ID") == [
        "{http.request.uuid}"
    ]


@pytest.mark.parametrize("proxy", ["nginx", "caddy"])
def test_proxy_closes_idle_upstream_connections_before_the_service_does(proxy: str) -> None:
    if proxy == "nginx":
        upstream = _upstream_block(_files()[NGINX])
        (idle,) = _directives(upstream, "keepalive_timeout")
    else:
        (idle,) = _directives(_files(proxy="caddy")[CADDY], "keepalive")
    assert 0 < _seconds(idle) < KEEPALIVE_S


def test_proxy_csp_leaves_the_web_console_to_the_services_own_policy() -> None:
    nginx = _files()[NGINX]
    assert _directives(nginx, "add_header Content-Security-Policy") == ["$nluserve_csp always"]
    # nginx adds no header for an empty value: none where the response already has a policy.
    m = re.search(
        r"map \$upstream_http_content_security_policy \$nluserve_csp \{\n(.*?)\n\}", nginx, re.S
    )
    assert m, "the CSP does not depend on the upstream's"
    entries = dict(re.findall(r'^\s*("[^"]*"|\S+)\s+("[^"]*"|\S+);', m[1], re.M))
    assert entries == {"default": '""', '""': "$nluserve_default_csp"}
    caddy = _files(proxy="caddy")[CADDY]
    (matcher,) = _directives(caddy, "@api")
    assert "/console*" in matcher.split()[2:] and matcher.startswith("not path ")
    (csp,) = _directives(caddy, "header @api Content-Security-Policy")
    assert "default-src 'none'" in csp


def test_several_backends_become_template_instances_sharing_one_migration_lock() -> None:
    files = _files(backends=3, port=9000)
    assert UNIT not in files
    unit = files["etc/systemd/system/nluserve@.service"]
    assert _directives(unit, "Environment") == ["NLUSERVE_PORT=%i"]
    assert _directives(unit, "ExecStartPre")[0].startswith("/usr/bin/flock ")
    target = files["etc/systemd/system/nluserve.target"]
    assert re.findall(r"nluserve@(\d+)\.service", _directives(target, "Wants")[0]) == [
        "9000",
        "9001",
        "9002",
    ]
    assert "NLUSERVE_PORT" not in _env(files[ENV])  # EnvironmentFile= would override %i
    prometheus = files["etc/prometheus/prometheus.yml"]
    assert "'127.0.0.1:9000', '127.0.0.1:9001', '127.0.0.1:9002'" in prometheus


def test_alerts_and_dashboard_query_only_metrics_nluserve_exports() -> None:
    from prometheus_client.metrics import MetricWrapperBase

    from nluserve.observability import metrics

    exported = set()
    for obj in vars(metrics).values():
        if not isinstance(obj, MetricWrapperBase):
            continue
        for family in obj.describe():
            suffixes = {
                "counter": ["_total"],
                "histogram": ["_bucket", "_sum", "_count"],
            }.get(family.type, [""])
            exported |= {family.name + s for s in suffixes}
    files = _files()
    queried = set()
    for path in ("etc/prometheus/nluserve-alerts.yml", "grafana/nluserve-dashboard.json"):
        queried |= set(re.findall(r"\bnluserve_[a-z_]+", files[path]))
    queried -= {"nluserve_request_id"}
    assert queried and queried <= exported, queried - exported
    alerts = files["etc/prometheus/nluserve-alerts.yml"]
    assert "histogram_quantile(0.99" in alerts and "nluserve_quota_store_errors_total" in alerts
    assert 'up{job="nluserve"} == 0' in alerts


@pytest.mark.parametrize(
    ("cores", "memory_gib", "instances", "expected"),
    [
        (16, 64.0, 1, 16),  # bounded by cores
        (16, 4.0, 1, 3),  # bounded by memory: (4 - 1) / 1
        (16, 1.5, 1, 1),  # never below one
        (8, 64.0, 3, 2),  # shared between instances
    ],
)
def test_workers_are_sized_from_cores_and_memory(
    cores: int, memory_gib: float, instances: int, expected: int
) -> None:
    assert recommend_workers(Machine(cores, memory_gib), instances) == expected


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"domain": "not a domain"}, "--domain"),
        ({"user": "root"}, "--user"),
        ({"data_dir": "relative/data"}, "--data-dir"),
        ({"prefix": "/opt/has space"}, "--prefix"),
        ({"backends": 0}, "--backends"),
        ({"port": 80}, "--port"),
        ({"cores": 0}, "--cores"),
        ({"data_dir": "/opt/nluserve"}, "--data-dir /opt/nluserve must not be --prefix"),
        ({"data_dir": "/opt"}, "--data-dir /opt must not be --prefix /opt/nluserve or contain"),
        ({"data_dir": "/"}, "--data-dir / must not be --prefix"),
        ({"data_dir": "/opt/nluserve/data"}, "must not be inside --prefix /opt/nluserve"),
        ({"data_dir": "/opt/nluserve/../data"}, "without spaces/quotes/'..'"),
        ({"data_dir": "/home/svc/data"}, "--data-dir /home/svc/data is under /home"),
        ({"prefix": "/root/nluserve"}, "--prefix /root/nluserve is under /root, .*ProtectHome"),
        ({"backup_dir": "/run/user/1000/b"}, "--backup-dir /run/user/1000/b is under /run/user"),
    ],
)
def test_options_that_cannot_work_are_refused(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(RenderError, match=message):
        render_files(options(**overrides))


def test_paths_that_only_look_like_protected_ones_are_accepted() -> None:
    files = _files(prefix="/opt/nluserve-code", data_dir="/homework/nluserve", backup_dir="/run/u")
    assert _directives(files[UNIT], "ReadWritePaths") == ["/homework/nluserve"]


@pytest.mark.parametrize(
    ("cores", "workers", "backends", "threads"),
    [
        (8, 4, 1, 2),
        (8, 4, 2, 1),  # the audit's case: 2 x 4 x 2 = 16 runners on 8 cores before
        (32, 2, 4, 4),
        (2, 4, 1, 1),  # never below one
    ],
)
def test_env_file_shares_the_cores_between_every_instances_workers(
    cores: int, workers: int, backends: int, threads: int
) -> None:
    env = _env(_files(cores=cores, workers=workers, backends=backends)[ENV])
    assert env["NLUSERVE_WORKERS"] == str(workers)
    assert env["NLUSERVE_INFERENCE_THREADS"] == str(threads)
    assert threads * workers * backends <= max(cores, workers * backends)


def test_cli_render_writes_the_set_and_reports_the_worker_count(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["deploy", "render", "--domain", DOMAIN, "--out", str(out), "--proxy", "caddy"]
    sizing = ["--cores", "4", "--memory-gib", "3.5", "--json"]
    result = CliRunner().invoke(app, [*args, *sizing])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["workers"] == 2  # (3.5 - 1) / 1 GiB, under 4 cores
    assert (out / CADDY).exists() and not (out / NGINX).exists()
    env = _env((out / ENV).read_text())
    assert env["NLUSERVE_WORKERS"] == "2"
    assert env["NLUSERVE_INFERENCE_THREADS"] == "2"  # --cores 4, not this machine's


def test_cli_render_sizes_threads_for_every_backend_and_explains_a_refused_path(
    tmp_path: Path,
) -> None:
    args = ["deploy", "render", "--domain", DOMAIN, "--out", str(tmp_path / "out")]
    sizing = ["--cores", "8", "--memory-gib", "64", "--backends", "2"]
    result = CliRunner().invoke(app, [*args, *sizing, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["workers"] == 4
    env = _env((tmp_path / "out" / ENV).read_text())
    assert (env["NLUSERVE_WORKERS"], env["NLUSERVE_INFERENCE_THREADS"]) == ("4", "1")
    refused = CliRunner().invoke(app, [*args, *sizing, "--data-dir", "/opt/nluserve"])
    assert refused.exit_code == 1
    assert "--data-dir /opt/nluserve must not be --prefix" in refused.output


def test_admin_key_command_prints_a_key_the_service_accepts() -> None:
    from nluserve.tenancy.keys import parse

    result = CliRunner().invoke(app, ["deploy", "admin-key"])
    assert result.exit_code == 0
    assert parse(result.stdout.strip()) is not None


def test_alerts_are_sent_to_an_alertmanager_on_loopback() -> None:
    import yaml

    config = yaml.safe_load(_files()["etc/prometheus/prometheus.yml"])
    [manager] = config["alerting"]["alertmanagers"]
    assert manager["static_configs"][0]["targets"] == ["127.0.0.1:9093"]
    assert config["rule_files"] == ["nluserve-alerts.yml"]


def test_a_second_render_into_the_same_directory_leaves_no_stale_file(tmp_path: Path) -> None:
    out = tmp_path / "set"
    render(out, proxy="nginx", backends=2)
    assert (out / "etc/systemd/system/nluserve@.service").exists() and (out / NGINX).exists()
    (out / "notes.txt").write_text("mine")  # not the render's: left alone
    render(out, proxy="caddy", backends=1)
    files = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    expected = {str(f.path) for f in render_files(options(proxy="caddy", backends=1))}
    assert files == expected | {"notes.txt", ".nluserve-render"}
