"""`swarm wasm ...`: run WebAssembly modules."""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import trio
import typer

from cli.errors import reported_errors
from swarm.executor import Limits, OutputChunk, RunStatus, format_size, parse_size
from swarm.executor.local import exec_module
from swarm.storage.inputs import parse_env, parse_input

app = typer.Typer(help="Run WebAssembly (WASI preview 1) modules.", no_args_is_help=True)

_DEFAULTS = Limits()


def _home() -> Path:
    return Path(os.environ.get("SWARM_HOME") or "~/.swarm").expanduser()


@app.command("exec", context_settings={"allow_interspersed_args": False})
def exec_(
    module: Path = typer.Argument(..., metavar="MODULE", help="The .wasm module to run."),
    args: list[str] = typer.Argument(
        None, metavar="ARGS", help="Arguments for the module, after --."
    ),
    inputs: list[str] = typer.Option(
        [],
        "--input",
        "-i",
        metavar="SRC[:DST]",
        help="Mount a local file or directory (file:///abs/path or a path) read-only at DST "
        "(default /inputs). Add :rw to make it writable.",
    ),
    output_dir: Path = typer.Option(
        None, "--output-dir", "-o", metavar="DIR", help="Where results go (default ./exec-<id>)."
    ),
    env: list[str] = typer.Option([], "--env", "-e", metavar="KEY=VALUE", help="Environment."),
    timeout: float = typer.Option(_DEFAULTS.timeout, help="Seconds before the guest is stopped."),
    memory: str = typer.Option("512MiB", help="Memory cap of the guest, e.g. 256MiB or 2G."),
    entry_point: str = typer.Option("_start", help="Exported function to call."),
) -> None:
    """Run MODULE here, in exactly the sandbox compute nodes use.

    Streams the guest's stdout/stderr, writes DIR/{stdout,stderr,exitCode,outputs/} and
    exits with the guest's exit code (124 on timeout).
    """
    with reported_errors():
        limits = Limits(memory=parse_size(memory), timeout=timeout)
        mounts = tuple(parse_input(text).to_mount() for text in inputs)
        environment = tuple(parse_env(text) for text in env)
        result_dir = output_dir or Path(f"exec-{uuid.uuid4().hex[:8]}")
        guest_args = module_args(args)
        result = trio.run(
            lambda: exec_module(
                module,
                result_dir,
                mounts=mounts,
                args=guest_args,
                env=environment,
                entry_point=entry_point,
                limits=limits,
                cache_dir=_home() / "cache",
                on_output=_to_terminal,
            )
        )
    if result.stdout_truncated or result.stderr_truncated:
        print(f"swarm: output truncated at {format_size(limits.stdout)}", file=sys.stderr)
    where = f"results in {result_dir}/ (stdout, stderr, exitCode, outputs/)"
    if result.status not in (RunStatus.COMPLETED, RunStatus.FAILED) or result.message:
        print(f"swarm: {result.status}: {result.message or 'see stderr'}; {where}", file=sys.stderr)
    else:
        print(f"swarm: {where}", file=sys.stderr)
    raise typer.Exit(result.shell_exit_code)


def module_args(args: list[str] | None) -> tuple[str, ...]:
    """ARGS after MODULE; options stop at MODULE, so a first `--` is only a separator."""
    args = list(args or ())
    return tuple(args[1:] if args[:1] == ["--"] else args)


async def _to_terminal(chunk: OutputChunk) -> None:
    stream = sys.stdout if chunk.stream == "stdout" else sys.stderr
    stream.buffer.write(chunk.data)
    stream.buffer.flush()
