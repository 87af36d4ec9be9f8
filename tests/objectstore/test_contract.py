"""The object-store contract, run against every implementation: the local directory, moto's S3
server and OpenStack Swift's s3api (the S3 servers are started by the session, see servers.py).

Each S3 test works under a fresh key prefix in one bucket per server. Under ``CI=true`` an S3
server that cannot be started fails these tests; elsewhere they skip with the reason.
"""

from __future__ import annotations

import hashlib
import threading
import time
import tracemalloc
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from vodimg.objectstore import NoSuchObject, ObjectStoreError, S3Options, open_store
from vodimg.objectstore.local import LocalObjectStore

S3_SERVERS = ("moto", "swift")


@pytest.fixture(scope="session")
def s3_buckets():
    return {}


@pytest.fixture(scope="session")
def s3_clients():
    return {}  # making a boto3 client takes ~0.5 s: one per server and settings


def s3_server(request, name: str):
    return request.getfixturevalue(f"{name}_s3")


def s3_store(request, name: str, monkeypatch, bucket: str | None = None, **options):
    """A store on the named server under a fresh prefix, opened as ``vodimg`` opens it: from an
    ``s3://`` URL, with the credentials in the AWS variables."""
    from vodimg.objectstore.s3 import MIN_PART_BYTES, S3ObjectStore, make_client, parse_url

    server = s3_server(request, name)
    buckets = request.getfixturevalue("s3_buckets")
    if bucket is None:
        if name not in buckets:
            buckets[name] = server.new_bucket()
        bucket = buckets[name]
    env = {**server.environment(), **options.pop("env", {})}
    for variable, value in env.items():
        monkeypatch.setenv(variable, value)
    own_client = options.pop("own_client", False)
    clients = request.getfixturevalue("s3_clients")
    cache_key = (name, tuple(sorted(env.items())), tuple(sorted(options.items())))
    if cache_key not in clients or own_client:
        clients[cache_key] = make_client(S3Options(**options))
    _bucket, prefix = parse_url(f"s3://{bucket}/t-{uuid.uuid4().hex[:12]}")
    # Small parts keep the multipart tests cheap (S3's minimum part size).
    return S3ObjectStore(clients[cache_key], bucket, prefix, part_bytes=MIN_PART_BYTES)


@pytest.fixture(params=["local", *S3_SERVERS])
def store(request, tmp_path, monkeypatch):
    if request.param == "local":
        return LocalObjectStore(tmp_path / "objects")
    return s3_store(request, request.param, monkeypatch)


@pytest.fixture(params=S3_SERVERS)
def s3(request, monkeypatch):
    return s3_store(request, request.param, monkeypatch)


def part_bytes(store) -> int:
    return getattr(store, "part_bytes", 5 * 1024 * 1024)


# -- put once ------------------------------------------------------------------------------------

def test_a_second_put_returns_false_and_keeps_the_first_bytes(store):
    assert store.put("out/a.png", b"first") is True
    assert store.put("out/a.png", b"second, longer") is False
    assert store.put("out/a.png", iter([b"third"])) is False
    assert store.read("out/a.png") == b"first"
    assert store.head("out/a.png").size == 5


def test_put_once_holds_under_concurrent_writers(request, store):
    writers = 8
    barrier = threading.Barrier(writers)

    def body(index: int) -> bytes:
        return f"writer {index} ".encode() * 200

    def write(index: int) -> bool:
        barrier.wait()
        return store.put("race/key", body(index))

    with ThreadPoolExecutor(writers) as pool:
        results = list(pool.map(write, range(writers)))
    kept = store.read("race/key")
    winners = [index for index, created in enumerate(results) if created]
    assert kept in [body(index) for index in winners]  # a writer told False never has its bytes kept
    if request.node.callspec.params["store"] == "swift":
        # Swift checks If-None-Match before it writes, not atomically: racing first writers may
        # all be told True, the last one's bytes stay (docs/deploy.md).
        assert winners
    else:
        assert len(winners) == 1


def test_a_large_iterable_is_streamed_in_bounded_memory(store):
    part = part_bytes(store)
    total = 2 * part + 123_457  # two full parts and a short last one (multipart on S3)
    chunk = 64 * 1024
    digest = hashlib.md5()

    def chunks():
        sent = 0
        while sent < total:
            size = min(chunk, total - sent)
            block = hashlib.sha256(str(sent).encode()).digest() * (size // 32 + 1)
            block = block[:size]
            digest.update(block)
            sent += size
            yield block

    tracemalloc.start()
    try:
        assert store.put("big/stream.bin", chunks()) is True
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1.5 * part, f"peak {peak} bytes for a {total}-byte stream with {part}-byte parts"
    assert store.head("big/stream.bin").size == total
    served = hashlib.md5()
    for piece in store.open("big/stream.bin"):
        served.update(piece)
    assert served.hexdigest() == digest.hexdigest()
    assert store.put("big/stream.bin", chunks()) is False
    assert store.head("big/stream.bin").size == total


def test_a_stream_shorter_than_a_part_is_one_object(store):
    assert store.put("small/chunks", iter([b"ab", b"", b"cd"])) is True
    assert store.read("small/chunks") == b"abcd"


def test_an_empty_object(store):
    assert store.put("empty", b"") is True
    assert store.read("empty") == b""
    assert store.head("empty").size == 0


# -- reads ---------------------------------------------------------------------------------------

def test_open_with_ranges(store):
    data = bytes(range(256)) * 4
    store.put("ranges/data", data)
    assert b"".join(store.open("ranges/data")) == data
    assert b"".join(store.open("ranges/data", 10, 20)) == data[10:20]
    assert b"".join(store.open("ranges/data", 1000)) == data[1000:]
    assert b"".join(store.open("ranges/data", 1020, 5000)) == data[1020:]
    assert b"".join(store.open("ranges/data", len(data))) == b""
    assert b"".join(store.open("ranges/data", 5, 5)) == b""
    assert store.read("ranges/data") == data


def test_a_missing_object_raises_no_such_object_when_opened(store):
    with pytest.raises(NoSuchObject):
        store.open("missing/key")
    with pytest.raises(NoSuchObject):
        store.open("missing/key", 5, 5)
    with pytest.raises(NoSuchObject):
        store.read("missing/key")


def test_head_gives_size_and_time_or_none(store):
    assert store.head("missing") is None
    before = time.time()
    store.put("dir/file", b"12345")
    info = store.head("dir/file")
    assert (info.key, info.size) == ("dir/file", 5)
    assert before - 120 < info.modified < time.time() + 120


def test_delete_is_idempotent_and_frees_the_key(store):
    store.delete("never/there")
    store.put("gone", b"x")
    store.delete("gone")
    store.delete("gone")
    assert store.head("gone") is None
    assert store.put("gone", b"again") is True
    assert store.read("gone") == b"again"


def test_list_by_prefix_in_key_order(store):
    keys = ["b/2.png", "a/1/x.png", "a/1-x.png", "a/10.png", "a.png", "a/1.png", "c.png", "a/1/a/deep.png"]
    for index, key in enumerate(keys):
        store.put(key, b"x" * index)
    listed = list(store.list())
    assert [info.key for info in listed] == sorted(keys)
    assert {info.key: info.size for info in listed} == {key: index for index, key in enumerate(keys)}
    assert [info.key for info in store.list("a/")] == sorted(k for k in keys if k.startswith("a/"))
    assert [info.key for info in store.list("a/1")] == sorted(k for k in keys if k.startswith("a/1"))
    assert list(store.list("zzz")) == []


@pytest.mark.parametrize("key", ["", "a//b", "../x", "a/./b", "a/", "/a"])
def test_invalid_keys_are_refused(store, key):
    with pytest.raises(ObjectStoreError):
        store.put(key, b"x")
    with pytest.raises(ObjectStoreError):
        store.head(key)


def test_check_passes_on_a_good_store(store):
    store.check()
    assert list(store.list()) == []  # the probe is gone
    if not isinstance(store, LocalObjectStore):
        assert store.conditional_put and store.conditional_complete


def test_presigned_url_serves_the_object_or_is_none_for_local(store):
    data = bytes(range(256)) * 3
    store.put("signed/photo.png", data)
    url = store.presigned_url("signed/photo.png", 60, "image/png")
    if isinstance(store, LocalObjectStore):
        assert url is None
        return
    whole = httpx.get(url)
    assert whole.status_code == 200 and whole.content == data
    assert whole.headers["content-type"] == "image/png"
    part = httpx.get(url, headers={"Range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == data[10:20]


# -- S3 only ----------------------------------------------------------------------------------------

def test_list_pages_past_1000_keys(request, monkeypatch):
    store = s3_store(request, "moto", monkeypatch)  # cheap on moto only
    keys = [f"many/{index:05d}" for index in range(1005)]
    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(lambda key: store.put(key, b""), keys))
    assert [info.key for info in store.list("many/")] == keys


def test_open_store_selects_s3_from_the_url(request, monkeypatch):
    store = s3_store(request, "moto", monkeypatch)
    server = request.getfixturevalue("moto_s3")
    opened = open_store(f"s3://{store.bucket}/{store.prefix}", S3Options(endpoint=server.endpoint))
    assert (opened.bucket, opened.prefix, opened.client.meta.endpoint_url) == (store.bucket, store.prefix, server.endpoint)
    opened.put("via/url", b"yes")
    assert store.read("via/url") == b"yes"
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    assert open_store("s3://bucket").client.meta.endpoint_url.startswith("https://")  # AWS itself
    with pytest.raises(ObjectStoreError, match="s3://bucket"):
        open_store("s3:///prefix-without-bucket")


@pytest.mark.parametrize("name", S3_SERVERS)
def test_check_reports_a_missing_bucket(request, monkeypatch, name):
    store = s3_store(request, name, monkeypatch, bucket="no-such-bucket-here")
    with pytest.raises(ObjectStoreError, match="bucket 'no-such-bucket-here' does not exist"):
        store.check()


@pytest.mark.parametrize("wrong", ["secret", "access key"])
def test_check_reports_wrong_credentials(request, monkeypatch, wrong):
    env = {"AWS_SECRET_ACCESS_KEY": "not-the-secret"} if wrong == "secret" else {"AWS_ACCESS_KEY_ID": "nobody:none"}
    store = s3_store(request, "swift", monkeypatch, env=env)  # moto accepts any key
    with pytest.raises(ObjectStoreError, match="refused the credentials"):
        store.check()


@pytest.mark.parametrize("name", S3_SERVERS)
def test_a_server_that_ignores_if_none_match_gets_head_then_put(request, monkeypatch, name):
    def strip_condition(request, **_):
        if "If-None-Match" in request.headers:
            del request.headers["If-None-Match"]

    s3 = s3_store(request, name, monkeypatch, own_client=True)  # the hooks must not reach other tests
    for operation in ("PutObject", "CompleteMultipartUpload"):
        s3.client.meta.events.register(f"before-sign.s3.{operation}", strip_condition)
    s3.check()
    assert (s3.conditional_put, s3.conditional_complete) == (False, False)
    assert s3.put("fallback/key", b"first") is True
    assert s3.put("fallback/key", b"second") is False
    assert s3.read("fallback/key") == b"first"
    stream = [b"y" * (64 * 1024)] * (s3.part_bytes // (64 * 1024) + 2)
    assert s3.put("fallback/stream", iter(stream)) is True
    assert s3.put("fallback/stream", iter([b"z" * len(b"".join(stream))])) is False
    assert s3.read("fallback/stream") == b"".join(stream)


def test_stale_multipart_uploads_are_aborted(request, s3):
    name = s3.prefix + "crashed/upload"
    s3.client.create_multipart_upload(Bucket=s3.bucket, Key=name)

    def uploads():
        answer = s3.client.list_multipart_uploads(Bucket=s3.bucket, Prefix=s3.prefix)
        return [upload["Key"] for upload in answer.get("Uploads", ())]

    assert uploads() == [name]
    if request.node.callspec.params["s3"] != "moto":  # moto reports a fixed 2010 start date
        assert s3.remove_stale_temporaries(older_than_seconds=3600) == 0
    assert s3.remove_stale_temporaries(older_than_seconds=-60) == 1
    assert uploads() == []



def test_a_server_that_answers_501_to_if_none_match_gets_head_then_put(request, monkeypatch, moto_s3):
    from tests.objectstore.servers import RefusingConditionsProxy

    proxy = RefusingConditionsProxy(moto_s3.endpoint)
    try:
        s3 = s3_store(request, "moto", monkeypatch, endpoint=proxy.endpoint)
        s3.check()
        assert (s3.conditional_put, s3.conditional_complete) == (False, False)
        assert proxy.refused == 2  # one PUT and one completion, then no more conditions are sent
        assert s3.put("fallback/key", b"first") is True
        assert s3.put("fallback/key", b"second") is False
        stream = [b"y" * (64 * 1024)] * (s3.part_bytes // (64 * 1024) + 2)
        assert s3.put("fallback/stream", iter(stream)) is True
        assert s3.put("fallback/stream", iter(stream)) is False
        assert (s3.read("fallback/key"), s3.read("fallback/stream")) == (b"first", b"".join(stream))
        assert proxy.refused == 2
    finally:
        proxy.stop()
