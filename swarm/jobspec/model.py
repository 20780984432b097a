"""The job spec: what a user asks the swarm to run, as a file or as a plain dict.

A spec file is YAML or JSON (see docs/JOB_SPEC.md). ``JobSpec.from_dict`` is the one
validator: it reads the user's file form (sizes like ``512MiB``, durations like ``30m``,
``type: batch|ops``) and raises a one-line ``ConfigError`` naming the field and the fix.
``to_dict`` writes the canonical form of the same schema (bytes and seconds as numbers),
which ``from_dict`` reads back unchanged, so it also serves JSON, SQLite and msgpack.

The dataclass constructors do not validate: build specs through ``from_dict``.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from swarm.executor.spec import (
    DEFAULT_MEMORY,
    DEFAULT_OUTPUT_FILES_CAP,
    DEFAULT_OUTPUTS_CAP,
    DEFAULT_STDERR_CAP,
    DEFAULT_STDOUT_CAP,
    DEFAULT_TIMEOUT,
    Limits,
)
from swarm.storage.blobs import is_digest
from swarm.storage.inputs import InputArg

# A job's input is what `-i` gives on the command line: one concept, one class.
InputSource = InputArg


class Target(enum.StrEnum):
    """Which nodes run a job: ``any`` = ``count`` of them (type batch), ``all`` = every bidder."""

    ANY = "any"
    ALL = "all"


@dataclass(frozen=True)
class ResourceRequest:
    """What one execution reserves on a node; a node without that much free declines."""

    cpu: float = 1.0  # a WASI preview-1 guest is single-threaded
    memory: int = DEFAULT_MEMORY  # bytes
    gpu: int = 0


@dataclass(frozen=True)
class OutputCaps:
    """Bounds on what a run may produce; past them the run stops (see docs/SANDBOX.md)."""

    stdout: int = DEFAULT_STDOUT_CAP
    stderr: int = DEFAULT_STDERR_CAP
    outputs: int = DEFAULT_OUTPUTS_CAP
    output_files: int = DEFAULT_OUTPUT_FILES_CAP


@dataclass(frozen=True)
class TaskSpec:
    """The one task of a job: which module to run, how, on what, within which bounds."""

    module: str  # "sha256:<64 hex>" once uploaded; a local path before
    entry_point: str = "_start"
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    inputs: tuple[InputSource, ...] = ()
    timeout: float = DEFAULT_TIMEOUT  # seconds
    memory: int = DEFAULT_MEMORY  # the guest's memory cap, bytes
    caps: OutputCaps = field(default_factory=OutputCaps)

    @property
    def module_digest(self) -> str | None:
        """The module's ``sha256:`` id once uploaded, None while it is a local path."""
        return self.module if is_digest(self.module) else None

    def limits(self) -> Limits:
        """The sandbox limits this task asks for."""
        caps = self.caps
        return Limits(
            memory=self.memory,
            timeout=self.timeout,
            stdout=caps.stdout,
            stderr=caps.stderr,
            outputs=caps.outputs,
            output_files=caps.output_files,
        )


DEFAULT_RETRIES = 2


@dataclass(frozen=True)
class JobSpec:
    """A whole job as the user described it.

    ``retries``: how many times an execution whose node was lost (or could not run it
    for a reason another node may not have) is placed again. ``queue_timeout``: seconds
    a job no node can take may wait for one (0: fail at once with every node's reason;
    jobs declined only because nodes are busy always wait for room).
    """

    name: str
    task: TaskSpec
    target: Target = Target.ANY
    count: int = 1
    constraints: tuple[str, ...] = ()
    resources: ResourceRequest = field(default_factory=ResourceRequest)
    retries: int = DEFAULT_RETRIES
    queue_timeout: float = 0.0

    def with_module(self, digest: str) -> JobSpec:
        """The same spec with its module replaced by the uploaded module's id."""
        return dataclasses.replace(self, task=dataclasses.replace(self.task, module=digest))

    def to_dict(self) -> dict[str, Any]:
        """The canonical plain form: JSON, YAML and msgpack safe; ``from_dict`` reads it."""
        task, caps = self.task, self.task.caps
        return {
            "name": self.name,
            "type": "batch" if self.target is Target.ANY else "ops",
            "count": self.count,
            "constraints": list(self.constraints),
            "resources": dataclasses.asdict(self.resources),
            "retries": self.retries,
            "queue_timeout": self.queue_timeout,
            "task": {
                "module": task.module,
                "entry_point": task.entry_point,
                "args": list(task.args),
                "env": dict(task.env),
                "inputs": [dataclasses.asdict(i) for i in task.inputs],
                "timeout": task.timeout,
                "memory": task.memory,
                "caps": dataclasses.asdict(caps),
            },
        }

    @classmethod
    def from_dict(cls, data: Any, *, base_dir: Path | None = None) -> JobSpec:
        """Validate a spec; relative module and input paths are taken from ``base_dir``."""
        from swarm.jobspec.reader import read_job_spec  # the reader builds on these classes

        return read_job_spec(data, base_dir=base_dir)
