"""Where a job runs: the compute side's bid strategy and the requester's award choice.

Pure functions over plain data: no I/O, no clock. The compute node snapshots its state
into a ``NodeView`` and the facts about the job's inputs into ``InputFacts`` (see
``swarm.compute.inputs``); ``decide_bid`` answers with a ``Bid`` or a ``Decline`` whose
one-line ``reason`` the user sees when no node takes the job. The requester collects
bids and calls ``choose_awards``.

Checks run cheapest and least revealing first: role, trust, constraints, resources,
inputs; being busy comes last. An input outside the allow-list is reported as such
without saying whether the path exists, so declines cannot probe a node's filesystem.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from swarm.constraints import Constraint, first_mismatch, parse_constraint
from swarm.errors import ConfigError
from swarm.executor.spec import format_size
from swarm.jobspec import InputSource, JobSpec, ResourceRequest, Target
from swarm.models import AllowedPath, Role
from swarm.storage.inputs import check_input
from swarm.storage.sources import SourceKind, source_kind, split_dataset_uri

__all__ = [
    "Bid",
    "Constraint",
    "Decline",
    "InputFacts",
    "NodeView",
    "Offer",
    "choose_awards",
    "decide_bid",
    "input_problem",
    "node_labels",
    "parse_constraint",
    "rank_bids",
    "short_peer_id",
]


@dataclass(frozen=True)
class NodeView:
    """A compute node's state at the moment it considers an offer.

    ``cpu``, ``memory`` and ``gpu`` are what the node has in all; ``free_*`` what is not
    reserved by executions it runs or has bid for. A job that needs more than the node
    has is declined for good; one that needs more than is free now is declined as busy
    (the requester queues it and asks again when capacity frees up). ``running`` counts
    executions running here, ``queued`` bids not yet answered (each holds a reservation);
    together they never exceed ``max_jobs``. ``labels`` already holds the built-in ones
    (see ``node_labels``). ``trusted_requesters`` None means any requester.
    """

    peer_id: str
    roles: frozenset[Role]
    cpu: float
    memory: int
    gpu: int = 0
    free_cpu: float | None = None  # None: all of it
    free_memory: int | None = None
    free_gpu: int | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    allowed_paths: tuple[AllowedPath, ...] = ()
    datasets: tuple[str, ...] = ()
    running: int = 0
    queued: int = 0
    max_jobs: int = 1
    trusted_requesters: frozenset[str] | None = None

    @property
    def free(self) -> ResourceRequest:
        return ResourceRequest(
            cpu=self.cpu if self.free_cpu is None else self.free_cpu,
            memory=self.memory if self.free_memory is None else self.free_memory,
            gpu=self.gpu if self.free_gpu is None else self.free_gpu,
        )


@dataclass(frozen=True)
class Offer:
    """What a compute node needs to know of an announced job to decide on it."""

    job_id: str
    requester: str  # the announcing requester's peer id
    resources: ResourceRequest
    constraints: tuple[str, ...] = ()
    inputs: tuple[InputSource, ...] = ()
    target: Target = Target.ANY
    count: int = 1

    @classmethod
    def from_spec(cls, job_id: str, requester: str, spec: JobSpec) -> Offer:
        return cls(
            job_id=job_id,
            requester=requester,
            resources=spec.resources,
            constraints=spec.constraints,
            inputs=spec.task.inputs,
            target=spec.target,
            count=spec.count,
        )


@dataclass(frozen=True)
class InputFacts:
    """What this node found about one input source (filled in by the I/O side).

    ``path`` is the host path after following symlinks (None when the source is not a
    local absolute path, or a dataset path that leads out of its dataset); ``exists`` is
    only looked at inside the allow-list or the dataset. URLs need no facts: any node
    can download them, so ``supported`` is all there is.
    """

    source: str
    supported: bool  # a scheme this node can serve: file://, data://, http(s)://
    path: str | None = None
    exists: bool = False
    allowed: bool = False  # inside an allow-listed pattern (or the dataset), after resolution
    writable_allowed: bool = False  # inside a pattern marked :rw
    hosted: bool = False  # data:// sources: this node hosts the dataset


@dataclass(frozen=True)
class Bid:
    """A node's yes, with what the requester ranks it by."""

    job_id: str
    peer_id: str
    has_data: bool  # the job reads data this node holds (file:// or data:// inputs)
    capacity: float  # share of the node's job slots still free once it takes this job
    queue_length: int  # executions running or queued there now


@dataclass(frozen=True)
class Decline:
    """A node's no, with a one-line reason for the user. ``busy``: the node could run the
    job but has no room now (job slots or resources in use), so asking later may work."""

    job_id: str
    peer_id: str
    reason: str
    busy: bool = False


def node_labels(
    labels: Mapping[str, str], *, name: str, os_name: str, arch: str, gpus: int
) -> dict[str, str]:
    """The labels constraints see: built-in os, arch, name (and gpu=N with GPUs), then the
    operator's own, which win so that e.g. ``--labels gpu=a100`` can name the model."""
    builtin = {"os": os_name, "arch": arch, "name": name}
    if gpus > 0:
        builtin["gpu"] = str(gpus)
    return builtin | dict(labels)


def decide_bid(
    offer: Offer, node: NodeView, input_facts: Mapping[str, InputFacts]
) -> Bid | Decline:
    """Bid for ``offer`` or decline it with the first reason that rules it out.

    Reasons that hold for good (role, trust, constraints, capacity, inputs) come before
    being busy, so a node that could never run the job says why rather than "busy".
    """
    reason = _first_reason(offer, node, input_facts)
    if reason is not None:
        return Decline(job_id=offer.job_id, peer_id=node.peer_id, reason=reason)
    if (busy := _busy_reason(offer.resources, node)) is not None:
        return Decline(job_id=offer.job_id, peer_id=node.peer_id, reason=busy, busy=True)
    load = node.running + node.queued
    return Bid(
        job_id=offer.job_id,
        peer_id=node.peer_id,
        has_data=any(source_kind(i.source) is not SourceKind.URL for i in offer.inputs),
        capacity=(node.max_jobs - load - 1) / node.max_jobs,
        queue_length=load,
    )


def _first_reason(
    offer: Offer, node: NodeView, input_facts: Mapping[str, InputFacts]
) -> str | None:
    if Role.COMPUTE not in node.roles:
        return "not a compute node"
    trusted = node.trusted_requesters
    if trusted is not None and offer.requester not in trusted:
        return f"requester {short_peer_id(offer.requester)} is not trusted"
    try:
        constraints = tuple(parse_constraint(text) for text in offer.constraints)
    except ConfigError as exc:  # a newer or hostile requester; the user still learns why
        return str(exc)
    if (mismatch := first_mismatch(constraints, node.labels)) is not None:
        return mismatch
    if (shortage := _resource_shortage(offer.resources, node)) is not None:
        return shortage
    for source in offer.inputs:
        if (problem := input_problem(source, input_facts.get(source.source))) is not None:
            return problem
    return None


def _resource_shortage(wanted: ResourceRequest, node: NodeView) -> str | None:
    """Why the node could never run the job, whatever else it runs."""
    if wanted.gpu > node.gpu:
        return f"needs {_count(wanted.gpu, 'GPU')}, has {node.gpu}"
    if wanted.cpu > node.cpu:
        return f"needs {_count(wanted.cpu, 'CPU')}, has {node.cpu:g}"
    if wanted.memory > node.memory:
        return f"needs {format_size(wanted.memory)} of memory, has {format_size(node.memory)}"
    return None


def _busy_reason(wanted: ResourceRequest, node: NodeView) -> str | None:
    """Why the node cannot take the job now, though it could when work ends."""
    load = node.running + node.queued
    if load >= node.max_jobs:
        return f"busy: {load} of {node.max_jobs} job slots in use"
    free = node.free
    if wanted.gpu > free.gpu:
        return f"busy: needs {_count(wanted.gpu, 'GPU')}, {free.gpu} free now"
    if wanted.cpu > free.cpu:
        return f"busy: needs {_count(wanted.cpu, 'CPU')}, {free.cpu:g} free now"
    if wanted.memory > free.memory:
        return (
            f"busy: needs {format_size(wanted.memory)} of memory, "
            f"{format_size(free.memory)} free now"
        )
    return None


def input_problem(source: InputSource, facts: InputFacts | None) -> str | None:
    """Why this node cannot serve ``source`` (None: it can), given the I/O side's facts."""
    uri = source.source
    kind = source_kind(uri)
    if kind is not None:
        try:  # a requester's parser refuses these; a hostile or newer one may not have
            check_input(source, f"input {uri}")
        except ConfigError as exc:
            return str(exc)
    if facts is None or not facts.supported:
        return (
            f"input {uri} uses a source this node cannot serve "
            "(it serves file://, data:// and http(s):// inputs)"
        )
    if kind is SourceKind.URL:
        return None  # downloaded at run time: failures are the run's
    if kind is SourceKind.DATA:
        dataset = split_dataset_uri(uri)[0]
        if not facts.hosted:
            return f"dataset {dataset} is not hosted here"
        if facts.path is None:
            return f"input {uri} leads out of dataset {dataset} here"
        if not facts.exists:
            return f"input {uri} does not exist here"
        return None
    if facts.path is None:
        return f"input {uri} is not an absolute file:// path"
    if not facts.allowed:
        return f"input {uri} is not in this node's allow-list"
    if not facts.exists:
        return f"input {uri} does not exist here"
    if source.writable and not facts.writable_allowed:
        return f"input {uri} is allow-listed read-only here, and the job asks to write to it"
    return None


def _count(n: float, noun: str) -> str:
    return f"{n:g} {noun}" + ("" if n == 1 else "s")


def rank_bids(bids: Iterable[Bid], failures: Mapping[str, int]) -> list[Bid]:
    """Best first: data on the node, then free capacity, then a shorter queue, then fewer
    failures of this job on that node; the peer id breaks ties so every requester agrees."""
    return sorted(
        bids,
        key=lambda bid: (
            not bid.has_data,
            -bid.capacity,
            bid.queue_length,
            failures.get(bid.peer_id, 0),
            bid.peer_id,
        ),
    )


def choose_awards(
    target: Target, count: int, bids: Iterable[Bid], failures: Mapping[str, int]
) -> tuple[tuple[Bid, ...], tuple[Bid, ...]]:
    """(awarded, rejected): the best ``count`` distinct nodes for ``any``, every bidder for
    ``all``. Fewer bids than ``count`` award them all; the caller decides whether to wait.
    A second bid from an already chosen node is rejected."""
    awarded: list[Bid] = []
    rejected: list[Bid] = []
    chosen: set[str] = set()
    for bid in rank_bids(bids, failures):
        wanted = target is Target.ALL or len(awarded) < count
        if wanted and bid.peer_id not in chosen:
            awarded.append(bid)
            chosen.add(bid.peer_id)
        else:
            rejected.append(bid)
    return tuple(awarded), tuple(rejected)


def short_peer_id(peer_id: str) -> str:
    """'12D3KooWAbc…' → '12D3Ko…Xyz789': enough to tell peers apart in a message."""
    return peer_id if len(peer_id) <= 16 else f"{peer_id[:6]}…{peer_id[-6:]}"
