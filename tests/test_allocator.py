"""The C allocator setting of a node process (swarm.allocator): frame-sized buffers,
freed, are reused without page faults; the user's own glibc settings win; `swarm serve`
applies it."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap

import pytest
from typer.testing import CliRunner

import cli.serve
from cli.main import app
from swarm import allocator

glibc_only = pytest.mark.skipif(
    platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's: elsewhere nothing is set"
)

# A compute node's send path in miniature: a chunk, a body made of it, a frame made of that,
# all alive at once, then freed; a hundred times (100 MiB), after one such round to warm up.
CHURN = textwrap.dedent(
    """
    import resource, sys
    from swarm.allocator import keep_freed_memory
    if sys.argv[1] == "keep":
        assert keep_freed_memory()
    def churn():
        for _ in range(100):
            chunk = bytes(1 << 20)
            body = chunk + b"b"
            frame = b"f" + body
            del chunk, body, frame
    churn()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    churn()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    """
)


def page_faults(mode: str) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    done = subprocess.run(
        [sys.executable, "-c", CHURN, mode], capture_output=True, text=True, env=env, check=True
    )
    return int(done.stdout)


@glibc_only
def test_freed_frames_are_reused_without_page_faults():
    default, kept = page_faults("default"), page_faults("keep")
    assert default > 10_000  # glibc's default hands the memory back, frame after frame
    assert kept < 1_000


@glibc_only
def test_the_users_own_malloc_settings_win(monkeypatch):
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "131072")
    assert allocator.keep_freed_memory() is False


def test_serve_keeps_freed_memory(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(cli.serve, "keep_freed_memory", lambda: calls.append("kept"))
    monkeypatch.setattr(cli.serve.trio, "run", lambda *args: calls.append("ran"))
    result = CliRunner().invoke(app, ["serve", "--home", str(tmp_path / "home")])
    assert result.exit_code == 0, result.output
    assert calls == ["kept", "ran"]  # before the node starts
