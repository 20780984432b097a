"""Node fixtures: `swarm serve` as a real separate process, on loopback only."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from swarm.client import Client

SWARM = Path(sys.executable).with_name("swarm")


class ServeProcess:
    """One `swarm serve` process; its stdout is collected line by line as it comes."""

    def __init__(
        self, home: Path, *args: str, swarm_port: int = 0, env: dict[str, str] | None = None
    ) -> None:
        self.home = home
        self.command = [
            str(SWARM),
            "serve",
            "--name",
            home.name,
            "--home",
            str(home),
            "--swarm-host",
            "127.0.0.1",
            "--swarm-port",
            str(swarm_port),
            "--api-port",
            "0",
            "--gpu",
            "0",
            *args,
        ]
        self.proc = subprocess.Popen(
            self.command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        for stream, sink in ((self.proc.stdout, self.stdout), (self.proc.stderr, self.stderr)):
            threading.Thread(target=_collect, args=(stream, sink), daemon=True).start()
        self.exports: dict[str, str] = {}

    def wait_ready(self, timeout: float = 20.0) -> ServeProcess:
        """Wait for the banner's last export line; fail with the output if it never comes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = "".join(self.stdout)
            if "SWARM_API_TOKEN=" in text:
                self.exports = dict(re.findall(r"export (SWARM_API_\w+)=(\S*)", text))
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        raise AssertionError(
            f"swarm serve not ready (exit {self.proc.poll()}):\n{''.join(self.stdout)}"
            f"{''.join(self.stderr)}"
        )

    @property
    def banner(self) -> str:
        return "".join(self.stdout)

    @property
    def peer_id(self) -> str:
        return re.search(r"peer id:\s+(\S+)", self.banner).group(1)

    @property
    def address(self) -> str:
        return re.search(r"swarm:\s+(\S+)", self.banner).group(1)

    @property
    def swarm_port(self) -> int:
        return int(self.address.split("/")[4])

    def client(self) -> Client:
        port, token = self.exports["SWARM_API_PORT"], self.exports["SWARM_API_TOKEN"]
        return Client(f"http://127.0.0.1:{port}", token, timeout=5)

    def nodes(self) -> list[dict]:
        with self.client() as client:
            return client.nodes()

    def statuses(self) -> dict[str, str]:
        return {node["peer_id"]: node["status"] for node in self.nodes()}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def _collect(stream, sink: list[str]) -> None:
    for line in stream:
        sink.append(line)


@pytest.fixture
def serve(tmp_path):
    """Start `swarm serve` processes: ``serve("a", "--peer", addr)``; killed at teardown."""
    started: list[ServeProcess] = []

    def start(name: str, *args: str, swarm_port: int = 0, ready: bool = True) -> ServeProcess:
        process = ServeProcess(tmp_path / name, *args, swarm_port=swarm_port)
        started.append(process)
        return process.wait_ready() if ready else process

    yield start
    for process in started:
        process.stop()
