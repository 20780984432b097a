"""Composition root: ``open_node(config)`` wires a running node in one nursery.

Order matters and is deliberate:

1. Everything that can fail because of the user's input (home, key files, ports) is
   checked before anything starts, so it surfaces as one plain ``ConfigError``.
2. The libp2p host starts listening, then pubsub starts — before any dial, because
   py-libp2p hangs ``connect()`` while a Pubsub exists that has not started.
3. The advertiser subscribes and publishes the first advert; then the bootstrap peers
   are dialled (and re-dialled with backoff for as long as the node runs), members
   learned from adverts are dialled while the node has few peers, mDNS starts if asked
   for, and the HTTP API binds.
4. Only then is `swarm.run` written, so a CLI that finds it finds a node that answers.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import trio
from libp2p.abc import IHost

from swarm import __version__, schema
from swarm.api.app import create_app
from swarm.api.server import serve_api
from swarm.compute.remote import AnnounceListener
from swarm.compute.service import ComputeService, ComputeSettings
from swarm.concurrency import open_nursery
from swarm.config import NodeConfig
from swarm.errors import ConfigError
from swarm.executor import open_executor
from swarm.home import KEY_FILE, prepare_home, remove_run_file, run_exports, write_run_file
from swarm.models import Gpu, Member, NodeInfo, NodeStatus, Role
from swarm.p2p.advertiser import Advertiser
from swarm.p2p.connector import discover_with_mdns, keep_connected, keep_enough_peers
from swarm.p2p.drops import DropCounter
from swarm.p2p.gossip import JOBS_TOPIC, open_gossip
from swarm.p2p.host import listen_addresses, open_host
from swarm.p2p.keys import load_or_create_identity, load_swarm_key
from swarm.p2p.liveness import PeerLiveness
from swarm.p2p.membership import MembershipTable
from swarm.requester.handlers import send_cancel, serve_requester_protocols
from swarm.requester.results import ResultStore
from swarm.requester.service import RequesterService, RequesterSettings
from swarm.requester.store import JOBS_DB, JobStore
from swarm.resources import declared_gpus, detect_gpus, detect_resources
from swarm.storage.blobs import BlobStore


class Node:
    """A running node, as the API and the CLI's `serve` see it."""

    def __init__(
        self,
        *,
        config: NodeConfig,
        host: IHost,
        table: MembershipTable,
        drops: DropCounter,
        advertiser: Advertiser,
        describe: Callable[[], NodeInfo],
        requester: RequesterService | None = None,
        compute: ComputeService | None = None,
    ) -> None:
        self.config = config
        self.requester = requester
        self.compute = compute
        self.host = host
        self.table = table
        self.drops = drops
        self.advertiser = advertiser
        self.describe = describe
        info = describe()
        self.peer_id = info.peer_id
        self.name = info.name
        self.addresses = info.addresses
        self.api_port = 0
        self.run_file: Path | None = None
        self.exports: dict[str, str] = {}

    @property
    def api_url(self) -> str:
        host = self.config.api_host
        return (
            f"http://[{host}]:{self.api_port}" if ":" in host else f"http://{host}:{self.api_port}"
        )

    def members(self) -> list[Member]:
        return self.table.members()

    def dropped(self) -> dict[str, int]:
        return self.drops.snapshot()

    def connected_peers(self) -> int:
        return len(self.host.get_network().connections)


def describe_node(
    config: NodeConfig,
    *,
    peer_id: str,
    name: str,
    addresses: tuple[str, ...],
    gpus: tuple[Gpu, ...],
    started: float,
    compute: ComputeService | None = None,
) -> NodeInfo:
    """This node's NodeInfo now (free memory and the compute load are read afresh)."""
    return NodeInfo(
        peer_id=peer_id,
        name=name,
        version=__version__,
        roles=config.roles,
        resources=detect_resources(gpus),
        labels=dict(config.labels),
        allowed_paths=config.allowed_paths,
        datasets=tuple(dataset.name for dataset in config.datasets),
        addresses=addresses,
        heartbeat=config.heartbeat,
        running=compute.running if compute else 0,
        queued=compute.queued if compute else 0,
        started=started,
    )


def default_name(peer_id: str) -> str:
    return f"{socket.gethostname()}-{peer_id[-6:]}"


def check_port_free(host: str, port: int, flag: str) -> None:
    """Refuse a port something already listens on (libp2p's SO_REUSEPORT would share it)."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(
                    f"{flag} {port}: the port is already in use on {host}: "
                    "choose another, or 0 for any free port"
                ) from None
            raise ConfigError(f"{flag} {port}: cannot listen on {host}: {exc.strerror}") from None


@asynccontextmanager
async def open_node(config: NodeConfig) -> AsyncIterator[Node]:
    """Start a node; it runs until the block exits, then stops everything it started."""
    home = prepare_home(config.home)
    key_pair = load_or_create_identity(home / KEY_FILE)
    swarm_key = load_swarm_key(config.swarm_key) if config.swarm_key else None
    check_port_free(config.swarm_host, config.swarm_port, "--swarm-port")
    check_port_free(config.api_host, config.api_port, "--api-port")
    if config.gpus is not None:
        gpus = declared_gpus(config.gpus)
    else:
        gpus = await trio.to_thread.run_sync(detect_gpus)
    drops = DropCounter()

    is_compute = Role.COMPUTE in config.roles
    max_jobs = config.max_jobs or os.cpu_count() or 1
    blobs = BlobStore(home / "blobs")
    async with (
        open_executor(
            cache_dir=home / "cache",
            max_workers=max_jobs,
            warm=min(2, max_jobs) if is_compute else 0,
        ) as executor,
        open_host(
            key_pair=key_pair, host=config.swarm_host, port=config.swarm_port, swarm_key=swarm_key
        ) as host,
        open_gossip(host, drops=drops) as pubsub,
    ):
        peer_id = str(host.get_id())
        name = config.name or default_name(peer_id)
        addresses = tuple(listen_addresses(host))
        compute = None
        if is_compute:
            work = home / "work"
            shutil.rmtree(work, ignore_errors=True)  # scratch left by a crash
            resources = detect_resources(gpus)
            compute = ComputeService(
                settings=ComputeSettings(
                    peer_id=peer_id,
                    name=name,
                    cpu=resources.cpu,
                    memory=resources.memory,
                    gpus=len(gpus),
                    labels=config.labels,
                    allowed_paths=config.allowed_paths,
                    datasets=config.datasets,
                    max_jobs=max_jobs,
                    trusted_requesters=config.trusted_requesters,
                    fetch_private_urls=config.fetch_private_urls,
                ),
                executor=executor,
                blobs=blobs,
                work_dir=work,
                # A changed load is advertised at once (rate-limited). The advertiser is
                # made below: nothing changes before the node runs.
                on_change=lambda: advertiser.notify_changed(),
            )
        describe = partial(
            describe_node,
            config,
            peer_id=peer_id,
            name=name,
            addresses=addresses,
            gpus=gpus,
            started=time.time(),
            compute=compute,
        )
        table = MembershipTable(
            self_info=describe(),
            clock=time.time,
            lost_after=config.lost_after,
            forget_after=config.forget_after,
        )
        advertiser = Advertiser(
            pubsub=pubsub, table=table, drops=drops, describe=describe, interval=config.heartbeat
        )
        store = JobStore(home / JOBS_DB) if Role.REQUESTER in config.roles else None
        requester = None
        if store is not None:

            async def publish(announces) -> None:
                await pubsub.publish(JOBS_TOPIC, schema.encode(announces))

            def compute_peers() -> set[str]:
                return {
                    m.info.peer_id
                    for m in table.members()
                    if Role.COMPUTE in m.info.roles and m.status is NodeStatus.HEALTHY
                }

            requester = RequesterService(
                settings=RequesterSettings(peer_id=peer_id, addresses=addresses),
                store=store,
                results=ResultStore(home / "results"),
                blobs=blobs,
                publish=publish,
                compute_peers=compute_peers,
                liveness=PeerLiveness(host=host, table=table, clock=time.time),
                send_cancel=partial(send_cancel, host),
                local_compute=compute,
            )
            serve_requester_protocols(host, requester, drops)
        node = Node(
            config=config,
            host=host,
            table=table,
            drops=drops,
            advertiser=advertiser,
            describe=describe,
            requester=requester,
            compute=compute,
        )
        try:
            async with open_nursery() as nursery:
                await nursery.start(advertiser.run)
                if compute is not None:
                    listener = AnnounceListener(
                        host=host, pubsub=pubsub, compute=compute, drops=drops
                    )
                    await nursery.start(listener.run)
                if requester is not None:
                    await nursery.start(requester.run)
                for address in config.peers:
                    nursery.start_soon(keep_connected, host, address)
                nursery.start_soon(keep_enough_peers, host, table.members)
                if config.mdns:
                    await nursery.start(partial(discover_with_mdns, host, swarm_key=swarm_key))
                app = create_app(node, token=config.api_token, web_ui=config.web_ui)
                node.api_port = await nursery.start(
                    serve_api, app, config.api_host, config.api_port
                )
                node.exports = run_exports(config.api_host, node.api_port, config.api_token)
                node.run_file = write_run_file(home, node.exports)
                try:
                    yield node
                finally:
                    remove_run_file(home, node.exports)
                    nursery.cancel_scope.cancel()
        finally:
            if store is not None:
                store.close()
