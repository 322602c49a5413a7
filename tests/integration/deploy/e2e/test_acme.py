"""A real ACME issuance on loopback, the way the rendered README issues the first certificate.

pebble (Let's Encrypt's test ACME server) validates the http-01 challenge against the rendered
port-80 site; certbot (the rendered ``certbot certonly --webroot`` command, pointed at pebble)
writes the certificate; nginx reloads with it and the chain verifies against pebble's root.
The domain resolves nowhere: pebble asks pebble-challtestsrv's DNS, which answers 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from tests.integration.deploy.e2e.processes import Service, run, tool, wait_until
from tests.integration.deploy.e2e.stack import DOMAIN, Stack
from tests.integration.deploy.e2e.tls import peer_certificate, trusting
from tests.support.services import free_port, wait_for_port

pytestmark = pytest.mark.slow

README = "README.md"
CERTBOT_TIMEOUT_S = 180.0
RELOAD_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class Pebble:
    directory: str  # the ACME directory URL
    management: str
    ca_file: Path  # what pebble's own HTTPS certificate chains to (the suite's test CA)


@pytest.fixture(scope="module")
def pebble(stack: Stack) -> Iterator[Pebble]:
    pebble_bin, challtestsrv = tool("pebble"), tool("pebble-challtestsrv")
    home = stack.base / "pebble"
    home.mkdir()
    # pebble speaks ACME over HTTPS only: a certificate for 127.0.0.1 from the suite's CA.
    stack.ca.issue(["localhost"], ips=("127.0.0.1",)).write(home / "cert.pem", home / "key.pem")
    ca_file = home / "test-ca.pem"
    ca_file.write_bytes(stack.ca.pem)
    dns, dns_admin, acme, admin, tls_alpn = (free_port() for _ in range(5))
    config = {
        "pebble": {
            "listenAddress": f"127.0.0.1:{acme}",
            "managementListenAddress": f"127.0.0.1:{admin}",
            "certificate": str(home / "cert.pem"),
            "privateKey": str(home / "key.pem"),
            "httpPort": stack.nginx.http_port,  # http-01 goes to the rendered port-80 site
            "tlsPort": tls_alpn,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
        }
    }
    (home / "pebble.json").write_text(json.dumps(config), encoding="utf-8")
    services = [
        Service(
            "pebble-challtestsrv",
            # Only its DNS server: every A query is answered 127.0.0.1, AAAA not at all.
            [
                challtestsrv,
                *("-dns01", f"127.0.0.1:{dns}", "-management", f"127.0.0.1:{dns_admin}"),
                *("-http01", "", "-https01", "", "-tlsalpn01", ""),
                *("-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""),
            ],
            home / "challtestsrv.log",
        ),
        Service(
            "pebble",
            [pebble_bin, "-config", str(home / "pebble.json"), "-dnsserver", f"127.0.0.1:{dns}"],
            home / "pebble.log",
            # No random validation delays, no deliberately rejected nonces: a fast, exact run.
            env={**os.environ, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"},
        ),
    ]
    try:
        for service in services:
            stack.services.append(service)
            service.start()
        for port in (dns_admin, acme, admin):
            wait_for_port(port)
        yield Pebble(f"https://127.0.0.1:{acme}/dir", f"https://127.0.0.1:{admin}", ca_file)
    finally:
        for service in services:
            service.stop()
            stack.services.remove(service)


def certbot_command(readme: str) -> list[str]:
    """The rendered README's ``certbot certonly`` command (its continuation lines joined)."""
    m = re.search(r"^sudo (certbot certonly .*?[^\\])$", readme, re.M | re.S)
    assert m, "the rendered README no longer issues the certificate with certbot certonly"
    return shlex.split(m[1].replace("\\\n", " "))


def _verifies(port: int, context: ssl.SSLContext) -> x509.Certificate:
    return peer_certificate(port, DOMAIN, context)


def _refused(port: int, context: ssl.SSLContext) -> bool:
    try:
        _verifies(port, context)
    except ssl.SSLCertVerificationError:
        return True
    return False


def test_certbot_issues_from_pebble_through_the_webroot_and_nginx_serves_it(
    stack: Stack, pebble: Pebble
) -> None:
    argv = certbot_command(stack.files[README])
    assert argv[argv.index("-w") + 1] == str(stack.base / "acme-webroot")
    assert argv[argv.index("-d") + 1] == DOMAIN
    certbot_home = stack.base / "certbot"  # certbot's /etc/letsencrypt
    argv[0] = tool("certbot")
    argv += ["--non-interactive", "--server", pebble.directory]
    for option in ("config", "work", "logs"):
        argv += [f"--{option}-dir", str(certbot_home / option)]
    challenge_log = stack.nginx.home / "logs" / "access.log"  # the port-80 site's requests
    run(argv, CERTBOT_TIMEOUT_S, env={**os.environ, "REQUESTS_CA_BUNDLE": str(pebble.ca_file)})

    live = certbot_home / "config" / "live" / DOMAIN
    chain = x509.load_pem_x509_certificates((live / "fullchain.pem").read_bytes())
    leaf = chain[0]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [DOMAIN]
    issuer = leaf.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert str(issuer).startswith("Pebble Intermediate CA"), issuer
    # pebble's validator fetched the token from the rendered port-80 site's webroot.
    fetched = [
        line
        for line in challenge_log.read_text().splitlines()
        if "/.well-known/acme-challenge/" in line and "Pebble-VA" in line and '" 200 ' in line
    ]
    assert fetched, challenge_log.read_text()[-2000:]

    roots = httpx.get(f"{pebble.management}/roots/0", verify=trusting(stack.ca.pem), timeout=10)
    assert roots.status_code == 200
    pebble_root = trusting(roots.text)
    test_ca = trusting(stack.ca.pem)
    port = stack.nginx.https_port
    try:
        stack.nginx.configure(certbot_home / "config")  # /etc/letsencrypt is certbot's now
        stack.nginx.reload()
        served = wait_until(
            "nginx serving the ACME certificate",
            lambda: _verifies(port, pebble_root),
            RELOAD_TIMEOUT_S,
        )
        assert served.serial_number == leaf.serial_number
        # A reload lets old nginx workers finish their connections with the old certificate,
        # so one handshake may still meet it: wait until none does.
        assert wait_until(
            "the old certificate to leave every nginx worker",
            lambda: _refused(port, test_ca),
            RELOAD_TIMEOUT_S,
        )
        with stack.client(ca_pem=roots.text.encode()) as client:
            r = client.get("/healthz")
        assert r.status_code == 200
        assert r.headers["strict-transport-security"].startswith("max-age=")
    finally:
        stack.nginx.configure(stack.base / "letsencrypt")
        stack.nginx.reload()
        wait_until(
            "nginx serving the test CA's certificate again",
            lambda: _verifies(port, test_ca),
            RELOAD_TIMEOUT_S,
        )
