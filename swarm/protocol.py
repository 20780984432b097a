"""The job protocols: what requesters and compute nodes say to each other.

How one job travels (see ARCHITECTURE.md, "The path of one job"):

    gossip /swarm/1/jobs        requester → all   JobAnnounces: JobAnnounce+ (signed)
    stream /swarm/1/bid/1       compute → req.    Answers: Bid*, Decline* (one per job)
                                req. → compute    Replies: Award* (with the full spec), Reject*
    stream /swarm/1/blob/1      compute → req.    BlobGet
                                req. → compute    BlobMeta, BlobChunk*, BlobEnd | Failure
    stream /swarm/1/result/1    compute → req.    ResultStart, Log*, RunEnd, Outputs*, ResultEnd
                                req. → compute    Ack (offers: JobAnnounce*) | Failure
                                                  (a refused start: a reset)
    stream /swarm/1/cancel/1    req. → compute    Cancel
                                compute → req.    Ack | Failure

Bid and result streams carry one exchange after another (a compute node reuses them:
opening a libp2p stream costs several messages' worth). A bid exchange is a request and
its reply; a result goes out without waiting for one until its end (a round trip less
in every remote run): a reused stream that the peer reset is found out by the first
write, and one that died unnoticed by the missing final reply.

Placement is batched: the jobs a requester places at the same moment go out in one
signed gossip message, and a compute node answers all of them in one exchange (a burst
of jobs costs a few messages, not a few per job; one job is a batch of one). When a
result frees a node's room while jobs wait, the result's ack offers the node the oldest
of them: it answers on its bid stream as if the job had been announced, and the swarm
hears of the job only if that node does not take it.

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
MAX_ANNOUNCE = 64 * 1024  # one job's announce, encoded
MAX_BATCH = 16  # jobs per announce message (and answers per exchange)
MAX_ANNOUNCES = 256 * 1024  # one announce message, encoded (gossip's limit is 1 MiB)
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
class JobAnnounces:
    """One message on the jobs topic: every announce in it is by the gossip author."""

    TYPE = "job.announces"
    announces: tuple[JobAnnounce, ...] = field(metadata={"max": MAX_BATCH})


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
class Answers:
    """A compute node's answers to the jobs of one announce message."""

    TYPE = "answers"
    bids: tuple[BidMessage, ...] = field(default=(), metadata={"max": MAX_BATCH})
    declines: tuple[DeclineMessage, ...] = field(default=(), metadata={"max": MAX_BATCH})


@dataclass(frozen=True)
class Replies:
    """The requester's reply to ``Answers``: an award or a reject for each bid."""

    TYPE = "replies"
    awards: tuple[Award, ...] = field(default=(), metadata={"max": MAX_BATCH})
    rejects: tuple[Reject, ...] = field(default=(), metadata={"max": MAX_BATCH})


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
    """A piece of the /outputs archive (``swarm.storage.archive.stream_steps``)."""

    TYPE = "outputs"
    data: bytes
    compressed: bool = True  # False: plain tar bytes of data that zstd could not shrink


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
    """Taken. Ending a result, it may carry the requester's next jobs for the node whose
    room the result has just freed (``offers``: announces by the acking requester)."""

    TYPE = "ack"
    offers: tuple[JobAnnounce, ...] = field(default=(), metadata={"max": MAX_BATCH})
