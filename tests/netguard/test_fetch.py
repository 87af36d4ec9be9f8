"""fetch against real servers on loopback: allowed fetches, redirects, limits, timeouts, failures."""

from __future__ import annotations

import time

import pytest

from vodimg.netguard import USER_AGENT, FetchFailed, UrlPolicy, UrlRefused, fetch

from .conftest import LOOPBACK, ONLY_PUBLIC, policy
from .servers import closed_port

MB = 1024 * 1024


def test_loopback_is_fetched_when_allowed(origin):
    seen = []
    body = fetch(origin.url("/ok/5000"), LOOPBACK, max_bytes=10_000,
                 progress=lambda received, total: seen.append((received, total)))
    assert body == b"p" * 5000
    assert seen[0] == (0, 5000) and seen[-1] == (5000, 5000)
    method, path, headers = origin.requests[0]
    assert (method, path) == ("GET", "/ok/5000")
    assert headers["User-Agent"] == USER_AGENT == "vodimg/0.1"
    assert headers["Accept-Encoding"] == "identity"


def test_allow_from_the_environment_value_of_the_docs(origin, origin6):
    allowed = UrlPolicy.from_env({"VODIMG_URL_ALLOW": "127.0.0.0/8,::1"})
    assert fetch(origin.url("/ok/10"), allowed, max_bytes=100) == b"p" * 10
    assert fetch(f"http://localhost:{origin.port}/ok/11", allowed, max_bytes=100) == b"p" * 11
    assert fetch(origin6.url("/ok/12"), allowed, max_bytes=100) == b"p" * 12


@pytest.mark.parametrize("template", [
    "http://127.0.0.1:{port}/ok/10", "http://localhost:{port}/ok/10",
    "http://[::ffff:127.0.0.1]:{port}/ok/10", "http://2130706433:{port}/ok/10",
])
def test_loopback_without_allow_is_refused_and_never_connected(origin, template):
    with pytest.raises(UrlRefused, match="loopback; refused"):
        fetch(template.format(port=origin.port), UrlPolicy(), max_bytes=100)
    assert origin.connections == 0


def test_ipv6_loopback_without_allow_is_refused_and_never_connected(origin6):
    with pytest.raises(UrlRefused, match=r"address ::1 is loopback; refused \(allow it with "
                                         r"VODIMG_URL_ALLOW=::1\)"):
        fetch(origin6.url("/ok/10"), policy("127.0.0.0/8"), max_bytes=100)
    assert origin6.connections == 0


def test_redirect_to_a_refused_address_is_refused(public, origin):
    target = origin.url("/ok/10")
    with pytest.raises(UrlRefused) as refused:
        fetch(public.url(f"/to?url={target}"), ONLY_PUBLIC, max_bytes=100)
    assert str(refused.value) == (
        f"{public.url(f'/to?url={target}')}: redirected to {target}: address 127.0.0.1 is "
        "loopback; refused (allow it with VODIMG_URL_ALLOW=127.0.0.0/8)")
    assert origin.connections == 0


def test_redirect_to_a_name_of_a_refused_address_is_refused_at_connect(public, origin):
    target = f"http://localhost:{origin.port}/ok/10"
    with pytest.raises(UrlRefused, match="redirected to .*localhost resolves to 127.0.0.1"):
        fetch(public.url(f"/to?url={target}"), ONLY_PUBLIC, max_bytes=100)
    assert origin.connections == 0


@pytest.mark.parametrize("location", ["file:///etc/passwd", "gopher://127.0.0.2/"])
def test_redirect_to_another_scheme_is_refused(public, location):
    with pytest.raises(UrlRefused, match="redirected to .*is not allowed; only http and https"):
        fetch(public.url(f"/to?url={location}"), ONLY_PUBLIC, max_bytes=100)


def test_redirects_between_allowed_servers_are_followed(public, origin):
    hop = public.url(f"/to?url={origin.url('/ok/7')}")
    assert fetch(public.url(f"/to?url={hop}"), LOOPBACK, max_bytes=100) == b"p" * 7
    assert [path for _, path, _ in origin.requests] == ["/ok/7"]


def test_five_redirects_are_followed_and_a_sixth_fails(public):
    with pytest.raises(FetchFailed) as failed:
        fetch(public.url("/loop/0"), ONLY_PUBLIC, max_bytes=100)
    assert str(failed.value) == f"{public.url('/loop/0')}: too many redirects (more than 5)"
    assert [path for _, path, _ in public.requests] == [f"/loop/{i}" for i in range(6)]

    chain = public.url("/ok/3")
    for _ in range(5):
        chain = public.url(f"/to?url={chain}")
    assert fetch(chain, ONLY_PUBLIC, max_bytes=100) == b"ppp"


def test_http_error_status_fails_naming_it(public, origin):
    with pytest.raises(FetchFailed) as failed:
        fetch(public.url("/missing.png"), ONLY_PUBLIC, max_bytes=100)
    assert str(failed.value) == f"{public.url('/missing.png')}: HTTP 404 Not Found"
    with pytest.raises(FetchFailed, match=f"redirected to {origin.url('/gone')}: HTTP 404 Not Found$"):
        fetch(public.url(f"/to?url={origin.url('/gone')}"), LOOPBACK, max_bytes=100)


def test_body_over_the_limit_by_content_length_is_refused_before_reading(public):
    started = time.monotonic()
    with pytest.raises(FetchFailed) as failed:
        fetch(public.url(f"/big/{512 * MB}"), ONLY_PUBLIC, max_bytes=MB)
    assert str(failed.value).endswith(
        f"the body is {512 * MB} bytes (Content-Length), over the limit of {MB} bytes")
    assert time.monotonic() - started < 2
    time.sleep(0.2)
    assert public.bytes_streamed < 32 * MB      # it stopped reading: socket buffers at most


def test_body_over_the_limit_without_content_length_stops_reading(public):
    started = time.monotonic()
    with pytest.raises(FetchFailed, match=f"larger than the limit of {MB} bytes "
                                          r"\(stopped reading after \d+ bytes\)"):
        fetch(public.url("/endless"), ONLY_PUBLIC, max_bytes=MB)
    assert time.monotonic() - started < 2
    time.sleep(0.2)
    assert public.bytes_streamed < 32 * MB


def test_body_at_the_limit_is_accepted(public):
    assert len(fetch(public.url("/ok/1000"), ONLY_PUBLIC, max_bytes=1000)) == 1000


def test_compressed_body_is_refused(public):
    with pytest.raises(FetchFailed, match=r"compressed body \(Content-Encoding: gzip\)"):
        fetch(public.url("/gzip"), ONLY_PUBLIC, max_bytes=MB)


def test_server_that_never_answers_fails_within_the_total_time(silent):
    started = time.monotonic()
    with pytest.raises(FetchFailed, match="took longer than the time limit of 1 s$"):
        fetch(f"http://127.0.0.1:{silent.port}/a.png", policy("127.0.0.1", total_timeout=1.0),
              max_bytes=100)
    assert 0.9 < time.monotonic() - started < 3
    assert len(silent.accepted) == 1


def test_a_slow_drip_is_cut_at_the_total_time(public):
    started = time.monotonic()
    with pytest.raises(FetchFailed, match="took longer than the time limit of 1 s$"):
        fetch(public.url("/drip"), policy("127.0.0.2", total_timeout=1.0), max_bytes=MB)
    assert time.monotonic() - started < 3


def test_connection_refused_fails(public):
    port = closed_port("127.0.0.2")
    with pytest.raises(FetchFailed) as failed:
        fetch(f"http://127.0.0.2:{port}/a.png", ONLY_PUBLIC, max_bytes=100)
    assert str(failed.value) == (f"http://127.0.0.2:{port}/a.png: could not connect to 127.0.0.2 "
                                 f"port {port}: Connection refused")


def test_environment_proxies_are_not_used(public, origin, monkeypatch):
    for variable in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(variable, origin.url("/"))
    assert fetch(public.url("/ok/4"), ONLY_PUBLIC, max_bytes=100) == b"pppp"
    assert origin.connections == 0
