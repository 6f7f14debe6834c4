"""Every store operation on both backends: a folder, and gs:// against the real fake-gcs-server."""

from __future__ import annotations

import os
import re
import threading
import time

import pytest

from laclip.errors import AlreadyExists, AuthError, NotFound, StoreUnavailable, UsageError
from laclip.storage import open_store, resolve_root
from laclip.storage.gcs import GCSStore


@pytest.fixture(params=["local", "gcs"])
def store(request, tmp_path):
    if request.param == "local":
        return open_store(str(tmp_path / "root"))
    url = request.getfixturevalue("gcs_bucket")
    return GCSStore(url + "/some/prefix", retry_timeout=5)


def test_bytes_roundtrip_exists_delete(store):
    assert not store.exists("a/b.txt")
    store.write_bytes("a/b.txt", b"hello")
    assert store.exists("a/b.txt")
    assert store.read_bytes("a/b.txt") == b"hello"
    store.write_bytes("a/b.txt", b"replaced")  # plain writes overwrite
    assert store.read_text("a/b.txt") == "replaced"
    with store.open_read("a/b.txt") as f:
        assert f.read() == b"replaced"
    store.delete("a/b.txt")
    assert not store.exists("a/b.txt")
    with pytest.raises(NotFound, match="a/b.txt"):
        store.read_bytes("a/b.txt")


def test_list_by_prefix(store):
    for path in ["datasets/x/00000.tar", "datasets/x/00001.tar", "datasets/xy/00000.tar", "other/z"]:
        store.write_bytes(path, b"1")
    assert store.list("datasets/x/") == ["datasets/x/00000.tar", "datasets/x/00001.tar"]
    assert store.list("datasets/") == ["datasets/x/00000.tar", "datasets/x/00001.tar", "datasets/xy/00000.tar"]
    assert store.list("nothing/") == []
    assert len(store.list()) == 4


def test_list_stays_inside_the_store_folder(store):
    store.write_bytes("datasets/x/00000.tar", b"1")
    sibling = open_store(store.url + "-old")  # gs://b/some/prefix-old beside gs://b/some/prefix
    sibling.write_bytes("datasets/x/00009.tar", b"2")
    assert store.list() == store.list("") == ["datasets/x/00000.tar"]
    assert store.list("datasets/") == ["datasets/x/00000.tar"]
    assert sibling.list() == ["datasets/x/00009.tar"]


def test_versions_change_when_an_object_is_written_again(store):
    for path in ["datasets/x/00000.tar", "datasets/x/00001.tar", "datasets/xy/00000.tar"]:
        store.write_bytes(path, b"same size")
    before = store.versions("datasets/x/")
    assert sorted(before) == store.list("datasets/x/") == ["datasets/x/00000.tar", "datasets/x/00001.tar"]
    assert all(isinstance(v, str) and v for v in before.values())
    assert store.versions("datasets/x/") == before  # reading changes nothing
    assert set(store.versions()) == set(store.list())
    store.write_bytes("datasets/x/00001.tar", b"SAME SIZE")  # rewritten, same length
    after = store.versions("datasets/x/")
    assert after["datasets/x/00000.tar"] == before["datasets/x/00000.tar"]
    assert after["datasets/x/00001.tar"] != before["datasets/x/00001.tar"]
    store.delete("datasets/x/00000.tar")
    assert list(store.versions("datasets/x/")) == ["datasets/x/00001.tar"]
    assert store.versions("nothing/") == {}


def test_versions_stay_inside_the_store_folder(store):
    store.write_bytes("a", b"1")
    open_store(store.url + "-old").write_bytes("b", b"2")
    assert list(store.versions()) == ["a"]


def test_create_only(store):
    store.write_bytes("out/00000.parquet", b"first", create_only=True)
    with pytest.raises(AlreadyExists, match="already exists"):
        store.write_bytes("out/00000.parquet", b"second", create_only=True)
    assert store.read_bytes("out/00000.parquet") == b"first"


def test_racing_writers_exactly_one_wins(store):
    results: list[str] = []
    barrier = threading.Barrier(8)

    def writer(i: int) -> None:
        barrier.wait()
        try:
            store.write_bytes("race/obj", f"writer-{i}".encode() * 1000, create_only=True)
            results.append(f"won-{i}")
        except AlreadyExists:
            results.append("lost")

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [r for r in results if r.startswith("won")]
    assert len(winners) == 1 and results.count("lost") == 7
    assert store.read_bytes("race/obj") == f"writer-{winners[0][4:]}".encode() * 1000


def test_files_and_parallel_transfer(store, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    pairs = []
    for i in range(20):
        (src / f"f{i}.bin").write_bytes(os.urandom(1000 + i))
        pairs.append((src / f"f{i}.bin", f"many/f{i}.bin"))
    store.upload_many(pairs, create_only=True)
    assert len(store.list("many/")) == 20
    dst = tmp_path / "dst"
    store.download_many([(p, dst / p.rsplit("/", 1)[1]) for _, p in pairs])
    for local, _ in pairs:
        assert (dst / local.name).read_bytes() == local.read_bytes()
    with pytest.raises(AlreadyExists):
        store.upload_file(src / "f0.bin", "many/f0.bin", create_only=True)
    with pytest.raises(NotFound):
        store.download_file("many/missing.bin", dst / "missing.bin")
    assert not (dst / "missing.bin").exists()


def test_unknown_scheme_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown storage scheme 's3://'"):
        open_store("s3://bucket/prefix")


def test_root_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("LACLIP_ROOT", "gs://from-env/p")
    assert resolve_root(None) == "gs://from-env/p"
    assert resolve_root(str(tmp_path)) == str(tmp_path)
    monkeypatch.delenv("LACLIP_ROOT")
    assert resolve_root(None).endswith("laclip")


def test_local_paths_cannot_escape_root(tmp_path):
    store = open_store(str(tmp_path / "root"))
    with pytest.raises(UsageError, match="escapes"):
        store.write_bytes("../outside", b"x")


def test_missing_bucket(gcs_emulator):
    store = GCSStore("gs://no-such-bucket-laclip/p", retry_timeout=3)
    with pytest.raises(NotFound, match="bucket gs://no-such-bucket-laclip does not exist"):
        store.write_bytes("x", b"1")
    with pytest.raises(NotFound, match="does not exist"):
        store.read_bytes("x")


def test_store_down_gives_clear_error_after_retries(gcs_emulator, gcs_bucket):
    store = GCSStore(gcs_bucket, retry_timeout=2, request_timeout=2)
    store.write_bytes("before", b"ok")
    gcs_emulator.stop()
    try:
        with pytest.raises(StoreUnavailable, match=r"did not answer after retrying for 2s"):
            store.write_bytes("during", b"x" * 1000, create_only=True)
    finally:
        gcs_emulator.start()
    assert store.read_bytes("before") == b"ok"
    assert not store.exists("during")


def test_store_down_while_streaming_is_a_store_error(gcs_emulator, gcs_bucket):
    """Not an OSError: readers such as the tar streamer would call that a corrupt file."""
    store = GCSStore(gcs_bucket, retry_timeout=2, request_timeout=2)
    store.write_bytes("shard.tar", b"t" * 4096)
    reader = store.open_read("shard.tar")
    gcs_emulator.stop()
    try:
        with pytest.raises(StoreUnavailable, match=r"could not read gs://.*/shard\.tar"):
            reader.read(100)
    finally:
        gcs_emulator.start()
    with store.open_read("shard.tar") as f:
        assert f.read(4) == b"tttt" and f.seekable() and f.seek(4090) == 4090 and f.read() == b"t" * 6


def test_short_outage_is_ridden_out_by_retries(gcs_emulator, gcs_bucket):
    store = GCSStore(gcs_bucket, retry_timeout=30, request_timeout=2)
    gcs_emulator.stop()
    timer = threading.Timer(1.5, gcs_emulator.start)
    timer.start()
    try:
        store.write_bytes("after-blip", b"ok", create_only=True)  # retried until the store is back
    finally:
        timer.join()
    assert store.read_bytes("after-blip") == b"ok"


def test_store_dies_mid_upload_leaves_no_partial_object(gcs_emulator, gcs_bucket, tmp_path):
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(64 * 1024 * 1024))
    store = GCSStore(gcs_bucket, retry_timeout=2, request_timeout=2, upload_chunk_size=256 * 1024)
    errors: list[BaseException] = []

    def upload():
        try:
            store.upload_file(big, "big.bin", create_only=True)
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion below
            errors.append(exc)

    thread = threading.Thread(target=upload)
    thread.start()
    time.sleep(0.3)
    gcs_emulator.stop()
    thread.join(timeout=60)
    gcs_emulator.start()
    assert errors and isinstance(errors[0], StoreUnavailable), errors
    assert not store.exists("big.bin")
    assert store.list() == []


def test_missing_credentials_says_how_to_authenticate(monkeypatch, tmp_path):
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path))  # no gcloud application-default file here
    monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:9")  # and no metadata server: loopback only
    monkeypatch.setenv("GCE_METADATA_IP", "127.0.0.1:9")
    store = GCSStore("gs://some-bucket/prefix")
    with pytest.raises(AuthError, match="gcloud auth application-default login"):
        store.exists("x")


@pytest.mark.parametrize("content, reason", [
    (None, "was not found"),
    ('{"type": "service_account"}', "Failed to load service account credentials"),
])
def test_unusable_credentials_file_is_named(content, reason, monkeypatch, tmp_path):
    """The key file wins over a gcloud login: the message must blame it, not ask for a login only."""
    key = tmp_path / "key.json"
    if content is not None:
        key.write_text(content)
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key))
    expected = f"GOOGLE_APPLICATION_CREDENTIALS={re.escape(str(key))} gives no usable credentials for gs://some-bucket"
    with pytest.raises(AuthError, match=f"{expected}/prefix .*{reason}.*fix or unset it"):
        GCSStore("gs://some-bucket/prefix").exists("x")


def test_local_objects_get_the_usual_file_mode(tmp_path):
    from laclip.storage.local import FILE_MODE

    store = open_store(str(tmp_path))
    store.write_bytes("a/x.bin", b"1")
    store.upload_file(tmp_path / "a" / "x.bin", "a/y.bin")
    for name in ("x.bin", "y.bin"):
        assert (tmp_path / "a" / name).stat().st_mode & 0o777 == FILE_MODE  # not mkstemp's 0600


def test_local_dataset_folder_may_be_a_symlink(tmp_path):
    elsewhere = open_store(str(tmp_path / "other-disk"))
    elsewhere.write_bytes("00000.tar", b"t")
    root = tmp_path / "root"
    (root / "datasets").mkdir(parents=True)
    (root / "datasets" / "demo").symlink_to(tmp_path / "other-disk")
    store = open_store(str(root))
    assert store.list("datasets/") == ["datasets/demo/00000.tar"]
    assert store.read_bytes("datasets/demo/00000.tar") == b"t"
    with pytest.raises(UsageError, match="escapes the store root"):
        store.read_bytes("datasets/../../other-disk/00000.tar")


def test_local_write_that_cannot_happen_is_a_storage_error(tmp_path):
    from laclip.errors import StorageError

    store = open_store(str(tmp_path))
    store.write_bytes("a", b"a file, not a folder")
    with pytest.raises(StorageError, match="cannot write in"):
        store.write_bytes("a/b.bin", b"1")
    assert store.list() == ["a"]



@pytest.mark.parametrize("url, needle", [
    ("gs://Bad_Bucket/x", "'Bad_Bucket' in 'gs://Bad_Bucket/x' is not a valid bucket name"),
    ("gs://ab", "'ab' in 'gs://ab' is not a valid bucket name"),
    ("gs://-bucket-/x", "is not a valid bucket name"),
    ("gs://" + "b" * 64, "is not a valid bucket name"),
    ("gs://", "'gs://' names no bucket"),  # said 'gs:' (the URL cut at its last slash)
    ("gs:/bucket/x", "'gs:/bucket/x' is not a URL: write gs://"),  # was a folder ./gs:/bucket/x
    ("gs:bucket", "is not a URL"),
    ("file://", "names no folder"),  # was the current directory
])
def test_malformed_roots_are_usage_errors(url, needle, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        open_store(url)
    assert list(tmp_path.iterdir()) == []  # nothing was written under the current directory


def test_valid_bucket_names_are_accepted():
    for url in ("gs://abc", "gs://my_bucket-1/p", "gs://data.example.com/p/q", "gs://" + "b" * 63):
        assert open_store(url).bucket_name == url[5:].split("/")[0]


def test_bad_timeout_in_environment_is_a_usage_error(monkeypatch):
    monkeypatch.setenv("LACLIP_GCS_RETRY_TIMEOUT", "2m")
    with pytest.raises(UsageError, match="LACLIP_GCS_RETRY_TIMEOUT='2m' is not a number of seconds"):
        open_store("gs://bucket/p")
    monkeypatch.setenv("LACLIP_GCS_RETRY_TIMEOUT", "0")
    with pytest.raises(UsageError, match="must be a positive number"):
        open_store("gs://bucket/p")


def test_download_where_no_file_can_be_made_is_a_storage_error(store, tmp_path):
    from laclip.errors import StorageError

    store.write_bytes("obj", b"1")
    (tmp_path / "a-file").write_bytes(b"")
    with pytest.raises(StorageError, match="cannot copy .*obj to .*a-file/sub/obj"):
        store.download_file("obj", tmp_path / "a-file" / "sub" / "obj")


def test_local_folder_is_not_an_object(tmp_path):
    from laclip.errors import StorageError

    store = open_store(str(tmp_path))
    store.write_bytes("d/a", b"1")
    with pytest.raises(NotFound, match="is a folder, not an object"):
        store.open_read("d")
    with pytest.raises(NotFound, match="is a folder, not an object"):
        store.delete("d")
    with pytest.raises(StorageError, match="cannot write .*/d: a folder has that name"):
        store.write_bytes("d", b"x")
    assert store.list() == ["d/a"]


class _FullBucketProxy:
    """The real emulator behind a proxy that answers upload requests with 507 Insufficient Storage (the
    emulator cannot run out of room): `chunks_only=False` fails every upload request; True lets a resumable
    session start and fails its chunks, as a bucket that fills up mid-upload would."""

    def __init__(self, upstream: str, chunks_only: bool):
        import http.client
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import urlsplit

        up = urlsplit(upstream)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                upload = self.path.startswith("/upload/")
                if upload and (not chunks_only or self.command == "PUT"):
                    data = b'{"error": {"code": 507, "message": "Insufficient Storage", "errors": [{"reason": ' \
                           b'"insufficientStorage", "message": "Insufficient Storage"}]}}'
                    self.send_response(507)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                conn = http.client.HTTPConnection(up.hostname, up.port, timeout=30)
                conn.request(self.command, self.path, body=body,
                             headers={k: v for k, v in self.headers.items() if k.lower() != "host"})
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() in ("transfer-encoding", "connection", "content-length"):
                        continue
                    if k.lower() == "location":  # the resumable session's URL: through the proxy too
                        v = proxy.url + v[len(f"{urlsplit(v).scheme}://{urlsplit(v).netloc}"):]
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _forward

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.mark.parametrize("resumable", [False, True], ids=["single-request", "resumable-chunks"])
def test_full_bucket_is_a_permanent_one_line_error(gcs_emulator, gcs_bucket, monkeypatch, tmp_path, resumable):
    """A 507 from GCS (no room in the bucket or project): StoreFull, permanent (exit 3, never retried),
    one line naming the object; reads still work, and no partial object is left."""
    from laclip.errors import EXIT_PERMANENT, StoreFull, container_exit_code

    GCSStore(gcs_bucket).write_bytes("before", b"ok")
    proxy = _FullBucketProxy(gcs_emulator.url, chunks_only=resumable)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
    try:
        store = GCSStore(gcs_bucket, retry_timeout=5, request_timeout=5,
                         upload_chunk_size=256 * 1024 if resumable else None)
        assert store.read_bytes("before") == b"ok"  # the emulator answers through the proxy
        big = tmp_path / "step_1.pt"
        big.write_bytes(os.urandom(9 * 1024 * 1024 if resumable else 1000))  # resumable above 8 MiB
        with pytest.raises(StoreFull) as caught:
            store.upload_file(big, "checkpoints/r/step_1.pt", create_only=True)
        message = str(caught.value)
        assert "\n" not in message and f"{gcs_bucket}/checkpoints/r/step_1.pt" in message and "507" in message
        assert caught.value.permanent and container_exit_code(caught.value) == EXIT_PERMANENT
        assert not store.exists("checkpoints/r/step_1.pt")
    finally:
        proxy.server.shutdown()
