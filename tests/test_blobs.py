"""The content-addressed blob store, on a real folder."""

from __future__ import annotations

import hashlib
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swarm.errors import ConfigError, NotFound, ProtocolError
from swarm.storage.blobs import BlobStore, digest_bytes, is_digest

HELLO = "sha256:" + hashlib.sha256(b"hello").hexdigest()


@pytest.fixture
def store(tmp_path) -> BlobStore:
    return BlobStore(tmp_path / "blobs")


def test_put_bytes_and_read_back(store):
    digest = store.put_bytes(b"hello")
    assert digest == HELLO == digest_bytes(b"hello")
    assert store.has(digest) and store.size(digest) == 5
    with store.open(digest) as blob:
        assert blob.read() == b"hello"
    hex_digest = digest.removeprefix("sha256:")
    assert store.path(digest) == store.root / "sha256" / hex_digest[:2] / hex_digest


def test_a_blob_is_looked_up_on_disk_once(store, monkeypatch):
    from pathlib import Path

    stats = []
    real_stat = Path.stat
    monkeypatch.setattr(Path, "stat", lambda self, **kw: stats.append(self) or real_stat(self))
    digest = store.put_bytes(b"hello")
    again = BlobStore(store.root)  # as after a restart: the blob is on disk already
    absent = "sha256:" + "0" * 64
    stats.clear()
    for _ in range(3):
        assert store.has(digest) and store.size(digest) == 5 and store.path(digest)
        assert again.has(digest) and again.size(digest) == 5 and again.path(digest)
        assert not again.has(absent)  # absence is not remembered: it may be uploaded
    assert len(stats) == 1 + 3  # the restarted store's one look, and each absent one
    again.put_bytes(b"new")
    assert again.has(digest_bytes(b"new"))


def test_putting_the_same_bytes_twice_is_harmless(store):
    assert store.put_bytes(b"hello") == store.put_bytes(b"hello")
    assert list((store.root / "tmp").iterdir()) == []


def test_put_file_streams_large_files(store, tmp_path):
    source = tmp_path / "module.wasm"
    data = os.urandom(3 * 1024 * 1024 + 7)
    source.write_bytes(data)
    digest = store.put_file(source)
    assert digest == digest_bytes(data)
    assert store.path(digest).read_bytes() == data


def test_put_file_of_a_missing_file(store, tmp_path):
    with pytest.raises(ConfigError, match="cannot read .*missing.wasm"):
        store.put_file(tmp_path / "missing.wasm")


def test_absent_blob(store):
    absent = "sha256:" + "0" * 64
    assert not store.has(absent)
    for call in (store.path, store.open, store.size):
        with pytest.raises(NotFound, match="not in this node's store"):
            call(absent)


@pytest.mark.parametrize(
    "digest",
    [
        "",
        "sha256:",
        "sha256:../../etc/passwd",
        "sha256:" + "a" * 63,
        "sha256:" + "a" * 65,
        "sha256:" + "A" * 64,
        "sha256:" + "g" * 64,
        "sha512:" + "a" * 64,
        "a" * 64,
        "sha256:" + "a" * 62 + "/a",
        "sha256:" + "a" * 63 + "\n",
    ],
)
def test_malformed_ids_never_touch_the_filesystem(store, digest):
    assert not is_digest(digest)
    for call in (store.has, store.path, store.open, store.size, store.writer):
        with pytest.raises(ConfigError, match="is not a blob id"):
            call(digest)


@settings(max_examples=200)
@given(st.text(max_size=80))
def test_only_exact_ids_are_accepted(text):
    assert is_digest(text) == (
        text.startswith("sha256:")
        and len(text) == 71
        and all(c in "0123456789abcdef" for c in text[7:])
    )


def test_streamed_write_with_the_expected_id(store):
    with store.writer(HELLO) as writer:
        writer.write(b"hel")
        writer.write(b"lo")
        assert writer.commit() == HELLO
    assert store.has(HELLO)


def test_streamed_write_with_the_wrong_content_is_discarded(store):
    with pytest.raises(ProtocolError, match=f"hashes to sha256:.*, not {HELLO}"):
        with store.writer(HELLO) as writer:
            writer.write(b"jello")
            writer.commit()
    assert not store.has(HELLO)
    assert list((store.root / "tmp").iterdir()) == []


def test_streamed_write_over_its_size_is_discarded(store):
    with store.writer(HELLO, max_size=4) as writer:
        with pytest.raises(ProtocolError, match="larger than the 4 bytes"):
            writer.write(b"hello")
    assert list((store.root / "tmp").iterdir()) == []


def test_a_write_left_without_commit_leaves_nothing(store):
    with pytest.raises(RuntimeError):
        with store.writer() as writer:
            writer.write(b"partial")
            raise RuntimeError("stream cut")
    with store.writer() as writer:
        writer.write(b"abandoned")
    assert list((store.root / "tmp").iterdir()) == []
    assert not any(p.is_file() for p in (store.root / "sha256").rglob("*"))


def test_a_finished_writer_refuses_more(store):
    writer = store.writer()
    writer.write(b"x")
    writer.commit()
    with pytest.raises(Exception, match="already finished"):
        writer.write(b"y")


def test_a_new_store_on_the_same_folder_sees_the_blobs(store):
    digest = store.put_bytes(b"kept")
    assert BlobStore(store.root).path(digest).read_bytes() == b"kept"


def test_a_trailing_newline_is_not_part_of_an_id():
    assert not is_digest(HELLO + "\n")
