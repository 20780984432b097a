"""The job spec: what a user asks the swarm to run (``model``) and how it is read from
YAML, JSON or plain dicts (``reader``). See docs/JOB_SPEC.md for the file format."""

from swarm.jobspec.model import (
    InputSource,
    JobSpec,
    OutputCaps,
    ResourceRequest,
    Target,
    TaskSpec,
)
from swarm.jobspec.reader import load_job_spec, parse_duration, parse_job_spec
from swarm.storage.blobs import DIGEST_PREFIX, is_digest

__all__ = [
    "DIGEST_PREFIX",
    "InputSource",
    "JobSpec",
    "OutputCaps",
    "ResourceRequest",
    "Target",
    "TaskSpec",
    "is_digest",
    "load_job_spec",
    "parse_duration",
    "parse_job_spec",
]
