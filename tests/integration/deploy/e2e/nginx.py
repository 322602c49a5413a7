"""nginx with the rendered sites, run unprivileged from the suite's directory on loopback ports.

Only what a test machine forces is changed, each change asserted to apply (so that template
drift fails here): the listen ports, the IPv6 listeners (loopback IPv4 only), and the
``/etc/letsencrypt`` prefix of the certificate paths. A wrapper ``nginx.conf`` stands in for
Debian's: pid, logs and temp files in the suite's directory.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import signal
from pathlib import Path
from typing import Any

from tests.integration.deploy.e2e.processes import Service, children, run, tool, wait_until

SITE_HTTP = "etc/nginx/sites-available/nluserve-http.conf"
SITE_TLS = "etc/nginx/sites-available/nluserve.conf"


def _replace(text: str, old: str, new: str, what: str) -> str:
    assert old in text, f"the rendered {what} no longer contains {old!r}"
    return text.replace(old, new)


def _worker_user() -> str:
    """As root, nginx drops its workers to an unprivileged user (Debian's nginx.conf names
    www-data); ``user nobody`` alone would also need a group called nobody."""
    if os.geteuid() != 0:
        return ""
    nobody = pwd.getpwnam("nobody")
    return f"user nobody {grp.getgrgid(nobody.pw_gid).gr_name};\n"


class Nginx:
    """nginx with the rendered sites, unprivileged paths, listening on loopback ports."""

    def __init__(self, base: Path, files: dict[str, str], http_port: int, https_port: int) -> None:
        self.binary = tool("nginx")
        self.home = base / "nginx"
        (self.home / "logs").mkdir(parents=True)
        (self.home / "temp").mkdir()
        self.files = files
        self.http_port = http_port
        self.https_port = https_port
        self.conf = self.home / "nginx.conf"
        self.access_log = base / "logs" / "nginx-access.log"
        self.service = Service(
            "nginx",
            [*self._args(), "-g", "daemon off;"],
            self.home / "logs" / "stderr.log",
        )

    def _args(self) -> list[str]:
        error_log = self.home / "logs" / "error.log"
        return [self.binary, "-p", str(self.home), "-c", str(self.conf), "-e", str(error_log)]

    def configure(self, letsencrypt: Path) -> None:
        """Write the sites with ``/etc/letsencrypt`` mapped to ``letsencrypt``; check them."""
        http = self.files[SITE_HTTP]
        http = _replace(http, "listen 80;", f"listen 127.0.0.1:{self.http_port};", SITE_HTTP)
        http = _replace(http, "listen [::]:80;", "", SITE_HTTP)
        tls = self.files[SITE_TLS]
        tls = _replace(
            tls, "listen 443 ssl http2;", f"listen 127.0.0.1:{self.https_port} ssl http2;", SITE_TLS
        )
        tls = _replace(tls, "listen [::]:443 ssl http2;", "", SITE_TLS)
        tls = _replace(tls, "/etc/letsencrypt/", f"{letsencrypt}/", SITE_TLS)
        (self.home / "nluserve-http.conf").write_text(http, encoding="utf-8")
        (self.home / "nluserve.conf").write_text(tls, encoding="utf-8")
        temp = self.home / "temp"
        self.conf.write_text(
            f"{_worker_user()}worker_processes 1;\n"
            f"pid {self.home / 'nginx.pid'};\n"
            "events { worker_connections 1024; }\n"
            "http {\n"
            f"    access_log {self.home / 'logs' / 'access.log'};\n"
            f"    client_body_temp_path {temp / 'body'};\n"
            f"    proxy_temp_path {temp / 'proxy'};\n"
            f"    fastcgi_temp_path {temp / 'fastcgi'};\n"
            f"    uwsgi_temp_path {temp / 'uwsgi'};\n"
            f"    scgi_temp_path {temp / 'scgi'};\n"
            f"    include {self.home / 'nluserve-http.conf'};\n"
            f"    include {self.home / 'nluserve.conf'};\n"
            "}\n",
            encoding="utf-8",
        )
        run([*self._args(), "-t"], timeout=30)

    def start(self) -> None:
        self.service.start()

    def reload(self, timeout: float = 20.0) -> None:
        """``nginx -s reload``, returning once every worker runs the new configuration.

        Old workers keep accepting on the shared listening socket until they exit, so a
        handshake right after SIGHUP may still meet the old certificate: wait until none of
        the workers from before the signal is left.
        """
        before = children(self.service.pid)
        os.kill(self.service.pid, signal.SIGHUP)
        wait_until(
            "nginx to replace all of its workers",
            lambda: (now := children(self.service.pid)) and not now & before,
            timeout,
        )

    def access(self, offset: int = 0) -> list[dict[str, Any]]:
        """The TLS site's JSON access log from byte ``offset`` on."""
        if not self.access_log.exists():
            return []
        with self.access_log.open("rb") as fh:
            fh.seek(offset)
            data = fh.read()
        return [json.loads(line) for line in data.decode().splitlines() if line.strip()]

    def access_offset(self) -> int:
        return self.access_log.stat().st_size if self.access_log.exists() else 0
