"""HTTPS for local use: a local CA and a server certificate for localhost, 127.0.0.1 and ::1.

Made once and kept in ``<data-dir>/tls/`` (``ca.pem``, ``ca-key.pem``, ``server.pem``,
``server-key.pem``; keys readable by the owner only). The server certificate is renewed from the
same CA when it is within 30 days of expiry, so a CA trusted once stays trusted.

tccli and the Python SDK verify against ``certifi.where()`` explicitly (REQUESTS_CA_BUNDLE has no
effect on them), so ``trust_ca`` appends the CA to a certifi bundle between marker lines,
replacing any block a previous run added.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
SERVER_DAYS = 397
RENEW_BEFORE = dt.timedelta(days=30)
SERVER_NAMES = ("localhost",)
SERVER_ADDRESSES = ("127.0.0.1", "::1")
BEGIN_MARKER = "# BEGIN vodimg local CA"
END_MARKER = "# END vodimg local CA"


@dataclass(frozen=True)
class TlsFiles:
    ca_cert: Path
    ca_key: Path
    cert: Path
    key: Path


def tls_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "tls"


def tls_files(data_dir: Path) -> TlsFiles:
    directory = tls_dir(data_dir)
    return TlsFiles(directory / "ca.pem", directory / "ca-key.pem",
                    directory / "server.pem", directory / "server-key.pem")


def ensure_local_tls(data_dir: Path) -> TlsFiles:
    """The local CA and server certificate under ``data_dir``, made when missing or expiring."""
    files = tls_files(data_dir)
    files.ca_cert.parent.mkdir(parents=True, exist_ok=True)
    if not (files.ca_cert.exists() and files.ca_key.exists()):
        _write_ca(files)
    if not (files.cert.exists() and files.key.exists()) or _expiring(files.cert):
        _write_server_cert(files)
    return files


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _write_ca(files: TlsFiles) -> None:
    key = _new_key()
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "vodimg"),
                      x509.NameAttribute(NameOID.COMMON_NAME, f"vodimg local CA ({os.uname().nodename})")])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_key(files.ca_key, key)
    _write_cert(files.ca_cert, cert)


def _write_server_cert(files: TlsFiles) -> None:
    ca_cert = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    ca_key = serialization.load_pem_private_key(files.ca_key.read_bytes(), password=None)
    key = _new_key()
    now = _now()
    alt_names = [x509.DNSName(name) for name in SERVER_NAMES]
    alt_names += [x509.IPAddress(ipaddress.ip_address(address)) for address in SERVER_ADDRESSES]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_cert.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=SERVER_DAYS))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write_key(files.key, key)
    _write_cert(files.cert, cert)


def _expiring(cert_path: Path) -> bool:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    return cert.not_valid_after_utc - RENEW_BEFORE < _now()


def trust_ca(ca_cert: Path, bundle: Path) -> bool:
    """Put ``ca_cert`` into ``bundle`` between the vodimg markers, replacing an earlier vodimg
    block. Returns False when the bundle already held exactly this block."""
    text = bundle.read_text("ascii")
    block = f"{BEGIN_MARKER} ({ca_cert})\n{ca_cert.read_text('ascii').strip()}\n{END_MARKER}\n"
    kept = _without_block(text)
    updated = kept + ("" if kept.endswith("\n") or not kept else "\n") + block
    if updated == text:
        return False
    bundle.write_text(updated, "ascii")
    return True


def untrust_ca(bundle: Path) -> bool:
    """Remove the vodimg block from ``bundle``; False when there was none."""
    text = bundle.read_text("ascii")
    kept = _without_block(text)
    if kept == text:
        return False
    bundle.write_text(kept, "ascii")
    return True


def _without_block(text: str) -> str:
    start = text.find(BEGIN_MARKER)
    if start < 0:
        return text
    end = text.find(END_MARKER, start)
    if end < 0:
        raise ValueError(f"The CA bundle has {BEGIN_MARKER!r} without {END_MARKER!r}; fix it by hand.")
    end += len(END_MARKER)
    if text[end:end + 1] == "\n":
        end += 1
    return text[:start] + text[end:]
