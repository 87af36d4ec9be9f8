"""Pieces of the wire layer that need no server: flattened parameters, settings, the CA bundle."""

from __future__ import annotations

from argparse import Namespace
from pathlib import Path

import pytest
from cryptography import x509

from vodimg.config import ConfigError, Settings
from vodimg.errors import ApiError
from vodimg.wire.params import MAX_KEY_SEGMENTS, parse_form, unflatten
from vodimg.wire.tls import BEGIN_MARKER, ensure_local_tls, trust_ca, untrust_ca


def test_unflatten_nested_lists_and_structures():
    flat = {"A.B.0.C": "1", "A.B.1.C": "2", "A.B.1.D.0": "x", "Name": "n", "L.0": "a", "L.1": "b"}
    assert unflatten(flat) == {"A": {"B": [{"C": "1"}, {"C": "2", "D": ["x"]}]}, "Name": "n", "L": ["a", "b"]}


@pytest.mark.parametrize("flat", [{"L.1": "a"}, {"L.0": "a", "L.2": "b"}, {"A": "1", "A.B": "2"},
                                  {"A.B": "2", "A": "1"}, {"A..B": "1"}, {"L.0": "a", "L.x": "b"}])
def test_unflatten_refuses_inconsistent_keys(flat):
    with pytest.raises(ApiError) as caught:
        unflatten(flat)
    assert caught.value.code == "InvalidParameter"


def test_unflatten_caps_key_depth():
    deepest = ".".join(["A"] * MAX_KEY_SEGMENTS)
    nested = unflatten({deepest: "1"})
    for _ in range(MAX_KEY_SEGMENTS - 1):
        nested = nested["A"]
    assert nested == {"A": "1"}
    with pytest.raises(ApiError) as caught:
        unflatten({".".join(["A"] * 5000): "1"})
    assert caught.value.code == "InvalidParameter"
    assert f"deeper than {MAX_KEY_SEGMENTS} levels" in caught.value.message


def test_parse_form_refuses_repeated_keys():
    assert parse_form("a=1&b=%E5%90%8D+x") == {"a": "1", "b": "名 x"}
    with pytest.raises(ApiError):
        parse_form("a=1&a=2")


def test_settings_precedence_and_errors():
    env = {"VODIMG_PORT": "9100", "VODIMG_HOST": "0.0.0.0", "VODIMG_RATE_LIMIT": "0", "VODIMG_AUTH": "off",
           "VODIMG_SECRET_ID": "AKIDx", "VODIMG_SECRET_KEY": "k", "VODIMG_SUBAPP_ID": "1500000001"}
    settings = Settings.from_env_and_args(Namespace(port=9200, host=None, no_auth=False), env)
    assert (settings.port, settings.host, settings.rate_limit, settings.auth) == (9200, "0.0.0.0", 0, False)
    assert (settings.secret_id, settings.sub_app_id, settings.max_body_bytes) == ("AKIDx", 1500000001, 10 << 20)
    defaults = Settings.from_env_and_args(Namespace(), {})
    assert (defaults.port, defaults.rate_limit, defaults.auth, defaults.data_dir) == (9000, 20, True, Path("data"))
    for bad in ({"VODIMG_PORT": "0"}, {"VODIMG_AUTH": "maybe"}, {"VODIMG_SECRET_ID": "AKIDx"},
                {"VODIMG_RATE_LIMIT": "-1"}, {"VODIMG_TLS_CERT": "c.pem"}):
        with pytest.raises(ConfigError):
            Settings.from_env_and_args(Namespace(), bad)


def test_local_ca_is_made_once_and_covers_loopback(tmp_path):
    files = ensure_local_tls(tmp_path)
    ca_bytes, cert_bytes = files.ca_cert.read_bytes(), files.cert.read_bytes()
    assert ensure_local_tls(tmp_path) == files and files.ca_cert.read_bytes() == ca_bytes
    assert files.cert.read_bytes() == cert_bytes and oct(files.key.stat().st_mode & 0o777) == "0o600"
    cert = x509.load_pem_x509_certificate(cert_bytes)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert {str(ip) for ip in names.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "::1"}
    ca = x509.load_pem_x509_certificate(ca_bytes)
    cert.verify_directly_issued_by(ca)


def test_trust_is_idempotent_and_replaces_an_earlier_block(tmp_path):
    bundle = tmp_path / "cacert.pem"
    original = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    bundle.write_text(original)
    first = ensure_local_tls(tmp_path / "one").ca_cert
    second = ensure_local_tls(tmp_path / "two").ca_cert
    assert trust_ca(first, bundle) is True
    assert trust_ca(first, bundle) is False
    assert trust_ca(second, bundle) is True
    text = bundle.read_text()
    assert text.count(BEGIN_MARKER) == 1 and second.read_text().strip() in text
    assert first.read_text().strip() not in text and text.startswith(original)
    assert untrust_ca(bundle) is True and bundle.read_text() == original
    assert untrust_ca(bundle) is False
