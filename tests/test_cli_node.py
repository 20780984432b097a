"""The `swarm` CLI for nodes: serve's banner and run file, node list / agent / version in
every output format, clean shutdown on signals, and one-line errors for bad input."""

from __future__ import annotations

import json
import signal
import socket
import time

import pytest
import yaml
from typer.testing import CliRunner

from cli.main import app
from tests.conftest import ServeProcess
from tests.guests import hello

NO_NODE_ENV = {"SWARM_API_HOST": None, "SWARM_API_PORT": None, "SWARM_API_TOKEN": None}


def run_cli(*args: str, env: dict | None = None):
    return CliRunner().invoke(app, list(args), env={**NO_NODE_ENV, **(env or {})})


def test_version():
    result = run_cli("version")
    assert result.exit_code == 0
    assert result.output.startswith("swarm 0.1.0 (libp2p 0.8.1)")


def test_serve_then_list_and_describe_in_every_format(serve, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    node = serve(
        "edge",
        "--labels",
        "zone=eu,disk=ssd",
        "--allow-listed-local-paths",
        f"{data}/*.csv:rw",
        "--data",
        f"logs={data}",
        "--gpu",
        "2",
        "--node-type",
        "compute",
    )
    banner = node.banner
    assert f"/ip4/127.0.0.1/tcp/{node.swarm_port}/p2p/{node.peer_id}" in banner
    assert f"swarm serve --peer {node.address}" in banner
    run_file = node.home / "swarm.run"
    assert run_file.stat().st_mode & 0o777 == 0o600
    text = run_file.read_text()
    for name in ("SWARM_API_HOST", "SWARM_API_PORT", "SWARM_API_TOKEN"):
        assert f"export {name}={node.exports[name]}" in banner
        assert f"export {name}={node.exports[name]}\n" in text

    env = {"SWARM_HOME": str(node.home)}  # found through swarm.run
    listed = json.loads(run_cli("node", "list", "--output", "json", env=env).output)
    assert len(listed) == 1
    entry = listed[0]
    assert entry["peer_id"] == node.peer_id and entry["name"] == "edge"
    assert entry["status"] == "healthy" and entry["self"] is True
    assert entry["roles"] == ["compute"]
    assert entry["labels"] == {"zone": "eu", "disk": "ssd"}
    assert entry["allowed_paths"] == [{"path": f"{data}/*.csv", "mode": "rw"}]
    assert entry["datasets"] == ["logs"]
    assert entry["resources"]["gpu"] == 2 and entry["resources"]["cpu"] >= 1
    assert entry["addresses"] == [node.address]
    assert "last_seen" in entry

    as_yaml = yaml.safe_load(run_cli("node", "list", "-o", "yaml", env=env).output)
    assert [n["peer_id"] for n in as_yaml] == [node.peer_id]

    table = run_cli("node", "list", env=env)
    assert table.exit_code == 0
    assert "edge" in table.output and "healthy" in table.output

    exports = {name: node.exports[name] for name in ("SWARM_API_HOST", "SWARM_API_PORT")}
    agent = run_cli(
        "agent", "-o", "json", env={**exports, "SWARM_API_TOKEN": node.exports["SWARM_API_TOKEN"]}
    )
    described = json.loads(agent.output)
    assert described["peer_id"] == node.peer_id and described["version"] == "0.1.0"
    assert set(described["dropped"].values()) == {0}
    assert run_cli("agent", env=env).exit_code == 0

    wrong = run_cli("node", "list", env={**exports, "SWARM_API_TOKEN": "nope"})
    assert wrong.exit_code == 1
    assert wrong.output.count("\n") == 1 and "refused the API token" in wrong.output

    # A second node on the same swarm port must fail, not silently share it.
    clash = ServeProcess(tmp_path / "clash", swarm_port=node.swarm_port)
    assert clash.proc.wait(timeout=20) == 1
    assert "already in use" in "".join(clash.stderr)


def test_without_a_node_the_cli_says_how_to_start_one(tmp_path):
    result = run_cli("node", "list", env={"HOME": str(tmp_path), "SWARM_HOME": str(tmp_path)})
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and "swarm serve" in result.output


def test_an_unreachable_node_is_one_line(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = run_cli("agent", env={"SWARM_API_PORT": str(port)})
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and "cannot reach the node" in result.output


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_serve_stops_cleanly_on_signal(serve, signum, tmp_path):
    node = serve("node")
    module = tmp_path / "hello.wasm"
    module.write_bytes(hello())
    with node.client() as client:  # a node that has run a job stops as fast as a fresh one
        job = client.submit({"task": {"module": client.upload_module(module)}})
        assert client.wait(job["id"])["state"] == "completed"
    started = time.monotonic()
    node.proc.send_signal(signum)
    assert node.proc.wait(timeout=5) == 0
    assert time.monotonic() - started < 2
    assert node.stdout[-1] == f"swarm: {signum.name} received, node node stopped\n"
    assert node.stderr == []
    assert not (node.home / "swarm.run").exists()


def test_bad_flags_are_one_line_errors(tmp_path):
    (tmp_path / "broken-key" / "node.key").mkdir(parents=True)
    bad_swarm_key = tmp_path / "bad.key"
    bad_swarm_key.write_text("not a key\n")
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    busy_port = str(busy.getsockname()[1])
    cases = {
        "broken-key": ([], "cannot read the node key"),
        "missing-path": (["--allow-listed-local-paths", f"{tmp_path}/absent/*"], "does not exist"),
        "missing-data": (["--data", f"x={tmp_path}/absent"], "does not exist"),
        "no-peer-id": (["--peer", "/ip4/127.0.0.1/tcp/1235"], "/p2p/PEER_ID"),
        "garbage-peer": (["--peer", "garbage"], "not a multiaddr"),
        "swarm-port": (["--swarm-port", busy_port], "already in use"),
        "api-port": (["--api-port", busy_port], "already in use"),
        "no-swarm-key": (["--swarm-key", str(tmp_path / "absent.key")], "cannot read swarm key"),
        "bad-swarm-key": (["--swarm-key", str(bad_swarm_key)], "swarm key"),
        "role": (["--node-type", "miner"], "unknown node type"),
        "open-api": (["--api-host", "0.0.0.0", "--api-token", ""], "refusing"),
    }
    processes = {name: ServeProcess(tmp_path / name, *args) for name, (args, _) in cases.items()}
    try:
        for name, process in processes.items():
            code = process.proc.wait(timeout=30)
            stderr = "".join(process.stderr)
            assert code == 1, (name, stderr)
            assert stderr.startswith("Error: ") and stderr.count("\n") == 1, (name, stderr)
            assert cases[name][1] in stderr, (name, stderr)
    finally:
        busy.close()
        for process in processes.values():
            process.stop()
