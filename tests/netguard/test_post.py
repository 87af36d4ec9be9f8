"""post_json and post_json_async (PUSH event callbacks) against real servers on loopback."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from vodimg.netguard import FetchFailed, UrlPolicy, UrlRefused, post_json, post_json_async

from .conftest import ONLY_PUBLIC, policy

EVENT = json.dumps({"EventType": "ProcessImageAsyncCompleteEvent", "T": 1, "Sign": "ab"}).encode()


def test_post_json_delivers_the_body_and_returns_the_status(public):
    assert post_json(public.url("/post"), EVENT, ONLY_PUBLIC, headers={"X-Extra": "1"}) == 200
    assert post_json(public.url("/post?status=500"), EVENT, ONLY_PUBLIC) == 500
    assert public.bodies == [EVENT, EVENT]
    method, path, headers = public.requests[0]
    assert (method, path) == ("POST", "/post")
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Extra"] == "1"
    assert headers["User-Agent"] == "vodimg/0.1"


def test_post_json_does_not_follow_redirects(public):
    assert post_json(public.url("/post-307"), EVENT, ONLY_PUBLIC) == 307
    assert [path for _, path, _ in public.requests] == ["/post-307"]
    assert public.bodies == []


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_post_json_refuses_loopback_without_allow(origin, host):
    url = f"http://{host}:{origin.port}/post"
    with pytest.raises(UrlRefused, match=f"^{url}: .*loopback; refused"):
        post_json(url, EVENT, UrlPolicy())
    assert origin.connections == 0


def test_post_json_to_a_server_that_never_answers_fails_within_the_timeout(silent):
    started = time.monotonic()
    with pytest.raises(FetchFailed, match="took longer than the time limit of 1 s$"):
        post_json(f"http://127.0.0.1:{silent.port}/", EVENT, policy("127.0.0.1"), timeout=1.0)
    assert time.monotonic() - started < 3


def test_post_json_async_delivers_many_concurrently(public):
    async def deliver_all():
        urls = [public.url(f"/post?status={200 if i % 2 else 500}") for i in range(20)]
        return await asyncio.gather(*(post_json_async(url, EVENT, ONLY_PUBLIC) for url in urls))

    statuses = asyncio.run(deliver_all())
    assert statuses == [500, 200] * 10
    assert public.bodies == [EVENT] * 20


def test_post_json_async_refuses_and_fails_like_post_json(origin, public, silent):
    async def attempts():
        with pytest.raises(UrlRefused, match="localhost resolves to 127.0.0.1, which is loopback"):
            await post_json_async(f"http://localhost:{origin.port}/post", EVENT, UrlPolicy())
        assert await post_json_async(public.url("/post-307"), EVENT, ONLY_PUBLIC) == 307
        started = time.monotonic()
        with pytest.raises(FetchFailed, match="took longer than the time limit of 1 s$"):
            await post_json_async(f"http://127.0.0.1:{silent.port}/", EVENT, policy("127.0.0.1"),
                                  timeout=1.0)
        assert time.monotonic() - started < 3
        with pytest.raises(UrlRefused, match="scheme 'ftp' is not allowed"):
            await post_json_async("ftp://127.0.0.2/", EVENT, ONLY_PUBLIC)

    asyncio.run(attempts())
    assert origin.connections == 0
    assert public.bodies == []
