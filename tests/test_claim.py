"""laclip.claim, the one way to claim work, and the content digests identities are made of: records written
once and compared by identity, damaged records named in one line, the completion index, pending indexes;
Store.digests on a folder (cached file hashes) and on gs:// (the listing's hashes, through the emulator)."""

from __future__ import annotations

import json

import pytest

from laclip import claim
from laclip.errors import DataError, UsageError
from laclip.storage import open_store


def test_a_record_is_written_once_and_compared_by_its_identity(tmp_path):
    store = open_store(str(tmp_path))
    first = {"identity": {"lr": 0.1, "data": "abc"}, "made": 1}
    assert claim.claim(store, "out/config.json", first, key="identity", what="x", fresh="start afresh") == first
    again = {"identity": {"data": "abc", "lr": 0.1}, "made": 2}  # the same identity (key order is no content)
    assert claim.claim(store, "out/config.json", again, key="identity", what="x", fresh="f")["made"] == 1
    other = {"identity": {"lr": 0.2, "data": "abc", "seed": 3}}
    with pytest.raises(UsageError) as info:
        claim.claim(store, "out/config.json", other, key="identity", what="an output of other settings",
                    fresh="start afresh")
    message = str(info.value)
    assert message.startswith(f"{store.url_of('out/config.json')} records an output of other settings (")
    assert "lr: 0.1 -> 0.2" in message and "seed: not recorded -> 3" in message and message.endswith("start afresh")
    assert json.loads(store.read_text("out/config.json"))["made"] == 1  # never replaced


@pytest.mark.parametrize("data, what", [(b"", "empty"), (b"{half", "not JSON"), (b"[1, 2]", "a JSON list"),
                                        (b"\xff\xfe", "not UTF-8"), (b"7", "a JSON int")])
def test_a_damaged_record_is_one_line_naming_the_file(tmp_path, data, what):
    store = open_store(str(tmp_path))
    store.write_bytes("r.json", data)
    with pytest.raises(DataError) as info:
        claim.read_record(store, "r.json", "delete it")
    assert str(info.value).startswith(f"{store.url_of('r.json')} is damaged") and what in str(info.value)
    assert "\n" not in str(info.value) and str(info.value).endswith("delete it")
    assert claim.read_record(store, "absent.json") is None


def test_the_completion_index_and_pending_indexes(monkeypatch):
    monkeypatch.delenv(claim.INDEX_ENV, raising=False)
    assert claim.completion_index() is None
    with pytest.raises(UsageError, match="no completion index"):
        claim.completion_index(required=True)
    for bad in ("-1", "x", "1.5", ""):
        monkeypatch.setenv(claim.INDEX_ENV, bad)
        with pytest.raises(UsageError, match="whole number"):
            claim.completion_index()
    monkeypatch.setenv(claim.INDEX_ENV, " 2 ")
    assert claim.completion_index() == 2
    assert claim.units_of_index("abcdefg", 2, 3) == ["g"] and claim.units_of_index("abc", None) == ["a", "b", "c"]
    with pytest.raises(UsageError, match="names none of the 3 datasets"):
        claim.units_of_index("abc", 3, what="datasets")
    assert claim.pending_indexes(list(range(7)), lambda u: u not in (1, 6), 3) == [0, 2]


def test_the_same_rows_in_another_order_are_no_change():
    rows = [("a", "one"), ("b", "two"), ("c", "three")]
    assert claim.row_changes(rows, rows[::-1]) == (0, 0, 0)
    assert claim.row_changes(rows, [("a", "one"), ("b", "2"), ("d", "x")]) == (1, 1, 1)


def test_folder_digests_are_of_content_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("LACLIP_DIGEST_CACHE", str(tmp_path / "cache.sqlite"))
    store = open_store(str(tmp_path / "root"))
    store.write_bytes("a/x.bin", b"same bytes")
    store.write_bytes("b/x.bin", b"same bytes")
    sums = store.digests("")
    assert sums["a/x.bin"] == sums["b/x.bin"] and sums["a/x.bin"].startswith("sha256:")
    (tmp_path / "root" / "b" / "x.bin").write_bytes(b"same bytez")  # same size, other content
    assert store.digests("b/")["b/x.bin"] != sums["a/x.bin"]
    import sqlite3

    rows = sqlite3.connect(tmp_path / "cache.sqlite").execute("SELECT count(*) FROM digests").fetchone()[0]
    assert rows == 2  # one row per file: its newest version


def test_gcs_digests_come_from_the_listing(gcs_bucket, tmp_path):
    store = open_store(gcs_bucket)
    store.write_bytes("m/weights.bin", b"w" * 1000)
    store.write_bytes("n/weights.bin", b"w" * 1000)
    store.write_bytes("n/other.bin", b"v" * 1000)
    sums = store.digests("")
    assert sums["m/weights.bin"] == sums["n/weights.bin"] != sums["n/other.bin"]
    assert set(store.digests("n/")) == {"n/weights.bin", "n/other.bin"}
