"""``nluserve deploy render``: one consistent set of host files from the templates next to this.

Every value that two files must agree on (body limit, timeouts, ports, paths) is computed once
here and substituted into both, so the proxy and the service cannot drift apart.
"""

from __future__ import annotations

import math
import os
import re
import string
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Literal

from nluserve.errors import NluserveError
from nluserve.settings import Settings, usable_cores

Proxy = Literal["nginx", "caddy"]

ENV_PATH = PurePosixPath("etc/nluserve/nluserve.env")
SYSTEMD_DIR = PurePosixPath("etc/systemd/system")
NGINX_DIR = PurePosixPath("etc/nginx/sites-available")
CADDYFILE = PurePosixPath("etc/caddy/Caddyfile")
DEPLOY_HOOK = PurePosixPath("etc/letsencrypt/renewal-hooks/deploy/reload-nginx.sh")
LOGROTATE = PurePosixPath("etc/logrotate.d/nluserve")
PROMETHEUS_DIR = PurePosixPath("etc/prometheus")
DASHBOARD = PurePosixPath("grafana/nluserve-dashboard.json")

_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_MAX_BACKENDS = 32

DEFAULT_PREFIX = PurePosixPath("/opt/nluserve")
DEFAULT_DATA_DIR = PurePosixPath("/var/lib/nluserve")
DEFAULT_BACKUP_DIR = PurePosixPath("/var/backups/nluserve")
DEFAULT_LOG_DIR = PurePosixPath("/var/log/nluserve")
DEFAULT_ACME_WEBROOT = PurePosixPath("/var/www/letsencrypt")
# What the units' ProtectHome=yes makes inaccessible; ReadWritePaths= cannot expose it again.
PROTECTED_HOMES = tuple(PurePosixPath(p) for p in ("/home", "/root", "/run/user"))


class RenderError(NluserveError):
    """Options that cannot make a working deployment."""


# Only ``@name@`` is a placeholder; a lone ``@`` (Caddy matchers, e-mail) is left alone.
_PLACEHOLDER = r"""
@(?:
  (?P<named>[a-z_][a-z0-9_]*)@ |
  (?P<escaped>(?!)) |
  (?P<braced>(?!)) |
  (?P<invalid>(?!))
)
"""


class _Template(string.Template):
    """``@name@`` placeholders: ``$`` and ``{{ }}`` belong to nginx, Prometheus and Grafana."""

    delimiter = "@"
    flags = re.NOFLAG
    pattern = _PLACEHOLDER  # type: ignore[assignment]  # Template compiles a str pattern


@dataclass(frozen=True)
class RenderOptions:
    """What the operator chose; limits come from the same Settings the service will read."""

    domain: str
    workers: int
    proxy: Proxy = "nginx"
    backends: int = 1
    user: str = "nluserve"
    prefix: PurePosixPath = DEFAULT_PREFIX
    data_dir: PurePosixPath = DEFAULT_DATA_DIR
    port: int = 8000
    acme_email: str = ""
    backup_dir: PurePosixPath = DEFAULT_BACKUP_DIR
    backup_keep: int = 14
    log_dir: PurePosixPath = DEFAULT_LOG_DIR
    acme_webroot: PurePosixPath = DEFAULT_ACME_WEBROOT
    rate_per_s: int = 50
    burst: int = 100
    p99_alert_s: float = 1.0
    cores: int = field(default_factory=usable_cores)
    settings: Settings = field(default_factory=Settings)

    @property
    def ports(self) -> list[int]:
        return [self.port + i for i in range(self.backends)]

    @property
    def inference_threads(self) -> int:
        """Every instance's workers share the machine's cores: on its own, each would take
        cores / workers and the instances together would run backends times too many."""
        return max(1, self.cores // (self.workers * self.backends))

    @property
    def proxy_timeout_s(self) -> int:
        """Longer than the service's own deadline, so the client gets nluserve's 504 body."""
        return math.ceil(self.settings.request_timeout_s) + 5

    @property
    def timeout_stop_s(self) -> int:
        """Longer than the graceful drain, so systemd never kills calls gunicorn is finishing."""
        return math.ceil(self.settings.graceful_timeout_s) + 10

    def validate(self) -> None:
        """Refuse options that would render a broken or unsafe set."""
        problems = []
        if not _DOMAIN.match(self.domain):
            problems.append(f"--domain {self.domain!r} is not a DNS name (lower case, dotted)")
        if not _USER.match(self.user) or self.user == "root":
            problems.append(f"--user {self.user!r} must be a dedicated non-root system user")
        for name, path in (
            ("--prefix", self.prefix),
            ("--data-dir", self.data_dir),
            ("--backup-dir", self.backup_dir),
        ):
            if not path.is_absolute() or ".." in path.parts or re.search(r"[\s\"'%$\\]", str(path)):
                problems.append(
                    f"{name} {path} must be an absolute path without spaces/quotes/'..'"
                )
            home = next((h for h in PROTECTED_HOMES if path.is_relative_to(h)), None)
            if home is not None:
                problems.append(
                    f"{name} {path} is under {home}, which the units' ProtectHome=yes hides "
                    "from the service"
                )
        # The service may write its data directory (ReadWritePaths=, and README makes it the
        # owner), so that must not hold the code; the code is cloned into an empty --prefix.
        if self.prefix.is_relative_to(self.data_dir):
            problems.append(
                f"--data-dir {self.data_dir} must not be --prefix {self.prefix} or contain it: "
                "the service could rewrite its own code"
            )
        elif self.data_dir.is_relative_to(self.prefix):
            problems.append(
                f"--data-dir {self.data_dir} must not be inside --prefix {self.prefix}: "
                "keep the code and the service's state apart"
            )
        if not 1 <= self.backends <= _MAX_BACKENDS:
            problems.append(f"--backends must be 1..{_MAX_BACKENDS}")
        if self.port < 1024 or self.port + self.backends - 1 > 65535:
            problems.append("--port must leave room for every backend in 1024..65535")
        if self.workers < 1:
            problems.append("--workers must be at least 1")
        if self.cores < 1:
            problems.append("--cores must be at least 1")
        if self.acme_email and not _EMAIL.match(self.acme_email):
            problems.append(f"--email {self.acme_email!r} is not an e-mail address")
        if problems:
            raise RenderError("; ".join(problems))


@dataclass(frozen=True)
class RenderedFile:
    """One file of the set: where it goes (relative to the target root) and its mode."""

    path: PurePosixPath
    text: str
    mode: int = 0o644


def _template(name: str) -> _Template:
    source = resources.files("nluserve.deploy").joinpath("templates", name)
    return _Template(source.read_text(encoding="utf-8"))


def _fill(name: str, values: dict[str, str]) -> str:
    try:
        text = _template(name).substitute(values)
    except KeyError as exc:  # a template names a value this module never computes
        raise RenderError(f"template {name} uses unknown placeholder {exc}") from None
    return text


def _values(opts: RenderOptions) -> dict[str, str]:
    s = opts.settings
    multi = opts.backends > 1
    instance_units = " ".join(f"nluserve@{p}.service" for p in opts.ports)
    return {
        "domain": opts.domain,
        "proxy": opts.proxy,
        "user": opts.user,
        "prefix": str(opts.prefix),
        "data_dir": str(opts.data_dir),
        "backup_dir": str(opts.backup_dir),
        "backup_keep": str(opts.backup_keep),
        "log_dir": str(opts.log_dir),
        "log_owner": "caddy" if opts.proxy == "caddy" else "root",
        "acme_webroot": str(opts.acme_webroot),
        "acme_email": opts.acme_email or f"admin@{opts.domain}",
        "workers": str(opts.workers),
        "inference_threads": str(opts.inference_threads),
        "cores": str(opts.cores),
        "backends": str(opts.backends),
        "port": str(opts.port),
        "ports": ", ".join(str(p) for p in opts.ports),
        "max_body_bytes": str(s.max_body_bytes),
        "request_timeout_s": _number(s.request_timeout_s),
        "client_timeout_s": str(math.ceil(s.client_timeout_s)),
        "graceful_timeout_s": _number(s.graceful_timeout_s),
        "proxy_timeout_s": str(opts.proxy_timeout_s),
        "timeout_stop_s": str(opts.timeout_stop_s),
        "rate_per_s": str(opts.rate_per_s),
        "burst": str(opts.burst),
        "p99_alert_s": _number(opts.p99_alert_s),
        "upstream_servers": "\n".join(
            f"    server 127.0.0.1:{p} max_fails=3 fail_timeout=10s;" for p in opts.ports
        ),
        "upstream_addresses": " ".join(f"127.0.0.1:{p}" for p in opts.ports),
        "scrape_targets": ", ".join(f"'127.0.0.1:{p}'" for p in opts.ports),
        "instance_units": instance_units,
        "main_unit": "nluserve.target" if multi else "nluserve.service",
        "unit_glob": "nluserve@*" if multi else "nluserve",
        # The port lives in each instance's unit: EnvironmentFile= would override Environment=.
        "port_line": (
            "# NLUSERVE_PORT is set by each nluserve@PORT.service instance, not here."
            if multi
            else f"NLUSERVE_PORT={opts.port}"
        ),
    }


def _unit_values(opts: RenderOptions, migrate: str) -> dict[str, str]:
    if opts.backends == 1:
        return {
            "description_suffix": "",
            "unit_extra": "",
            "service_extra": "",
            "migrate_command": migrate,
            "wanted_by": "multi-user.target",
        }
    metrics = f"{opts.data_dir}/prometheus"
    return {
        "description_suffix": " (port %i)",
        "unit_extra": "PartOf=nluserve.target\n",
        # Instances share the data directory (database, quota store, pepper) but each needs its
        # own Prometheus multiprocess directory, which `serve` empties on start: a per-instance
        # tmpfs directory is bound over it inside the unit's own mount namespace.
        "service_extra": (
            "Environment=NLUSERVE_PORT=%i\n"
            "RuntimeDirectory=nluserve-%i\n"
            "RuntimeDirectoryMode=0700\n"
            f"BindPaths=/run/nluserve-%i:{metrics}\n"
        ),
        # Instances start together: flock makes their migrations run one at a time.
        "migrate_command": f"/usr/bin/flock {opts.data_dir}/.migrate.lock {migrate}",
        "wanted_by": "nluserve.target",
    }


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def render_files(opts: RenderOptions) -> list[RenderedFile]:
    """Every file of the set, in memory."""
    opts.validate()
    values = _values(opts)
    migrate = f"{opts.prefix}/.venv/bin/nluserve migrate"
    unit = _fill("systemd/nluserve.service", {**values, **_unit_values(opts, migrate)})
    files = [
        RenderedFile(ENV_PATH, _fill("nluserve.env", values), 0o600),
        RenderedFile(
            SYSTEMD_DIR / ("nluserve@.service" if opts.backends > 1 else "nluserve.service"), unit
        ),
        RenderedFile(
            SYSTEMD_DIR / "nluserve-backup.service",
            _fill("systemd/nluserve-backup.service", values),
        ),
        RenderedFile(
            SYSTEMD_DIR / "nluserve-backup.timer", _fill("systemd/nluserve-backup.timer", values)
        ),
        RenderedFile(LOGROTATE, _fill(f"logrotate/{opts.proxy}", values)),
        RenderedFile(PROMETHEUS_DIR / "prometheus.yml", _fill("prometheus/prometheus.yml", values)),
        RenderedFile(
            PROMETHEUS_DIR / "nluserve-alerts.yml", _fill("prometheus/nluserve-alerts.yml", values)
        ),
        RenderedFile(DASHBOARD, _fill("grafana/nluserve-dashboard.json", values)),
    ]
    if opts.backends > 1:
        files.append(
            RenderedFile(SYSTEMD_DIR / "nluserve.target", _fill("systemd/nluserve.target", values))
        )
    if opts.proxy == "nginx":
        files += [
            RenderedFile(
                NGINX_DIR / "nluserve-http.conf", _fill("nginx/nluserve-http.conf", values)
            ),
            RenderedFile(NGINX_DIR / "nluserve.conf", _fill("nginx/nluserve.conf", values)),
            RenderedFile(DEPLOY_HOOK, _fill("certbot/reload-nginx.sh", values), 0o755),
        ]
        proxy_section = _fill("certbot/README-nginx.md", values)
    else:
        files.append(RenderedFile(CADDYFILE, _fill("caddy/Caddyfile", values)))
        proxy_section = _fill("caddy/README-caddy.md", values)
    files.append(
        RenderedFile(
            PurePosixPath("README.md"),
            _fill("README.md", {**values, "proxy_section": proxy_section}),
        )
    )
    return files


MANIFEST = ".nluserve-render"  # what the last render wrote into a directory


def write_files(files: list[RenderedFile], out: Path) -> list[Path]:
    """Write the set under ``out``, each file created with its final mode (never 0644 first).

    Files an earlier render wrote there and this one does not (``nluserve@.service`` after a
    switch to one backend, nginx's sites after a switch to Caddy) are removed, so that
    installing ``etc/...`` never installs a stale set beside the new one."""
    manifest = out / MANIFEST
    if manifest.exists():
        now = {str(f.path) for f in files}
        for old in manifest.read_text(encoding="utf-8").splitlines():
            if old and old not in now and ".." not in PurePosixPath(old).parts:
                out.joinpath(*PurePosixPath(old).parts).unlink(missing_ok=True)
    written = []
    for f in files:
        target = out.joinpath(*f.path.parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, f.mode)
        with open(fd, "w", encoding="utf-8") as fh:
            fh.write(f.text)
        target.chmod(f.mode)  # the umask may have taken bits away from the executable hook
        written.append(target)
    manifest.write_text("".join(f"{f.path}\n" for f in files), encoding="utf-8")
    return written
