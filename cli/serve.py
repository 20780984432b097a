"""`swarm serve`: run a node until Ctrl-C or SIGTERM."""

from __future__ import annotations

import ipaddress
import logging
import os
import signal
from pathlib import Path
from urllib.parse import quote

import trio
import typer

from cli.errors import fail
from swarm.allocator import keep_freed_memory
from swarm.config import (
    DEFAULT_API_PORT,
    DEFAULT_HEARTBEAT,
    DEFAULT_SWARM_PORT,
    NodeConfig,
    new_api_token,
    parse_allowed_path,
    parse_dataset,
    parse_labels,
    parse_peers,
    parse_roles,
    parse_trusted_requesters,
    resolve_home,
)
from swarm.errors import SwarmError
from swarm.home import format_exports


def serve(
    node_type: str = typer.Option(
        "requester,compute", "--node-type", help="Roles: requester, compute, or both."
    ),
    name: str | None = typer.Option(None, help="Node name (default: host name + short peer id)."),
    swarm_port: int = typer.Option(DEFAULT_SWARM_PORT, help="libp2p TCP port; 0 picks a free one."),
    swarm_host: str = typer.Option("0.0.0.0", help="Address libp2p listens on."),
    peer: list[str] = typer.Option(
        [],
        "--peer",
        envvar="SWARM_PEERS",
        help="Bootstrap peer multiaddr (…/p2p/PEER_ID); repeatable or comma-separated. "
        "Re-dialled with backoff when lost.",
    ),
    api_host: str = typer.Option("127.0.0.1", help="Address the HTTP API listens on."),
    api_port: int = typer.Option(DEFAULT_API_PORT, help="HTTP API port; 0 picks a free one."),
    api_token: str | None = typer.Option(
        None,
        help="Bearer token of the HTTP API (default: a new random one); '' turns auth off "
        "(loopback only).",
    ),
    labels: list[str] = typer.Option([], "--labels", help="key=value,... labels of this node."),
    allow_listed_local_paths: list[str] = typer.Option(
        [],
        "--allow-listed-local-paths",
        help="GLOB[:ro|:rw] host paths jobs may mount; repeatable.",
    ),
    data: list[str] = typer.Option([], "--data", help="NAME=PATH dataset hosted here; repeatable."),
    gpu: int | None = typer.Option(None, help="Declare N GPUs (default: ask nvidia-smi)."),
    mdns: bool = typer.Option(False, "--mdns", help="Find peers on the LAN with mDNS."),
    swarm_key: Path | None = typer.Option(
        None, help="Swarm key file: only nodes with the same key can connect."
    ),
    home: str | None = typer.Option(
        None, envvar="SWARM_HOME", help="Node home (default: ~/.swarm)."
    ),
    web_ui: bool = typer.Option(
        False, "--web-ui", help="Serve the web UI on the API port (the banner prints its URL)."
    ),
    heartbeat: float = typer.Option(
        DEFAULT_HEARTBEAT,
        help="Seconds between adverts. Others see a node unhealthy after 3 missed, lost"
        " after 15 s (or 5 heartbeats, if longer).",
    ),
    max_jobs: int | None = typer.Option(
        None, help="Executions this node runs at once (default: its CPU count)."
    ),
    trusted_requesters: list[str] = typer.Option(
        [],
        "--trusted-requesters",
        metavar="PEERID,...",
        help="Only run jobs from these requesters (peer ids; repeatable or comma-separated).",
    ),
    fetch_private_urls: bool = typer.Option(
        False,
        "--fetch-private-urls",
        help="Let URL inputs reach loopback, private and link-local addresses from this node"
        " (refused by default: a requester could reach what only this node can).",
    ),
) -> None:
    """Run a node: join the swarm, advertise this node, serve the HTTP API."""
    try:
        config = NodeConfig(
            home=resolve_home(home),
            roles=parse_roles(node_type),
            name=name,
            swarm_host=swarm_host,
            swarm_port=swarm_port,
            peers=parse_peers(peer),
            api_host=api_host,
            api_port=api_port,
            api_token=new_api_token() if api_token is None else api_token or None,
            labels=parse_labels(labels),
            allowed_paths=tuple(parse_allowed_path(text) for text in allow_listed_local_paths),
            datasets=tuple(parse_dataset(text) for text in data),
            gpus=gpu,
            mdns=mdns,
            swarm_key=swarm_key,
            web_ui=web_ui,
            heartbeat=heartbeat,
            max_jobs=max_jobs,
            trusted_requesters=parse_trusted_requesters(trusted_requesters),
            fetch_private_urls=fetch_private_urls,
        )
        # libp2p takes seconds to import: bad flags are told before that, and only `serve`
        # pays for it.
        from swarm.node import open_node

        configure_logging(os.environ.get("SWARM_LOG_LEVEL", "critical"))  # after libp2p's
        keep_freed_memory()  # result frames reuse the heap instead of faulting pages in
        trio.run(run_until_signalled, open_node, config)
    except SwarmError as error:
        raise fail(str(error)) from None
    except BaseExceptionGroup as group:  # errors raised once the node's nursery is open
        errors = _leaves(group)
        if errors and all(isinstance(e, SwarmError) for e in errors):
            raise fail(str(errors[0])) from None
        raise


def configure_logging(level_name: str) -> None:
    """Library logs go to stderr at ``level_name`` (SWARM_LOG_LEVEL; quiet by default).

    py-libp2p's logger does not propagate and has no handler, so without one of its own
    Python's last-resort handler would print its warnings and errors regardless.
    """
    level = logging.getLevelName(level_name.upper())
    if not isinstance(level, int):
        level = logging.CRITICAL
    handler = logging.StreamHandler()
    handler.setLevel(level)  # some libp2p loggers set their own, lower, levels
    handler.setFormatter(logging.Formatter("swarm %(levelname)s %(name)s: %(message)s"))
    for name in ("", "libp2p"):
        logger = logging.getLogger(name)
        logger.setLevel(level)
        logger.handlers[:] = [handler]


async def run_until_signalled(open_node, config: NodeConfig) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with open_node(config) as node:
            typer.echo(banner(node), nl=False)
            signum = await anext(signals)
    typer.echo(f"swarm: {signal.Signals(signum).name} received, node {node.name} stopped")


def banner(node) -> str:
    addresses = list(node.addresses)
    public = [a for a in addresses if not _is_loopback(a)] or addresses
    join = f"swarm serve --peer {public[0]}"
    if node.config.swarm_key:
        join += f" --swarm-key {node.config.swarm_key}"
    lines = [
        f"swarm node {node.name} is running",
        f"  peer id:  {node.peer_id}",
        f"  roles:    {', '.join(node.config.roles)}",
        f"  swarm:    {addresses[0]}",
        *(f"            {address}" for address in addresses[1:]),
        f"  api:      {node.api_url}",
        *([f"  web ui:   {web_ui_url(node)}"] if node.config.web_ui else []),
        "",
        "To join this swarm from another node:",
        f"  {join}",
        "",
        f"To use the CLI with this node (saved in {node.run_file}; `source` it in a new shell):",
        *(f"  {line}" for line in format_exports(node.exports).splitlines()),
        "",
    ]
    return "\n".join(lines)


def web_ui_url(node) -> str:
    """The page's URL; the token rides in the fragment, which browsers never send."""
    token = node.config.api_token
    return f"{node.api_url}/#token={quote(token, safe='')}" if token else f"{node.api_url}/"


def _is_loopback(address: str) -> bool:
    host = address.split("/")[2]
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _leaves(group: BaseExceptionGroup) -> list[BaseException]:
    leaves: list[BaseException] = []
    for error in group.exceptions:
        leaves.extend(_leaves(error) if isinstance(error, BaseExceptionGroup) else [error])
    return leaves
