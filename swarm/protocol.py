"""The job protocols: what requesters and compute nodes say to each other.

How one job travels (see ARCHITECTURE.md, "The path of one job"):

    gossip /swarm/1/jobs        requester → all   JobAnnounce (signed by the requester)
    stream /swarm/1/bid/1       compute → req.    Bid | Decline
                                req. → compute    Award (with the full spec) | Reject | Ack
    stream /swarm/1/blob/1      compute → req.    BlobGet
                                req. → compute    BlobMeta, BlobChunk*, BlobEnd | Failure
    stream /swarm/1/result/1    compute → req.    ResultStart
                                req. → compute    Ack (taken)
                                compute → req.    Log*, RunEnd, Outputs*, ResultEnd
                                req. → compute    Ack | Failure
    stream /swarm/1/cancel/1    req. → compute    Cancel
                                compute → req.    Ack | Failure

Bid and result streams carry one exchange after another (a compute node reuses them:
opening a libp2p stream costs several messages' worth); each exchange opens with a
request that gets a reply, so a reused stream that died is found out before anything
else is sent on it.

Announces carry what bidding needs and nothing more (no module bytes, no env or args);
the award carries the spec, over a stream whose peer Noise has authenticated. Every
message is a ``swarm.schema`` dataclass: decoding is total and bounded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from swarm.jobspec import InputSource, JobSpec, ResourceRequest, Target
from swarm.placement import Offer

BID_PROTOCOL = "/swarm/1/bid/1.0.0"
BLOB_PROTOCOL = "/swarm/1/blob/1.0.0"
RESULT_PROTOCOL = "/swarm/1/result/1.0.0"
CANCEL_PROTOCOL = "/swarm/1/cancel/1.0.0"
MAX_ANNOUNCE = 64 * 1024
_ID = {"max": 128}


@dataclass(frozen=True)
class JobAnnounce:
    TYPE = "job.announce"
    job_id: str = field(metadata=_ID)
    requester: str = field(metadata=_ID)  # must equal the gossip author
    seq: int  # nanoseconds since the epoch when announced: replays are refused
    module: str = field(metadata=_ID)  # sha256:<hex>
    module_size: int
    resources: ResourceRequest
    constraints: tuple[str, ...] = field(default=(), metadata={"max": 64})
    inputs: tuple[InputSource, ...] = field(default=(), metadata={"max": 64})
    target: Target = Target.ANY
    count: int = 1
    addresses: tuple[str, ...] = field(default=(), metadata={"max": 16})

    def offer(self) -> Offer:
        return Offer(
            job_id=self.job_id,
            requester=self.requester,
            resources=self.resources,
            constraints=self.constraints,
            inputs=self.inputs,
            target=self.target,
            count=self.count,
        )


@dataclass(frozen=True)
class BidMessage:
    TYPE = "bid"
    job_id: str = field(metadata=_ID)
    has_data: bool
    capacity: float
    queue_length: int


@dataclass(frozen=True)
class DeclineMessage:
    TYPE = "decline"
    job_id: str = field(metadata=_ID)
    reason: str
    busy: bool = False  # no room now, but there may be later: the job can wait for it


@dataclass(frozen=True)
class Award:
    TYPE = "award"
    job_id: str = field(metadata=_ID)
    execution_id: str = field(metadata=_ID)
    spec: JobSpec


@dataclass(frozen=True)
class Reject:
    TYPE = "reject"
    job_id: str = field(metadata=_ID)
    reason: str


@dataclass(frozen=True)
class BlobGet:
    TYPE = "blob.get"
    digest: str = field(metadata=_ID)


@dataclass(frozen=True)
class BlobMeta:
    TYPE = "blob.meta"
    size: int


@dataclass(frozen=True)
class BlobChunk:
    TYPE = "blob.chunk"
    data: bytes


@dataclass(frozen=True)
class BlobEnd:
    TYPE = "blob.end"


@dataclass(frozen=True)
class Failure:
    TYPE = "failure"
    message: str


@dataclass(frozen=True)
class ResultStart:
    TYPE = "result.start"
    job_id: str = field(metadata=_ID)
    execution_id: str = field(metadata=_ID)


@dataclass(frozen=True)
class Log:
    TYPE = "log"
    stream: str = field(metadata={"max": 6})  # "stdout" | "stderr"
    data: bytes


@dataclass(frozen=True)
class RunEnd:
    """How the guest's run ended (``swarm.executor.RunResult`` on the wire)."""

    TYPE = "result.exit"
    status: str = field(metadata={"max": 32})
    exit_code: int | None
    message: str
    wall_seconds: float
    stdout_bytes: int
    stderr_bytes: int
    stdout_truncated: bool
    stderr_truncated: bool
    outputs_bytes: int
    retryable: bool = False  # the job could not run here for a reason another node may not have


@dataclass(frozen=True)
class Outputs:
    TYPE = "outputs"
    data: bytes


@dataclass(frozen=True)
class ResultEnd:
    TYPE = "result.end"


@dataclass(frozen=True)
class Cancel:
    """Stop an execution (the job was stopped); only its awarding requester may ask."""

    TYPE = "cancel"
    job_id: str = field(metadata=_ID)
    execution_id: str = field(metadata=_ID)


@dataclass(frozen=True)
class Ack:
    TYPE = "ack"
