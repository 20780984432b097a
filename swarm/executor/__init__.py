"""The WASM sandbox: runs WASI preview-1 command modules under wasmtime, in bounds.

    async with open_executor(cache_dir=home / "cache") as executor:
        result = await executor.run(RunSpec(module=..., outputs_dir=..., mounts=(...)))

See ``pool`` (process pool, hard deadlines, cancellation), ``worker`` and ``guest`` (one
run inside a worker: limits, watchdog, output caps), ``modules`` (validation and the
compiled-module cache) and ``mounts`` (inputs as WASI preopens).
"""

from swarm.executor.pool import Executor, open_executor
from swarm.executor.spec import (
    Limits,
    Mount,
    OutputChunk,
    RunResult,
    RunSpec,
    RunStatus,
    format_size,
    parse_size,
)

__all__ = [
    "Executor",
    "Limits",
    "Mount",
    "OutputChunk",
    "RunResult",
    "RunSpec",
    "RunStatus",
    "format_size",
    "open_executor",
    "parse_size",
]
