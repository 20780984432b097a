"""Run a module on this machine into a result folder, as ``swarm wasm exec`` does.

The folder has the layout every swarm result has (``swarm get`` writes the same):
``stdout``, ``stderr``, ``exitCode`` and ``outputs/``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

from swarm.concurrency import open_nursery
from swarm.errors import ConfigError
from swarm.executor.pool import open_executor
from swarm.executor.spec import Limits, Mount, OutputChunk, RunResult, RunSpec

STDOUT, STDERR, EXIT_CODE, OUTPUTS = "stdout", "stderr", "exitCode", "outputs"


async def exec_module(
    module: Path,
    result_dir: Path,
    *,
    mounts: tuple[Mount, ...] = (),
    args: tuple[str, ...] = (),
    env: tuple[tuple[str, str], ...] = (),
    entry_point: str = "_start",
    limits: Limits = Limits(),
    cache_dir: Path | None = None,
    on_output: Callable[[OutputChunk], Awaitable[None]] | None = None,
) -> RunResult:
    """Run ``module`` once in the sandbox, streaming output to ``on_output``."""
    if not module.is_file():
        raise ConfigError(f"module {module} does not exist: build it first, or check the path")
    outputs = result_dir / OUTPUTS
    if outputs.exists() and any(outputs.iterdir()):
        raise ConfigError(
            f"{result_dir} already holds results: choose another output folder with -o"
        )
    outputs.mkdir(parents=True, exist_ok=True)
    spec = RunSpec(
        module=module,
        outputs_dir=outputs,
        mounts=mounts,
        args=args,
        env=env,
        entry_point=entry_point,
        limits=limits,
        stdout_path=result_dir / STDOUT,
        stderr_path=result_dir / STDERR,
        program_name=module.name,
    )
    async with open_executor(cache_dir=cache_dir, max_workers=1, warm=0) as executor:
        send, receive = trio.open_memory_channel[OutputChunk](64)
        async with open_nursery() as nursery:
            if on_output is not None:
                nursery.start_soon(_pump, receive, on_output)
            async with send:
                result = await executor.run(spec, output=send if on_output else None)
    for name in (STDOUT, STDERR):  # present even when the guest wrote nothing
        (result_dir / name).touch()
    (result_dir / EXIT_CODE).write_text(f"{result.shell_exit_code}\n")
    return result


async def _pump(receive: trio.MemoryReceiveChannel, on_output) -> None:
    async with receive:
        async for chunk in receive:
            await on_output(chunk)
