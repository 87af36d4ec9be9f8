"""check_url, the address classes and VODIMG_URL_ALLOW: what is refused, with which message."""

from __future__ import annotations

import ipaddress
import re
import time

import pytest

from vodimg.netguard import FetchFailed, UrlPolicy, UrlRefused, check_url, fetch
from vodimg.netguard.addresses import refused_class

from .conftest import LOOPBACK, policy

DEFAULT = policy()

# URL, the class the message names, the VODIMG_URL_ALLOW value it proposes.
REFUSED = [
    ("http://127.0.0.1/x.png", "loopback", "127.0.0.0/8"),
    ("http://localhost/x.png", "loopback", "127.0.0.0/8"),
    ("http://[::1]/", "loopback", "::1"),
    ("http://10.0.0.1/", "private", "10.0.0.0/8"),
    ("http://172.16.5.4/", "private", "172.16.0.0/12"),
    ("http://192.168.1.1/", "private", "192.168.0.0/16"),
    ("http://[fd12::1]/", "private (unique local)", "fc00::/7"),
    ("http://169.254.169.254/latest/meta-data/", "cloud metadata", "169.254.169.254"),
    ("http://[fd00:ec2::254]/", "cloud metadata", "fd00:ec2::254"),
    ("http://169.254.1.1/", "link-local", "169.254.0.0/16"),
    ("http://[fe80::1]/", "link-local", "fe80::/10"),
    ("http://[::ffff:127.0.0.1]/", "IPv4-mapped form of 127.0.0.1, which is loopback", "127.0.0.0/8"),
    ("http://[::127.0.0.1]/", "IPv4-compatible form of 127.0.0.1", "127.0.0.0/8"),
    ("http://[64:ff9b::7f00:1]/", "NAT64 form of 127.0.0.1", "127.0.0.0/8"),
    ("http://[64:ff9b::a9fe:a9fe]/", "NAT64 form of 169.254.169.254, which is the cloud metadata",
     "169.254.169.254"),
    ("http://[2002:7f00:1::]/", "6to4 form of 127.0.0.1", "127.0.0.0/8"),
    ("http://[2002:0a00:0001::1]/", "6to4 form of 10.0.0.1, which is private", "10.0.0.0/8"),
    ("http://0.0.0.0/", "unspecified", "0.0.0.0/8"),
    ("http://[::]/", "unspecified", "::"),
    ("http://100.64.0.1/", "carrier-grade NAT", "100.64.0.0/10"),
    ("http://224.0.0.1/", "multicast", "224.0.0.0/4"),
    ("http://[ff02::1]/", "multicast", "ff00::/8"),
    ("http://255.255.255.255/", "broadcast", "255.255.255.255"),
    ("http://240.0.0.1/", "reserved", "240.0.0.0/4"),
    ("http://198.18.0.1/", "benchmarking", "198.18.0.0/15"),
    ("http://192.0.2.1/", "documentation", "192.0.2.0/24"),
    ("http://[2001:db8::1]/", "documentation", "2001:db8::/32"),
    ("http://[2001::1]/", "Teredo", "2001::/32"),
    ("http://2130706433/", "loopback", "127.0.0.0/8"),           # 127.0.0.1 as one number
    ("http://127.1/", "loopback", "127.0.0.0/8"),                # 127.0.0.1 abbreviated
    ("http://0x7f.0.0.1/", "loopback", "127.0.0.0/8"),           # hexadecimal
]


@pytest.mark.parametrize("url, kind, allow", REFUSED)
def test_check_url_refuses_each_class_and_says_how_to_allow_it(url, kind, allow):
    with pytest.raises(UrlRefused) as refused:
        check_url(url, DEFAULT)
    message = str(refused.value)
    assert message.startswith(url + ": ")
    assert kind in message
    assert message.endswith(f"refused (allow it with VODIMG_URL_ALLOW={allow})")
    check_url(url, policy(allow))           # and the proposed allow value does allow it


@pytest.mark.parametrize("url, kind, allow", REFUSED)
def test_fetch_refuses_each_class_before_connecting(url, kind, allow):
    started = time.monotonic()
    with pytest.raises(UrlRefused, match="refused"):
        fetch(url, policy(connect_timeout=5.0, total_timeout=30.0), max_bytes=1000)
    assert time.monotonic() - started < 0.5     # no connect attempt (10.x would hang for 5 s)


def test_the_example_message():
    with pytest.raises(UrlRefused) as refused:
        check_url("http://127.0.0.1/x.png", UrlPolicy())
    assert str(refused.value) == ("http://127.0.0.1/x.png: address 127.0.0.1 is loopback; "
                                  "refused (allow it with VODIMG_URL_ALLOW=127.0.0.0/8)")


@pytest.mark.parametrize("url", [
    "http://8.8.8.8/a.png", "https://1.1.1.1:8443/a.png", "http://[2606:4700:4700::1111]/",
    "http://[::ffff:8.8.8.8]/",          # IPv4-mapped public address
    "http://[64:ff9b::808:808]/",        # NAT64 of a public address
    "http://[2002:808:808::1]/",         # 6to4 of a public address
    "http://100.63.255.255/", "http://100.128.0.0/", "http://172.32.0.1/", "http://11.0.0.1/",
])
def test_public_addresses_pass(url):
    check_url(url, DEFAULT, resolve=False)
    check_url(url, DEFAULT)


@pytest.mark.parametrize("url, reason", [
    ("file:///etc/passwd", "scheme 'file' is not allowed; only http and https"),
    ("ftp://example.com/a.png", "scheme 'ftp' is not allowed"),
    ("gopher://example.com/", "scheme 'gopher' is not allowed"),
    ("data:image/png;base64,iVBORw0KGgo=", "scheme 'data' is not allowed"),
    ("example.com/a.png", "has no scheme"),
    ("http:///a.png", "has no host"),
    ("http://user:secret@example.com/a.png", "user name or password"),
    ("http://8.8.8.8@127.0.0.1/a.png", "user name or password"),
    ("http://[::1/", "not a valid URL"),
])
def test_malformed_and_other_schemes_are_refused(url, reason):
    with pytest.raises(UrlRefused, match="^" + re.escape(url + ": ") + ".*" + re.escape(reason)):
        check_url(url, DEFAULT, resolve=False)


def test_a_name_that_does_not_resolve_is_not_refused_at_submit_but_fails_to_fetch():
    check_url("http://no-such-host.invalid/a.png", DEFAULT)
    with pytest.raises(FetchFailed, match="DNS lookup of no-such-host.invalid failed"):
        fetch("http://no-such-host.invalid/a.png", DEFAULT, max_bytes=1000)


def test_allow_list_covers_the_ipv6_forms_of_an_allowed_ipv4_network():
    check_url("http://[::ffff:127.0.0.1]/", LOOPBACK)
    check_url("http://[64:ff9b::7f00:1]/", LOOPBACK)
    with pytest.raises(UrlRefused, match="10.0.0.0/8"):
        check_url("http://[::ffff:10.0.0.1]/", LOOPBACK)


def test_exact_address_allow_list_allows_only_that_address():
    only = policy("127.0.0.2/32")
    check_url("http://127.0.0.2/", only)
    with pytest.raises(UrlRefused, match="127.0.0.1 is loopback"):
        check_url("http://127.0.0.1/", only)


def test_from_env_parses_networks_and_addresses():
    parsed = UrlPolicy.from_env({"VODIMG_URL_ALLOW": " 127.0.0.0/8,::1  10.1.2.3, fd00::/8"})
    assert parsed.allow == tuple(map(ipaddress.ip_network,
                                     ["127.0.0.0/8", "::1/128", "10.1.2.3/32", "fd00::/8"]))
    assert UrlPolicy.from_env({}).allow == ()
    assert UrlPolicy.from_env({"VODIMG_URL_ALLOW": ""}) == UrlPolicy()


@pytest.mark.parametrize("value", ["localhost", "127.0.0.1/8", "10.0.0.0/33", "127.0.0.0/8;::1",
                                   "300.1.1.1"])
def test_from_env_bad_value_names_the_variable(value):
    with pytest.raises(ValueError, match=r"^VODIMG_URL_ALLOW: "):
        UrlPolicy.from_env({"VODIMG_URL_ALLOW": value})


def test_address_classes():
    def kind(text):
        found = refused_class(ipaddress.ip_address(text))
        return None if found is None else found[0]

    assert kind("93.184.216.34") is None
    assert kind("2a00:1450:4001:80b::200e") is None
    assert kind("127.255.255.254") == "loopback"
    assert kind("100.100.100.200") == "carrier-grade NAT (shared address space)"  # Alibaba metadata
    assert kind("192.0.0.192") == "reserved (IETF protocol assignments)"          # Oracle metadata
    assert kind("5f00::1") == "reserved (outside global unicast 2000::/3)"
    assert kind("::ffff:169.254.169.254") == ("the IPv4-mapped form of 169.254.169.254, which is "
                                              "the cloud metadata service")
