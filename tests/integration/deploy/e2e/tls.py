"""A certificate authority made by the test, and clients that reach the domain on loopback.

The domain never resolves anywhere: :class:`Loopback` sends its requests to 127.0.0.1 with the
domain as TLS server name and ``Host``, which is what ``curl --resolve`` does.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@dataclass(frozen=True)
class Issued:
    cert_pem: bytes
    key_pem: bytes

    def write(self, cert: Path, key: Path) -> None:
        cert.parent.mkdir(parents=True, exist_ok=True)
        cert.write_bytes(self.cert_pem)
        key.write_bytes(self.key_pem)
        key.chmod(0o600)


class TestCa:
    """A root CA (one day) that issues server certificates for names and addresses."""

    __test__ = False  # not a test class, whatever its name says

    def __init__(self, common_name: str = "nluserve e2e test CA") -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(_name(common_name))
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False
            )
            .sign(self._key, hashes.SHA256())
        )

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(self, dns_names: list[str], ips: tuple[str, ...] = ()) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
        names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(dns_names[0]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
            .sign(self._key, hashes.SHA256())
        )
        return Issued(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def trusting(ca_pem: bytes | str) -> ssl.SSLContext:
    """A client context that trusts only ``ca_pem`` (no system roots)."""
    context = ssl.create_default_context(
        cadata=ca_pem.decode() if isinstance(ca_pem, bytes) else ca_pem
    )
    return context


class Loopback(httpx.BaseTransport):
    """Requests for ``domain`` go to 127.0.0.1, keeping the domain as SNI and ``Host``."""

    def __init__(self, domain: str, context: ssl.SSLContext) -> None:
        self.domain = domain
        self._inner = httpx.HTTPTransport(verify=context)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        _pin(request, self.domain)
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()


class AsyncLoopback(httpx.AsyncBaseTransport):
    """:class:`Loopback` for asyncio clients (the load generators)."""

    def __init__(self, domain: str, context: ssl.SSLContext, connections: int = 32) -> None:
        self.domain = domain
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        self._inner = httpx.AsyncHTTPTransport(verify=context, limits=limits)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        _pin(request, self.domain)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def _pin(request: httpx.Request, domain: str) -> None:
    if request.url.host == domain:
        # httpx set Host from the URL already; the certificate is checked against the SNI name.
        request.extensions = {**request.extensions, "sni_hostname": domain}
        request.url = request.url.copy_with(host="127.0.0.1")


def peer_certificate(port: int, domain: str, context: ssl.SSLContext) -> x509.Certificate:
    """The certificate served on 127.0.0.1:port for ``domain``, verified by ``context``."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=domain) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)
