"""What the sandbox is asked to run, and what it answers.

Plain frozen data, no I/O: the compute node, `swarm wasm exec` and the tests all build a
`RunSpec`, hand it to the executor, and get a `RunResult` back.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from pathlib import Path

from swarm.errors import ConfigError

KiB, MiB, GiB = 1024, 1024**2, 1024**3

DEFAULT_MEMORY = 512 * MiB
DEFAULT_TIMEOUT = 30 * 60.0
DEFAULT_STDOUT_CAP = 64 * MiB
DEFAULT_STDERR_CAP = 64 * MiB
DEFAULT_OUTPUTS_CAP = 1 * GiB
DEFAULT_OUTPUT_FILES_CAP = 10_000
DEFAULT_INPUT_TARGET = "/inputs"
OUTPUTS_TARGET = "/outputs"

# Exit codes for runs that did not exit by themselves, as a shell would report them.
EXIT_TIMEOUT = 124  # like coreutils `timeout`
EXIT_CANCELLED = 130  # like a process stopped by SIGINT
EXIT_TRAP = 134  # like the wasmtime CLI on a trap (SIGABRT)


class RunStatus(enum.StrEnum):
    COMPLETED = "completed"  # the guest exited with code 0
    FAILED = "failed"  # non-zero exit code, or a trap
    TIMEOUT = "timeout"
    OUT_OF_MEMORY = "out_of_memory"
    CANCELLED = "cancelled"
    OUTPUT_LIMIT = "output_limit"  # /outputs grew past its cap


@dataclass(frozen=True)
class Mount:
    """A host file or directory shown to the guest at ``target``."""

    source: Path
    target: str = DEFAULT_INPUT_TARGET
    writable: bool = False


@dataclass(frozen=True)
class Limits:
    memory: int = DEFAULT_MEMORY
    timeout: float = DEFAULT_TIMEOUT
    stdout: int = DEFAULT_STDOUT_CAP
    stderr: int = DEFAULT_STDERR_CAP
    outputs: int = DEFAULT_OUTPUTS_CAP
    output_files: int = DEFAULT_OUTPUT_FILES_CAP


@dataclass(frozen=True)
class RunSpec:
    """One run of a WASI preview-1 command module.

    ``outputs_dir`` is the host directory shown to the guest as a fresh writable
    ``/outputs``; ``stdout_path``/``stderr_path``, when given, receive the guest's output
    up to the caps (it is also delivered live to the caller's channel).
    """

    module: Path
    outputs_dir: Path
    mounts: tuple[Mount, ...] = ()
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    entry_point: str = "_start"
    limits: Limits = field(default_factory=Limits)
    stdout_path: Path | None = None
    stderr_path: Path | None = None
    program_name: str = "main.wasm"


@dataclass(frozen=True)
class RunResult:
    status: RunStatus
    exit_code: int | None  # None when the guest did not exit by itself
    message: str = ""  # trap or stop reason, empty for a normal exit
    wall_seconds: float = 0.0
    stdout_bytes: int = 0
    stderr_bytes: int = 0
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    outputs_bytes: int = 0
    memory_bytes: int = 0  # the guest's linear memory when it ended
    module_source: str = ""  # "memory", "disk" (compiled cache) or "compiled"

    @property
    def shell_exit_code(self) -> int:
        """The exit code a shell would show: the guest's own, else 124/130/134."""
        if self.exit_code is not None:
            return self.exit_code
        return {RunStatus.TIMEOUT: EXIT_TIMEOUT, RunStatus.CANCELLED: EXIT_CANCELLED}.get(
            self.status, EXIT_TRAP
        )


@dataclass(frozen=True)
class OutputChunk:
    """A piece of the guest's stdout or stderr, delivered while it runs."""

    stream: str  # "stdout" | "stderr"
    data: bytes


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": KiB, "m": MiB, "g": GiB, "t": 1024 * GiB}


def parse_size(text: str) -> int:
    """'512MiB', '512M', '1.5g', '4096' → bytes (binary units either way)."""
    match = _SIZE.match(text)
    if not match:
        raise ConfigError(
            f"cannot read size {text!r}: use a number with an optional unit, like 512MiB or 2G"
        )
    number, unit, _ = match.groups()
    return int(float(number) * _UNITS[unit.lower()])


def format_size(n: int) -> str:
    for unit, factor in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if n >= factor:
            return f"{n / factor:.1f} {unit}"
    return f"{n} B"
