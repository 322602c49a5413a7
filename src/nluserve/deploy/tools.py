"""The real validators (nginx -t, caddy validate, systemd-analyze, promtool, logrotate, sh -n).

Each check copies what it validates into a scratch directory and points machine-specific paths
(certificates, log files, the install prefix) there, so that it runs unprivileged on any machine
and tests the configuration rather than the state of the machine that runs it.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Status = Literal["ok", "failed", "not checked"]
TOOL_TIMEOUT_S = 60


@dataclass(frozen=True)
class CheckResult:
    """The verdict of one tool on one file (or a set of files)."""

    target: str
    tool: str
    status: Status
    detail: str = ""


@dataclass(frozen=True)
class _Run:
    code: int
    output: str


def _run(argv: Sequence[str], cwd: Path, env: dict[str, str] | None = None) -> _Run:
    proc = subprocess.run(
        list(argv),
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT_S,
        check=False,
    )
    return _Run(proc.returncode, (proc.stdout + proc.stderr).strip())


def _missing(target: str, tool: str) -> CheckResult:
    return CheckResult(target, tool, "not checked", f"{tool} is not installed")


def _verdict(target: str, tool: str, run: _Run, ok: bool | None = None) -> CheckResult:
    passed = run.code == 0 if ok is None else ok
    return CheckResult(target, tool, "ok" if passed else "failed", "" if passed else run.output)


def self_signed(directory: Path, domain: str) -> tuple[Path, Path]:
    """A throw-away certificate and key for ``nginx -t`` (it opens and parses both)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(domain)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


_NGINX_CERT = re.compile(r"^(\s*ssl_(?:certificate|trusted_certificate))\s+\S+;", re.M)
_NGINX_KEY = re.compile(r"^(\s*ssl_certificate_key)\s+\S+;", re.M)
_NGINX_LOG = re.compile(r"^(\s*(?:access|error)_log)\s+(\S+?)(;|\s)", re.M)


def check_nginx(sites: list[Path], scratch: Path, target: str) -> CheckResult:
    """``nginx -t`` on a wrapper nginx.conf that includes the sites inside ``http {}``."""
    nginx = shutil.which("nginx") or _sbin("nginx")
    if nginx is None:
        return _missing(target, "nginx -t")
    work = scratch / "nginx"
    (work / "logs").mkdir(parents=True)
    (work / "temp").mkdir()
    domain = _first(r"^\s*server_name\s+([^\s;]+)", "\n".join(p.read_text() for p in sites))
    cert, key = self_signed(work, domain or "localhost")
    includes = []
    for site in sites:
        text = site.read_text(encoding="utf-8")
        text = _NGINX_CERT.sub(rf"\1 {cert};", text)
        text = _NGINX_KEY.sub(rf"\1 {key};", text)
        text = _NGINX_LOG.sub(lambda m: f"{m[1]} {work / 'logs' / Path(m[2]).name}{m[3]}", text)
        copy = work / site.name
        copy.write_text(text, encoding="utf-8")
        includes.append(f"    include {copy};")
    temp = work / "temp"
    (work / "nginx.conf").write_text(
        f"pid {work / 'nginx.pid'};\n"
        f"error_log {work / 'logs' / 'error.log'};\n"
        "events {}\n"
        "http {\n"
        f"    client_body_temp_path {temp / 'body'};\n"
        f"    proxy_temp_path {temp / 'proxy'};\n"
        f"    fastcgi_temp_path {temp / 'fastcgi'};\n"
        f"    uwsgi_temp_path {temp / 'uwsgi'};\n"
        f"    scgi_temp_path {temp / 'scgi'};\n" + "\n".join(includes) + "\n}\n",
        encoding="utf-8",
    )
    argv = [nginx, "-t", "-p", str(work), "-c", str(work / "nginx.conf")]
    argv += ["-e", str(work / "logs" / "error.log")]
    return _verdict(target, "nginx -t", _run(argv, work))


def check_caddy(caddyfile: Path, scratch: Path, target: str) -> CheckResult:
    """``caddy validate`` (adapts and provisions every module without serving)."""
    caddy = shutil.which("caddy")
    if caddy is None:
        return _missing(target, "caddy validate")
    work = scratch / "caddy"
    (work / "logs").mkdir(parents=True)
    text = caddyfile.read_text(encoding="utf-8")
    text = re.sub(
        r"(output file )(\S+)", lambda m: f"{m[1]}{work / 'logs' / Path(m[2]).name}", text
    )
    copy = work / "Caddyfile"
    copy.write_text(text, encoding="utf-8")
    env = {"HOME": str(work), "XDG_DATA_HOME": str(work / "data")}
    env["XDG_CONFIG_HOME"] = str(work / "config")
    env["PATH"] = "/usr/bin:/bin"
    argv = [caddy, "validate", "--config", str(copy), "--adapter", "caddyfile"]
    return _verdict(target, "caddy validate", _run(argv, work, env))


_EXEC = re.compile(r"^Exec\w*=[-@:+!]*(/\S+)", re.M)


def check_systemd(units: list[Path], scratch: Path, target: str) -> CheckResult:
    """``systemd-analyze verify``; executables missing here are stubbed, and any per-line
    diagnostic counts as a failure (systemd ignores bad lines and still exits 0)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        return _missing(target, "systemd-analyze verify")
    work = scratch / "systemd"
    (work / "units").mkdir(parents=True)
    stubs: dict[str, Path] = {}
    copies = []
    for unit in units:
        text = unit.read_text(encoding="utf-8")
        for exe in _EXEC.findall(text):
            if not Path(exe).exists() and exe not in stubs:
                stub = work / "stubs" / exe.lstrip("/")
                stub.parent.mkdir(parents=True, exist_ok=True)
                stub.write_text("#!/bin/sh\nexit 0\n")
                stub.chmod(0o755)
                stubs[exe] = stub
        for exe, stub in stubs.items():
            text = text.replace(exe, str(stub))
        names = [unit.name]
        if unit.name.endswith("@.service"):  # a template verifies as one of its instances
            names = [unit.name.replace("@.", f"@{_first_instance(units)}.")]
        for name in names:
            copy = work / "units" / name
            copy.write_text(text, encoding="utf-8")
            copies.append(str(copy))
    run = _run([analyze, "verify", "--man=no", "--generators=no", *copies], work / "units")
    diagnostics = [
        line for line in run.output.splitlines() if re.search(r"\.(service|timer|target)", line)
    ]
    if run.code != 0 and not diagnostics:
        reason = run.output.splitlines()[0] if run.output else f"exit {run.code}"
        return CheckResult(
            target, "systemd-analyze verify", "not checked", f"cannot run here: {reason}"
        )
    if diagnostics or run.code != 0:
        detail = "\n".join(diagnostics) or run.output
        return CheckResult(target, "systemd-analyze verify", "failed", detail)
    stubbed = "stubbed (absent here): " + ", ".join(sorted(stubs)) if stubs else ""
    return CheckResult(target, "systemd-analyze verify", "ok", stubbed)


def _first_instance(units: list[Path]) -> str:
    for unit in units:
        if unit.suffix == ".target":
            found = _first(r"^Wants=.*?nluserve@(\d+)\.service", unit.read_text(encoding="utf-8"))
            if found:
                return found
    return "8000"


def check_promtool(config: Path | None, rules: list[Path], target: str) -> list[CheckResult]:
    """``promtool check config`` (follows rule_files) and ``promtool check rules``."""
    promtool = shutil.which("promtool")
    results = []
    if config is not None:
        name = f"{target}/{config.name}"
        if promtool is None:
            results.append(_missing(name, "promtool check config"))
        else:
            run = _run([promtool, "check", "config", config.name], config.parent)
            results.append(_verdict(name, "promtool check config", run))
    for rule in rules:
        name = f"{target}/{rule.name}"
        if promtool is None:
            results.append(_missing(name, "promtool check rules"))
        else:
            run = _run([promtool, "check", "rules", rule.name], rule.parent)
            results.append(_verdict(name, "promtool check rules", run))
    return results


def check_logrotate(config: Path, scratch: Path, target: str) -> CheckResult:
    """``logrotate --debug`` with a scratch state file: parses, rotates nothing."""
    logrotate = shutil.which("logrotate") or _sbin("logrotate")
    if logrotate is None:
        return _missing(target, "logrotate -d")
    work = scratch / "logrotate"
    work.mkdir(parents=True)
    run = _run([logrotate, "-d", "-s", str(work / "state"), str(config)], work)
    # logrotate skips an unknown directive with an "error:" line and still exits 0.
    errors = [line for line in run.output.splitlines() if line.startswith("error:")]
    detail = _Run(run.code, "\n".join(errors) or run.output)
    return _verdict(target, "logrotate -d", detail, ok=run.code == 0 and not errors)


def check_shell(script: Path, target: str) -> CheckResult:
    """``sh -n``: the hook parses (it runs only after a real renewal)."""
    sh = shutil.which("sh")
    if sh is None:
        return _missing(target, "sh -n")
    return _verdict(target, "sh -n", _run([sh, "-n", str(script)], script.parent))


def _sbin(name: str) -> str | None:
    """Debian puts nginx and logrotate in /usr/sbin, outside a normal user's PATH."""
    for directory in ("/usr/sbin", "/sbin", "/usr/local/sbin"):
        found = shutil.which(name, path=directory)
        if found:
            return found
    return None


def _first(pattern: str, text: str) -> str | None:
    m = re.search(pattern, text, re.M)
    return m.group(1) if m else None
