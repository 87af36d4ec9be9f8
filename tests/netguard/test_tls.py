"""HTTPS through the guarded backend: it connects to the checked IP address, while the TLS
server name (SNI) and the certificate check still use the URL's host name."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from vodimg.netguard import FetchFailed, UrlPolicy, fetch
from vodimg.netguard import client as netguard_client

from .servers import Origin


def _certificate_for_localhost(directory):
    """A self-signed certificate naming only the DNS name ``localhost`` (no IP address)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture
def tls_origin(tmp_path, monkeypatch):
    cert_path, key_path = _certificate_for_localhost(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    server_names = []
    context.sni_callback = lambda sock, name, ctx: server_names.append(name)
    # The guard's shared client context is made once; rebuild it trusting only this certificate.
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_path))
    netguard_client._ssl_context.cache_clear()
    server = Origin("127.0.0.1", tls=context)
    server.server_names = server_names
    yield server
    server.close()
    monkeypatch.delenv("SSL_CERT_FILE")
    netguard_client._ssl_context.cache_clear()


ALLOW_127_0_0_1 = UrlPolicy(allow=(ipaddress.ip_network("127.0.0.1/32"),), total_timeout=5.0)


def test_https_keeps_the_host_name_for_sni_and_the_certificate(tls_origin):
    body = fetch(f"https://localhost:{tls_origin.port}/ok/6", ALLOW_127_0_0_1, max_bytes=100)
    assert body == b"p" * 6
    assert tls_origin.server_names == ["localhost"]
    assert tls_origin.requests[0][2]["Host"] == f"localhost:{tls_origin.port}"


def test_https_certificate_is_checked_against_the_url_host(tls_origin):
    url = f"https://127.0.0.1:{tls_origin.port}/ok/6"      # the certificate names localhost only
    with pytest.raises(FetchFailed, match=f"^{url}: the TLS handshake failed: "
                                          r".*CERTIFICATE_VERIFY_FAILED"):
        fetch(url, ALLOW_127_0_0_1, max_bytes=100)
    assert tls_origin.requests == []
