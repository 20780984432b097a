"""`swarm node list`, `swarm agent`, `swarm version`: ask the node's API and render."""

from __future__ import annotations

import enum
import json
import time
from datetime import datetime
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from typing import Any

import typer
import yaml
from rich.console import Console
from rich.table import Table

from cli.errors import reported_errors
from swarm import __version__
from swarm.client import Client
from swarm.executor.spec import format_size

app = typer.Typer(help="The nodes of the swarm.", no_args_is_help=True)


class Output(enum.StrEnum):
    TABLE = "table"
    JSON = "json"
    YAML = "yaml"


OUTPUT_OPTION = typer.Option(Output.TABLE, "--output", "-o", help="table, json or yaml.")


@app.command("list")
def list_nodes(output: Output = OUTPUT_OPTION) -> None:
    """List the nodes this node knows, with their status (healthy, unhealthy, lost)."""
    with reported_errors(), Client.from_environment() as client:
        nodes = client.nodes()
    if output is Output.TABLE:
        Console().print(nodes_table(nodes))
    else:
        emit(nodes, output)


def agent(output: Output = OUTPUT_OPTION) -> None:
    """Describe the node the CLI talks to."""
    with reported_errors(), Client.from_environment() as client:
        info = client.agent()
    if output is Output.TABLE:
        Console().print(agent_table(info))
    else:
        emit(info, output)


def version() -> None:
    """Print the version of swarm (and of the libp2p it speaks)."""
    try:
        libp2p = package_version("libp2p")
    except PackageNotFoundError:
        libp2p = "unknown"
    typer.echo(f"swarm {__version__} (libp2p {libp2p})")


def emit(data: Any, output: Output) -> None:
    if output is Output.JSON:
        typer.echo(json.dumps(data, indent=2))
    else:
        typer.echo(yaml.safe_dump(data, sort_keys=False).rstrip())


def nodes_table(nodes: list[dict[str, Any]]) -> Table:
    table = Table(box=None, header_style="bold")
    for column in (
        "NAME",
        "PEER ID",
        "STATUS",
        "ROLES",
        "CPU",
        "MEMORY",
        "GPU",
        "LABELS",
        "DATA",
        "SEEN",
    ):
        table.add_column(column)
    style = {"healthy": "green", "unhealthy": "yellow", "lost": "red"}
    for node in nodes:
        resources = node["resources"]
        table.add_row(
            node["name"] + (" (this node)" if node.get("self") else ""),
            short_id(node["peer_id"]),
            f"[{style.get(node['status'], '')}]{node['status']}[/]",
            ",".join(node["roles"]),
            str(resources["cpu"]),
            format_size(resources["memory"]),
            str(resources["gpu"]),
            ",".join(f"{k}={v}" for k, v in node["labels"].items()) or "-",
            ",".join(node["datasets"]) or "-",
            "now" if node.get("self") else ago(node["last_seen"]),
        )
    return table


def agent_table(info: dict[str, Any]) -> Table:
    table = Table(box=None, show_header=False)
    table.add_column(style="bold")
    table.add_column()
    resources = info["resources"]
    rows = {
        "name": info["name"],
        "peer id": info["peer_id"],
        "version": info["version"],
        "roles": ", ".join(info["roles"]),
        "addresses": "\n".join(info["addresses"]),
        "resources": f"{resources['cpu']} CPU, {format_size(resources['memory'])} memory, "
        f"{resources['gpu']} GPU",
        "labels": ", ".join(f"{k}={v}" for k, v in info["labels"].items()) or "-",
        "allowed paths": "\n".join(f"{p['path']}:{p['mode']}" for p in info["allowed_paths"])
        or "-",
        "datasets": ", ".join(info["datasets"]) or "-",
        "peers connected": str(info["connected_peers"]),
        "dropped messages": ", ".join(f"{k} {v}" for k, v in info["dropped"].items() if v)
        or "none",
    }
    for key, value in rows.items():
        table.add_row(key, value)
    return table


def short_id(peer_id: str) -> str:
    return f"{peer_id[:8]}…{peer_id[-6:]}" if len(peer_id) > 16 else peer_id


def ago(timestamp: str) -> str:
    seconds = max(0.0, time.time() - datetime.fromisoformat(timestamp).timestamp())
    if seconds < 90:
        return f"{seconds:.0f}s ago"
    if seconds < 5400:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.0f}h ago"
