"""The outputs archive: round trips, symlinks left out, and hostile streams refused."""

from __future__ import annotations

import io
import os
import random
import subprocess
import tarfile
from pathlib import Path

import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from swarm.errors import ProtocolError, StorageError
from swarm.storage.archive import (
    CHUNK,
    PROBE,
    STREAM_CHUNK_OUTPUT,
    StreamChunk,
    Unpacker,
    pack,
    stream_steps,
    unpack,
)

BIG = 10**12


def tree_of(root: Path) -> dict[str, bytes | None]:
    """{relative path: content, or None for a directory}, symlinks not followed."""
    out: dict[str, bytes | None] = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        out[relative] = None if path.is_dir() else path.read_bytes()
    return out


def round_trip(source: Path, dest: Path, chunk: int | None = None):
    data = b"".join(pack(source))
    pieces = [data] if chunk is None else [data[i : i + chunk] for i in range(0, len(data), chunk)]
    return unpack(pieces, dest, max_bytes=BIG, max_entries=10_000)


@pytest.fixture
def source(tmp_path) -> Path:
    root = tmp_path / "outputs"
    (root / "empty-dir").mkdir(parents=True)
    (root / "a" / "b").mkdir(parents=True)
    (root / "count.txt").write_text("file1.txt has 69 words\n")
    (root / "a" / "b" / "random.bin").write_bytes(os.urandom(CHUNK * 2 + 123))
    (root / "a" / "empty").write_bytes(b"")
    (root / ("x" * 150)).write_text("long name")  # needs a pax header
    (root / "données 🐟.txt").write_text("unicode name")
    (root / "exactly-512").write_bytes(b"5" * 512)
    return root


@pytest.mark.parametrize("chunk", [None, 1, 511, 4096, 100_000])
def test_round_trip_in_any_chunking(source, tmp_path, chunk):
    if chunk == 1:  # byte by byte over 2 MiB of random data would be slow: a smaller tree
        (source / "a" / "b" / "random.bin").write_bytes(os.urandom(5000))
    summary = round_trip(source, tmp_path / "dest", chunk)
    assert tree_of(tmp_path / "dest") == tree_of(source)
    assert (summary.files, summary.directories) == (6, 3)
    assert summary.bytes == sum(len(v) for v in tree_of(source).values() if v is not None)


def test_pack_yields_chunks_of_about_a_mebibyte(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "big").write_bytes(os.urandom(5 * CHUNK))
    sizes = [len(chunk) for chunk in pack(tmp_path / "src")]
    assert len(sizes) >= 4
    assert all(CHUNK <= size <= 2 * CHUNK for size in sizes[:-1])


def test_symlinks_and_special_files_are_left_out(source, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("do not ship")
    os.symlink(secret, source / "link-to-secret")
    os.symlink(tmp_path, source / "link-to-dir")
    os.mkfifo(source / "fifo")
    round_trip(source, tmp_path / "dest")
    names = set(tree_of(tmp_path / "dest"))
    assert not {"link-to-secret", "link-to-dir", "fifo"} & names
    assert "count.txt" in names


def test_gnu_tar_reads_the_stream(source):
    """The stream is a plain .tar.zst: zstd-decompress it and GNU tar lists every entry."""
    compressed = b"".join(pack(source))
    plain = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(compressed)).read()
    listing = subprocess.run(["tar", "-tf", "-"], input=plain, capture_output=True, check=True)
    names = {name.rstrip("/") for name in listing.stdout.decode().splitlines()}
    assert names == set(tree_of(source))


def test_packing_a_file_is_refused(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(StorageError, match="not a directory"):
        list(pack(tmp_path / "f"))


def test_unpacking_into_a_non_empty_folder_is_refused(source, tmp_path):
    (tmp_path / "dest").mkdir()
    (tmp_path / "dest" / "old").write_text("x")
    with pytest.raises(StorageError, match="not empty"):
        Unpacker(tmp_path / "dest", max_bytes=1, max_entries=1)


# Hostile archives, built with the stdlib tarfile the way an attacker would.


def hostile(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            info.size = len(data) if info.type in (tarfile.REGTYPE,) else info.size
            tar.addfile(info, io.BytesIO(data) if data else None)
    return zstandard.ZstdCompressor().compress(buffer.getvalue())


def member(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"x", **attrs):
    info = tarfile.TarInfo(name)
    info.type = kind
    for key, value in attrs.items():
        setattr(info, key, value)
    return info, data


@pytest.mark.parametrize(
    "members,words",
    [
        ([member("/etc/passwd")], "is an absolute path"),
        ([member("../escape")], "climbs out with '..'"),
        ([member("a/../../escape")], "climbs out with '..'"),
        ([member("x" * 200 + "/../../e")], "climbs out"),  # in a pax header
        ([member("link", tarfile.SYMTYPE, b"", linkname="/etc/passwd")], "is a symlink"),
        ([member("hard", tarfile.LNKTYPE, b"", linkname="count.txt")], "is a hard link"),
        ([member("dev", tarfile.CHRTYPE, b"", devmajor=1, devminor=3)], "character device"),
        ([member("blk", tarfile.BLKTYPE, b"")], "a block device"),
        ([member("fifo", tarfile.FIFOTYPE, b"")], "is a fifo"),
        ([member("f"), member("f")], "holds 'f' twice"),
        ([member("d", tarfile.DIRTYPE, b""), member("d")], "holds 'd' twice"),
        ([member("f"), member("f/g")], "clashes with a file"),
        ([member("f"), member("f", tarfile.DIRTYPE, b"")], "clashes with a file"),
        ([member("big", data=b"x" * 101)], "more than 100 bytes"),
        ([member("a", data=b"x" * 60), member("b", data=b"x" * 60)], "more than 100 bytes"),
        ([member(f"f{i}", data=b"") for i in range(6)], "more than 5 entries"),
        ([member(f"d{i}", tarfile.DIRTYPE, b"") for i in range(6)], "more than 5 entries"),
        ([member("", data=b"x")], "empty name"),
    ],
)
def test_hostile_archives_are_refused(tmp_path, members, words):
    data = hostile(*members)
    with pytest.raises(ProtocolError, match=words):
        unpack([data], tmp_path / "dest", max_bytes=100, max_entries=5)
    assert not (tmp_path / "escape").exists()


def test_a_size_is_refused_before_its_data_arrives(tmp_path):
    header = tarfile.TarInfo("huge")
    header.size = 10**12
    stream = zstandard.ZstdCompressor().compressobj()
    first = stream.compress(header.tobuf(tarfile.PAX_FORMAT)) + stream.flush(
        zstandard.COMPRESSOBJ_FLUSH_BLOCK
    )
    unpacker = Unpacker(tmp_path / "dest", max_bytes=10**6, max_entries=10)
    with pytest.raises(ProtocolError, match="more than 1000000 bytes"):
        unpacker.feed(first)
    assert not (tmp_path / "dest" / "huge").exists()
    with pytest.raises(ProtocolError, match="already refused"):
        unpacker.feed(b"more")


def test_a_decompression_bomb_stops_at_the_cap_without_filling_memory(tmp_path):
    info = tarfile.TarInfo("zeros")
    info.size = 1 << 30
    compressor = zstandard.ZstdCompressor(level=1).compressobj()
    parts = [compressor.compress(info.tobuf(tarfile.PAX_FORMAT))]
    parts += [compressor.compress(bytes(1 << 24)) for _ in range(64)]
    bomb = b"".join(parts) + compressor.flush()
    assert len(bomb) < 200_000
    with pytest.raises(ProtocolError, match="more than"):
        unpack([bomb], tmp_path / "dest", max_bytes=1 << 20, max_entries=10)


def test_trailing_garbage_and_truncation(source, tmp_path):
    data = b"".join(pack(source))
    with pytest.raises(ProtocolError, match="ended early"):
        unpack([data[: len(data) // 2]], tmp_path / "cut", max_bytes=BIG, max_entries=100)
    with pytest.raises(ProtocolError, match="not valid zstd"):
        unpack([data + b"garbage!"], tmp_path / "tail", max_bytes=BIG, max_entries=100)
    with pytest.raises(ProtocolError, match="ended early"):
        unpack([], tmp_path / "nothing", max_bytes=BIG, max_entries=100)


def test_data_after_the_end_marker_is_refused(tmp_path):
    plain = io.BytesIO()
    with tarfile.open(fileobj=plain, mode="w") as tar:
        tar.addfile(tarfile.TarInfo("empty"))
    stream = plain.getvalue() + b"sneaky" + bytes(506)
    with pytest.raises(ProtocolError, match="data after its end marker"):
        unpack(
            [zstandard.ZstdCompressor().compress(stream)],
            tmp_path / "d",
            max_bytes=9,
            max_entries=9,
        )


def test_a_corrupt_header_is_refused(tmp_path):
    header = bytearray(tarfile.TarInfo("f").tobuf(tarfile.USTAR_FORMAT))
    header[0] = ord("g")  # checksum no longer matches
    data = zstandard.ZstdCompressor().compress(bytes(header) + bytes(1024))
    with pytest.raises(ProtocolError, match="bad tar header"):
        unpack([data], tmp_path / "d", max_bytes=9, max_entries=9)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(max_size=3000), st.booleans())
def test_any_bytes_unpack_or_raise_protocol_error(tmp_path_factory, data, compress):
    if compress:  # valid zstd around arbitrary bytes reaches the tar parser
        data = zstandard.ZstdCompressor().compress(data)
    dest = tmp_path_factory.mktemp("fuzz")
    try:
        unpack([data], dest / "out", max_bytes=10_000, max_entries=20)
    except ProtocolError:
        pass
    for path in (dest / "out").rglob("*"):
        assert path.resolve().is_relative_to((dest / "out").resolve())
        assert not path.is_symlink()


def test_gnu_long_names_are_understood_and_checked(tmp_path):
    def gnu(name: str) -> bytes:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
            info = tarfile.TarInfo(name)
            info.size = 2
            tar.addfile(info, io.BytesIO(b"ok"))
        return zstandard.ZstdCompressor().compress(buffer.getvalue())

    long_name = "d" * 120 + "/" + "f" * 120
    unpack([gnu(long_name)], tmp_path / "ok", max_bytes=9, max_entries=9)
    assert (tmp_path / "ok" / long_name).read_bytes() == b"ok"
    with pytest.raises(ProtocolError, match="climbs out"):
        unpack([gnu("../" * 40 + "x" * 100)], tmp_path / "bad", max_bytes=9, max_entries=9)


def test_global_pax_headers_are_refused(tmp_path):
    buffer = io.BytesIO()
    with tarfile.open(
        fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT, pax_headers={"comment": "hi"}
    ) as tar:
        tar.addfile(tarfile.TarInfo("f"))
    data = zstandard.ZstdCompressor().compress(buffer.getvalue())
    with pytest.raises(ProtocolError, match="unsupported type b'g'"):
        unpack([data], tmp_path / "d", max_bytes=9, max_entries=9)


def stream_round_trip(source: Path, dest: Path) -> list[StreamChunk]:
    chunks = [c for c in stream_steps(source) if c is not None]
    limit = STREAM_CHUNK_OUTPUT
    with Unpacker(dest, max_bytes=BIG, max_entries=10_000, max_chunk_output=limit) as unpacker:
        for c in chunks:
            unpacker.feed(c.data, c.compressed)
    return chunks


def test_the_result_stream_sends_noise_plain_and_text_compressed(tmp_path):
    root = tmp_path / "outputs"
    (root / "deep" / "er").mkdir(parents=True)
    text = b"".join(b"word %d counted %d times\n" % (i % 97, i) for i in range(150_000))
    noise = os.urandom(3 * CHUNK + 12345)
    (root / "a-text.txt").write_bytes(text)
    (root / "b-noise.bin").write_bytes(noise)
    (root / "deep" / "c-text.txt").write_bytes(text[: CHUNK + 7])
    (root / "deep" / "er" / "d-small").write_bytes(b"tiny")
    chunks = stream_round_trip(root, tmp_path / "dest")
    assert tree_of(tmp_path / "dest") == tree_of(root)
    plain = sum(len(c.data) for c in chunks if not c.compressed)
    packed = sum(len(c.data) for c in chunks if c.compressed)
    assert len(noise) - 2 * PROBE <= plain <= len(noise)  # the noise, all but a probe's worth
    assert packed < (len(text) + CHUNK) / 2  # the text, shrunk
    kinds = [c.compressed for c in chunks]
    assert kinds.index(False) > 0 and True in kinds[kinds.index(False) :]  # interleaved


def test_the_result_stream_has_bounded_steps(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "zeros").write_bytes(bytes(8 * CHUNK))
    steps = list(stream_steps(tmp_path / "src"))
    assert len(steps) >= 8 and steps[-1] is not None and not any(steps[:-1])
    stream_round_trip(tmp_path / "src", tmp_path / "dst")
    assert (tmp_path / "dst" / "zeros").read_bytes() == bytes(8 * CHUNK)


def test_plain_chunks_get_the_same_checks(tmp_path):
    evil = hostile(member("../escape.txt", data=b"x" * 100))
    tar_bytes = zstandard.ZstdDecompressor().decompressobj().decompress(evil)
    with pytest.raises(ProtocolError, match="climbs out"):
        with Unpacker(tmp_path / "dst", max_bytes=BIG, max_entries=10) as unpacker:
            unpacker.feed(tar_bytes, compressed=False)
    assert not (tmp_path / "escape.txt").exists()


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    files=st.lists(
        st.tuples(st.booleans(), st.integers(0, 5 * CHUNK // 2)), min_size=1, max_size=4
    ),
    seed=st.integers(0, 2**32 - 1),
)
def test_any_mix_of_noise_and_text_round_trips_through_the_result_stream(
    tmp_path_factory, files, seed
):
    """Frames end and plain pieces start at every kind of boundary: nothing is lost."""
    work = tmp_path_factory.mktemp("mix")
    noise = random.Random(seed).randbytes(5 * CHUNK // 2)
    text = b"".join(b"line %d\n" % (i % 1000) for i in range(400_000))
    for i, (is_noise, size) in enumerate(files):
        (work / "src").mkdir(exist_ok=True)
        (work / "src" / f"f{i}").write_bytes((noise if is_noise else text)[:size])
    stream_round_trip(work / "src", work / "dst")
    assert tree_of(work / "dst") == tree_of(work / "src")


def test_a_result_stream_chunk_stands_for_a_bounded_amount_of_tar(tmp_path):
    """40 MiB of zeros compress to a few KiB. The result stream still ends a chunk every
    16 MiB of them, so a requester may refuse a chunk that gives more than 32 MiB (a
    bomb) and still take every honest stream; `pack` (downloads) makes one chunk of it."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "zeros").write_bytes(bytes(40 * CHUNK))
    chunks = [c for c in stream_steps(tmp_path / "src") if c is not None]
    assert len(chunks) >= 3 and all(c.compressed for c in chunks)
    with Unpacker(
        tmp_path / "ok", max_bytes=BIG, max_entries=10, max_chunk_output=STREAM_CHUNK_OUTPUT
    ) as unpacker:
        for c in chunks:
            unpacker.feed(c.data, c.compressed)
    assert (tmp_path / "ok" / "zeros").stat().st_size == 40 * CHUNK

    (bomb,) = pack(tmp_path / "src")
    with pytest.raises(ProtocolError, match="expands past"):
        with Unpacker(
            tmp_path / "no", max_bytes=BIG, max_entries=10, max_chunk_output=STREAM_CHUNK_OUTPUT
        ) as unpacker:
            unpacker.feed(bomb)
    unpack([bomb], tmp_path / "download", max_bytes=BIG, max_entries=10)  # no such limit
