"""URL inputs: downloads from a local HTTP server (stdlib, on 127.0.0.1), the mounts a
compute node prepares, and whole jobs on an in-process node that read a downloaded file.
"""

from __future__ import annotations

import hashlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
import wasmtime

from swarm.compute.provision import prepare_mounts
from swarm.config import Dataset
from swarm.errors import InputUnavailable, MountError
from swarm.executor.spec import Mount
from swarm.jobspec import InputSource, JobSpec
from swarm.lifecycle import JobState
from swarm.node import open_node
from swarm.storage.fetch import fetch_url
from tests.test_p2p_security import config

WORDS = b"the cod swims where the data lives\n"  # 7 words
WORDS_SHA = hashlib.sha256(WORDS).hexdigest()


def cat(name: str) -> bytes:
    """A guest that copies NAME, in its first mount (fd 3), to stdout; exits with the errno."""
    return wasmtime.wat2wasm(
        f"""(module
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open"
    (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 2)
  (data (i32.const 1024) "{name}")
  (func (export "_start") (local $errno i32) (local $fd i32) (local $n i32)
    (local.set $errno (call $open (i32.const 3) (i32.const 1) (i32.const 1024)
      (i32.const {len(name)}) (i32.const 0) (i64.const 2) (i64.const 2) (i32.const 0)
      (i32.const 256)))
    (if (local.get $errno) (then (call $exit (local.get $errno))))
    (local.set $fd (i32.load (i32.const 256)))
    (loop $copy
      (i32.store (i32.const 0) (i32.const 4096))
      (i32.store (i32.const 4) (i32.const 4096))
      (local.set $errno (call $read (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8)))
      (if (local.get $errno) (then (call $exit (local.get $errno))))
      (local.set $n (i32.load (i32.const 8)))
      (if (local.get $n) (then
        (i32.store (i32.const 16) (i32.const 4096))
        (i32.store (i32.const 20) (local.get $n))
        (drop (call $write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 24)))
        (br $copy)))))
)"""
    )


class _Handler(BaseHTTPRequestHandler):
    """GET /files/NAME (with Content-Length), /nolength/NAME (none: ends at close),
    /redirect/NAME (302 to /files/NAME), /stall/NAME (half the body, then waits)."""

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        kind, _, name = self.path.lstrip("/").partition("/")
        body = self.server.files.get(name)
        if kind == "redirect":
            self.send_response(302)
            self.send_header("Location", f"/files/{name}")
            self.end_headers()
            return
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        if kind != "nolength":
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if kind == "stall":
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.server.release.wait(10)
            return
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


class Web:
    def __init__(self) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.files = {}
        self.server.release = threading.Event()
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/{path}"

    def serve(self, name: str, body: bytes) -> None:
        self.server.files[name] = body


@pytest.fixture
def web():
    web = Web()
    web.thread.start()
    yield web
    web.server.release.set()
    web.server.shutdown()
    web.server.server_close()


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port that refuses connections for the whole test: bound, never listening, so
    nothing else the test starts (a node binding port 0) can be handed it meanwhile."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        yield holder.getsockname()[1]


# fetch_url


async def test_fetch_streams_the_file_and_checks_its_digest(web, tmp_path):
    web.serve("words.txt", WORDS)
    async with httpx.AsyncClient(follow_redirects=True) as client:
        for path in ("files/words.txt", "nolength/words.txt", "redirect/words.txt"):
            dest = tmp_path / path.replace("/", "-")
            size = await fetch_url(client, web.url(path), dest, cap=1 << 20, sha256=WORDS_SHA)
            assert (size, dest.read_bytes()) == (len(WORDS), WORDS)


@pytest.mark.parametrize(
    "path,cap,sha256,words",
    [
        ("files/words.txt", 1 << 20, "0" * 64, f"sha256 mismatch (expected {'0' * 64}, got "),
        ("files/absent.txt", 1 << 20, None, "cannot fetch (HTTP 404 Not Found)"),
        ("files/words.txt", 10, None, "too large (over the 10 B left for downloads"),
        ("nolength/words.txt", 10, None, "too large (over the 10 B left"),
    ],
)
async def test_fetch_failures_say_why_and_leave_no_file(web, tmp_path, path, cap, sha256, words):
    web.serve("words.txt", WORDS)
    url, dest = web.url(path), tmp_path / "dest"
    async with httpx.AsyncClient() as client:
        with pytest.raises(MountError) as caught:
            await fetch_url(client, url, dest, cap=cap, sha256=sha256)
    assert str(caught.value).startswith(f"input {url}: {words}"), str(caught.value)
    assert "\n" not in str(caught.value)
    assert not dest.exists()


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_fetch_from_a_closed_port_is_connection_refused(tmp_path, scheme, closed_port):
    url = f"{scheme}://127.0.0.1:{closed_port}/x.csv"
    async with httpx.AsyncClient() as client:
        with pytest.raises(MountError) as caught:
            await fetch_url(client, url, tmp_path / "x.csv", cap=100)
    assert str(caught.value) == f"input {url}: cannot fetch (connection refused)"


async def test_a_stalled_download_times_out(web, tmp_path):
    web.serve("big.bin", b"x" * 100_000)
    url = web.url("stall/big.bin")
    async with httpx.AsyncClient(timeout=0.3) as client:
        with pytest.raises(MountError, match=r": cannot fetch \(timed out\)$"):
            await fetch_url(client, url, tmp_path / "big.bin", cap=1 << 20)
    assert not (tmp_path / "big.bin").exists()


# prepare_mounts: what the sandbox is given


async def test_mounts_for_urls_datasets_and_files(web, tmp_path):
    web.serve("a.csv", b"a\n")
    web.serve("b.csv", b"b\n")
    logs = tmp_path / "logs"
    (logs / "2026").mkdir(parents=True)
    inputs = (
        InputSource(web.url("files/a.csv"), sha256=hashlib.sha256(b"a\n").hexdigest()),
        InputSource("data://logs/2026", "/logs"),
        InputSource(web.url("redirect/b.csv")),
        InputSource(web.url("files/a.csv"), "/other/"),
    )
    work = tmp_path / "work"
    mounts = await prepare_mounts(
        inputs,
        allowed_paths=(),
        datasets=(Dataset("logs", logs),),
        work=work,
        fetch_deadline=10,
        fetch_private=True,  # the test's server is on 127.0.0.1
    )
    assert mounts == (
        Mount(work / "inputs" / "0", "/inputs"),
        Mount(logs / "2026", "/logs"),
        Mount(work / "inputs" / "1", "/other"),
    )
    assert sorted(p.name for p in (work / "inputs" / "0").iterdir()) == ["a.csv", "b.csv"]
    assert (work / "inputs" / "0" / "b.csv").read_bytes() == b"b\n"
    assert (work / "inputs" / "1" / "a.csv").read_bytes() == b"a\n"


async def test_mount_failures(web, tmp_path):
    web.serve("a.csv", b"x" * 600)
    web.serve("b.csv", b"y" * 600)
    web.serve("big.bin", b"z" * 100_000)
    logs = tmp_path / "logs"
    logs.mkdir()

    async def failure(
        *inputs: InputSource, cap: int = 1 << 20, deadline: float = 10, private: bool = True
    ) -> str:
        with pytest.raises(MountError) as caught:
            await prepare_mounts(
                inputs,
                allowed_paths=(),
                datasets=(Dataset("logs", logs),),
                work=tmp_path / f"work-{len(list(tmp_path.iterdir()))}",
                fetch_cap=cap,
                fetch_deadline=deadline,
                fetch_private=private,
            )
        return caught.value

    a, b = InputSource(web.url("files/a.csv")), InputSource(web.url("files/b.csv"))
    shared = await failure(a, b, cap=1000)  # the cap holds for all downloads of a run
    assert str(shared).startswith(f"input {b.source}: too large (over the 400 B left")
    same_name = await failure(a, InputSource(web.url("redirect/a.csv")))
    assert str(same_name) == "two inputs are mounted at /inputs/a.csv"
    stalled = await failure(InputSource(web.url("stall/big.bin")), deadline=0.3)
    assert str(stalled) == f"input {web.url('stall/big.bin')}: cannot fetch (not done within 0.3s)"
    gone = await failure(InputSource("data://logs/2027"))
    assert isinstance(gone, InputUnavailable) and gone.retryable  # another node may have it
    assert str(gone) == "input data://logs/2027 does not exist here"
    not_here = await failure(InputSource("data://other"))
    assert str(not_here) == "dataset other is not hosted here"

    # By default a URL must lead to public addresses only: not this node's loopback (by
    # address or by name), not a link-local metadata address, not an IPv6 loopback.
    port = web.url("files/a.csv").split(":")[2].split("/")[0]
    tail = "not a public address; a node fetches from its own network only with"
    tail += " --fetch-private-urls)"
    for url, why in (
        (web.url("files/a.csv"), {"127.0.0.1 is"}),
        (f"http://localhost:{port}/x.csv", {"localhost is 127.0.0.1 is", "localhost is ::1 is"}),
        ("http://169.254.169.254/latest/meta-data/x.txt", {"169.254.169.254 is"}),
        (f"http://[::1]:{port}/files/a.csv", {"::1 is"}),
        ("http://10.1.2.3/x.csv", {"10.1.2.3 is"}),
    ):
        refused = str(await failure(InputSource(url), private=False))
        assert any(refused == f"input {url}: refused ({w} {tail}" for w in why), refused


# Whole jobs on a node: the guest reads the downloaded file as /inputs/words.txt


async def test_jobs_with_url_inputs(web, tmp_path, closed_port):
    web.serve("words.txt", WORDS)
    web.serve("large.txt", b"word " * 1000)  # over the cap of 4 KiB set below
    refused = f"http://127.0.0.1:{closed_port}/x.csv"
    async with open_node(config(tmp_path, "x")) as node:
        node.compute.settings = replace(
            node.compute.settings, fetch_cap=4096, fetch_private_urls=True
        )
        digest = node.requester.blobs.put_bytes(cat("words.txt"))

        def submit(source: str, sha256: str | None = None):
            inputs = [{"source": source, "sha256": sha256}]
            spec = JobSpec.from_dict({"name": "url", "task": {"module": digest, "inputs": inputs}})
            return node.requester.submit(spec).id

        jobs = {
            "ok": submit(web.url("files/words.txt"), WORDS_SHA),
            "mismatch": submit(web.url("files/words.txt"), "0" * 64),
            "refused": submit(refused),
            "large": submit(web.url("files/large.txt")),
        }
        ended = {key: await node.requester.wait(job_id, timeout=20) for key, job_id in jobs.items()}

        ok = ended["ok"]
        assert ok.state is JobState.COMPLETED, ok.reason
        (execution,) = node.requester.store.executions(ok.id)
        folder = node.requester.results.folder(ok.id, execution.id)
        assert (folder / "stdout").read_bytes() == WORDS  # /inputs/words.txt, as served

        expected = {
            "mismatch": f"input {web.url('files/words.txt')}: sha256 mismatch "
            f"(expected {'0' * 64}, got {WORDS_SHA})",
            "refused": f"input {refused}: cannot fetch (connection refused)",
            "large": f"input {web.url('files/large.txt')}: too large (over the 4.0 KiB left",
        }
        for key, words in expected.items():
            job = ended[key]
            assert job.state is JobState.FAILED, (key, job.reason)
            assert words in job.reason, (key, job.reason)
            (execution,) = node.requester.store.executions(job.id)
            assert execution.message.startswith(words.split(" (")[0])

        # A node started without --fetch-private-urls (the default) refuses the same URL.
        node.compute.settings = replace(node.compute.settings, fetch_private_urls=False)
        job = await node.requester.wait(submit(web.url("files/words.txt")), timeout=20)
        assert job.state is JobState.FAILED
        assert "refused (127.0.0.1 is not a public address" in job.reason, job.reason


async def test_a_public_address_passes_the_private_address_check():
    from swarm.compute.provision import _refuse_private_hosts

    for url in ("http://93.184.216.34/x.csv", "https://[2606:2800:220:1::1]/x.csv"):
        assert await _refuse_private_hosts(httpx.Request("GET", url)) is None  # no raise
    with pytest.raises(MountError, match="::ffff:7f00:1 is 127.0.0.1 is not a public"):
        await _refuse_private_hosts(httpx.Request("GET", "http://[::ffff:7f00:1]/x.csv"))
