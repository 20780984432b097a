"""Outputs-archive figures: `.venv/bin/python bench/archive.py`.

Packs ~100 MB of mixed data (half random bytes, half text, plus 500 small files) and
unpacks it again, with the format swarm uses (pax tar + zstd level 1, `swarm.storage.
archive`) and with the stdlib alternative (tarfile stream mode + gzip level 1, unpacked
with the "data" filter), and the result stream between nodes (the same tar, with data
zstd cannot shrink sent plain: `stream_steps`). Throughput = input bytes / (pack time +
unpack time), median of 3. Target: >= 150 MB/s, so the result stream is not slower than
the network.
"""

from __future__ import annotations

import gzip
import os
import random
import shutil
import statistics
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from swarm.storage.archive import Unpacker, pack, stream_steps, unpack  # noqa: E402

REPEAT = 3
MiB = 1024 * 1024


def make_tree(root: Path) -> int:
    rng = random.Random(1)
    words = [b"cod", b"salted", b"dried", b"wasm", b"swarm", b"data", b"fish", b"compute"]
    for i in range(10):
        (root / f"random-{i}.bin").write_bytes(os.urandom(5 * MiB))
    text = b" ".join(rng.choice(words) for _ in range(1_200_000))[: 5 * MiB]
    for i in range(10):
        (root / "text" / f"{i}").mkdir(parents=True)
        (root / "text" / f"{i}" / "words.txt").write_bytes(text)
    small = root / "small"
    small.mkdir()
    for i in range(500):
        (small / f"{i:03}.csv").write_bytes(text[i * 4096 : i * 4096 + 4096])
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def swarm_zstd(source: Path, dest: Path) -> tuple[float, float, int]:
    start = time.perf_counter()
    chunks = list(pack(source))
    packed = time.perf_counter()
    unpack(chunks, dest, max_bytes=1 << 40, max_entries=100_000)
    return packed - start, time.perf_counter() - packed, sum(map(len, chunks))


def swarm_stream(source: Path, dest: Path) -> tuple[float, float, int]:
    start = time.perf_counter()
    chunks = [chunk for chunk in stream_steps(source) if chunk is not None]
    packed = time.perf_counter()
    with Unpacker(dest, max_bytes=1 << 40, max_entries=100_000) as unpacker:
        for chunk in chunks:
            unpacker.feed(chunk.data, chunk.compressed)
    return packed - start, time.perf_counter() - packed, sum(len(c.data) for c in chunks)


def stdlib_gzip(source: Path, dest: Path) -> tuple[float, float, int]:
    archive = dest.parent / "out.tar.gz"
    start = time.perf_counter()
    # Python 3.11's "w|gz" has no compresslevel: stream through GzipFile instead.
    with gzip.GzipFile(archive, "wb", compresslevel=1) as out:
        with tarfile.open(fileobj=out, mode="w|") as tar:
            tar.add(source, arcname=".")
    packed = time.perf_counter()
    with gzip.GzipFile(archive, "rb") as src, tarfile.open(fileobj=src, mode="r|") as tar:
        tar.extractall(dest, filter="data")
    return packed - start, time.perf_counter() - packed, archive.stat().st_size


def measure(name: str, run: Callable, source: Path, size: int, work: Path) -> None:
    totals, packs, unpacks = [], [], []
    for i in range(REPEAT):
        dest = work / f"{name}-{i}" / "out"
        dest.parent.mkdir()
        pack_s, unpack_s, compressed = run(source, dest)
        packs.append(pack_s)
        unpacks.append(unpack_s)
        totals.append(pack_s + unpack_s)
        shutil.rmtree(dest.parent)
    mb = size / 1e6
    print(
        f"  {name:<22} pack {mb / statistics.median(packs):6.0f} MB/s   "
        f"unpack {mb / statistics.median(unpacks):6.0f} MB/s   "
        f"both {mb / statistics.median(totals):6.0f} MB/s   "
        f"ratio {compressed / size:.2f}"
    )


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        source = work / "tree"
        source.mkdir()
        size = make_tree(source)
        print(f"outputs archive benchmark (median of {REPEAT}; {size / 1e6:.0f} MB mixed data)")
        measure("tar + zstd 1 (swarm)", swarm_zstd, source, size, work)
        measure("result stream (swarm)", swarm_stream, source, size, work)
        measure("tarfile + gzip 1", stdlib_gzip, source, size, work)


if __name__ == "__main__":
    main()
