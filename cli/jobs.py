"""Job commands: `swarm wasm run`, `swarm job run|stop`, `swarm get`, `swarm logs`,
`swarm describe`, `swarm list`."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from cli.errors import fail, reported_errors
from cli.node import OUTPUT_OPTION, Output, emit
from cli.wasm import module_args
from swarm.client import Client
from swarm.executor import parse_size
from swarm.jobspec import JobSpec, load_job_spec
from swarm.placement import short_peer_id
from swarm.storage.inputs import parse_env, parse_input

job_app = typer.Typer(help="Run and inspect jobs.", no_args_is_help=True)
WAIT_OPTION = typer.Option(True, "--wait/--no-wait", help="Wait for the job to end.")
ID_ONLY_OPTION = typer.Option(False, "--id-only", help="Print only the job id.")
console = Console(stderr=False, highlight=False)


def wasm_run(
    module: Path = typer.Argument(..., metavar="MODULE", help="The .wasm module to send."),
    args: list[str] = typer.Argument(
        None, metavar="ARGS", help="Arguments for the module, after --."
    ),
    inputs: list[str] = typer.Option(
        [],
        "--input",
        "-i",
        metavar="SRC[:DST]",
        help="An input on the nodes: file:///path, data://NAME or data://NAME/path (each "
        "node's own copy of a dataset), or https://host/file (add #sha256=HEX to check it); "
        "then :/DST (default /inputs). Read-only; :rw makes a file:// input writable.",
    ),
    env: list[str] = typer.Option([], "--env", "-e", metavar="KEY=VALUE"),
    target: str = typer.Option("any", help="any: --count nodes run it; all: every node that can."),
    count: int = typer.Option(1, help="How many nodes run it (with --target any)."),
    constraints: list[str] = typer.Option(
        [],
        "--constraint",
        "-c",
        metavar="EXPR",
        help="Only nodes whose labels match, e.g. zone=eu, 'zone in (eu,us)', gpu, !spot.",
    ),
    cpu: float = typer.Option(1.0, help="CPUs a node must have free for it."),
    gpu: int = typer.Option(0, help="GPUs a node must have free for it."),
    timeout: float = typer.Option(1800, help="Seconds before the module is stopped."),
    memory: str = typer.Option(
        "512MiB", help="Memory cap of the module, which a node must have free, e.g. 256MiB."
    ),
    queue_timeout: float = typer.Option(
        0,
        help="Seconds the job may wait for a node that can take it (default: fail at once "
        "with every node's reason; jobs only waiting for a busy node always wait).",
    ),
    retries: int = typer.Option(2, help="Times to place it again when its node is lost mid-run."),
    entry_point: str = typer.Option("_start", help="Exported function to call."),
    name: str = typer.Option(None, help="A name for the job (default: the module's file name)."),
    wait: bool = WAIT_OPTION,
    id_only: bool = ID_ONLY_OPTION,
) -> None:
    """Send MODULE to the swarm as a job and follow it."""
    with reported_errors():
        spec = {
            "name": name or module.name,
            "type": {"any": "batch", "all": "ops"}.get(target, target),
            "count": count,
            "constraints": list(constraints),
            "resources": {"cpu": cpu, "gpu": gpu},
            "retries": retries,
            "queue_timeout": queue_timeout,
            "task": {
                "module": str(module.resolve()),
                "entry_point": entry_point,
                "args": list(module_args(args)),
                "env": dict(parse_env(text) for text in env),
                "inputs": [_input_map(text) for text in inputs],
                "timeout": timeout,
                "memory": parse_size(memory),
            },
        }
        _run(JobSpec.from_dict(spec), wait=wait, id_only=id_only)


@job_app.command("run")
def job_run(
    file: Path = typer.Option(..., "--file", "-f", help="A job spec, YAML or JSON."),
    wait: bool = WAIT_OPTION,
    id_only: bool = ID_ONLY_OPTION,
) -> None:
    """Submit the job described in FILE (see docs/JOB_SPEC.md)."""
    with reported_errors():
        _run(load_job_spec(file), wait=wait, id_only=id_only)


def _input_map(text: str) -> dict[str, Any]:
    arg = parse_input(text)
    return {
        "source": arg.source,
        "target": arg.target,
        "writable": arg.writable,
        "sha256": arg.sha256,
    }


def _run(spec, *, wait: bool, id_only: bool) -> None:
    with Client.from_environment() as client:
        step = _Steps(quiet=id_only)
        t0 = time.monotonic()
        digest = client.upload_module(Path(spec.task.module))
        step.done("Communicating with the network", time.monotonic() - t0)
        t0 = time.monotonic()
        job = client.submit(spec.with_module(digest).to_dict())
        if id_only:
            print(job["id"])
        else:
            print(f"Job successfully submitted. Job ID: {job['id']}")
            print(
                "Checking job status... (Enter Ctrl+C to exit at any time, "
                "your job will continue running):\n"
            )
        step.flush()
        step.done("Creating job for submission", time.monotonic() - t0)
        if not wait:
            step.follow_up(job["id"])
            return
        t0 = time.monotonic()
        try:
            job = client.wait(job["id"])
        except KeyboardInterrupt:
            print(f"\nStopped watching; the job goes on. See it with: swarm describe {job['id']}")
            raise typer.Exit(130) from None
        ok = job["state"] == "completed"
        step.done("Job in progress", time.monotonic() - t0, ok=ok)
        if not ok:
            _explain(job)
        step.follow_up(job["id"])
        if not ok:
            raise typer.Exit(1)


class _Steps:
    """The progress lines in the spirit of the seed's `bacalhau wasm run`."""

    def __init__(self, *, quiet: bool) -> None:
        self.quiet = quiet
        self._pending: list[str] = []

    def done(self, label: str, seconds: float, *, ok: bool = True) -> None:
        mark = "done ✅" if ok else "failed ❌"
        self._pending.append(f"\t{label:>30}  ................  {mark}  {seconds:.1f}s")
        if not self.quiet and label != "Communicating with the network":
            self.flush()

    def flush(self) -> None:
        if not self.quiet:
            for line in self._pending:
                print(line)
        self._pending.clear()

    def follow_up(self, job_id: str) -> None:
        if not self.quiet:
            print(f"\nTo download the results, execute:\n\tswarm get {job_id}\n")
            print(f"To get more details about the run, execute:\n\tswarm describe {job_id}")


def _explain(job: dict[str, Any]) -> None:
    print(f"\nJob {job['state']}:", file=sys.stderr)
    for line in (job.get("reason") or "no reason recorded").splitlines():
        print(f"  {line}", file=sys.stderr)


def get(
    job_id: str = typer.Argument(..., help="A job id, or a unique prefix of one."),
    output_dir: Path = typer.Option(Path("."), "--output-dir", "-o", help="Where job-<id>/ goes."),
) -> None:
    """Download a job's results: job-<id>/{stdout,stderr,exitCode,outputs/}."""
    with reported_errors(), Client.from_environment() as client:
        job = client.job(job_id)
        print(f"Fetching results of job '{job['id']}'...")
        folder = client.download_results(job, output_dir)
        print(f"Results for job '{job['id']}' have been written to...\n{folder}")


@job_app.command("stop")
def stop(job_id: str = typer.Argument(..., help="A job id, or a unique prefix of one.")) -> None:
    """Cancel a job: its executions are stopped where they run; it ends `stopped`."""
    with reported_errors(), Client.from_environment() as client:
        job = client.stop(job_id)
    print(f"Job {job['id']} stopped.")


def logs(
    job_id: str = typer.Argument(..., help="A job id, or a unique prefix of one."),
    follow: bool = typer.Option(
        False, "--follow", "-f", help="Keep printing as output arrives, until the job ends."
    ),
) -> None:
    """Print a job's stdout and stderr (from every node that runs it)."""
    with reported_errors(), Client.from_environment() as client:
        current = None
        nodes: set[str] = set()
        for chunk in client.logs(job_id, follow=follow):
            nodes.add(chunk["execution_id"])
            if len(nodes) > 1 and chunk["execution_id"] != current:
                print(f"\n==> node {short_peer_id(chunk['node_id'])} <==", flush=True)
            current = chunk["execution_id"]
            out = sys.stdout if chunk["stream"] == "stdout" else sys.stderr
            out.write(chunk["data"])
            out.flush()


def describe(
    job_id: str = typer.Argument(..., help="A job id, or a unique prefix of one."),
    output: Output = typer.Option(Output.YAML, "--output", "-o", help="yaml or json."),
) -> None:
    """Everything about a job: spec, state, executions per node, events."""
    with reported_errors(), Client.from_environment() as client:
        job = client.job(job_id)
    if output is Output.TABLE:
        raise fail("describe prints yaml or json: use --output yaml or --output json")
    emit(job, output)


def list_jobs(
    output: Output = OUTPUT_OPTION,
    state: str = typer.Option(None, help="Only jobs in this state."),
    limit: int = typer.Option(50, help="At most this many, newest first."),
) -> None:
    """The jobs this node's requester knows, newest first."""
    with reported_errors(), Client.from_environment() as client:
        jobs = client.jobs(state=state, limit=limit)
    if output is not Output.TABLE:
        emit(jobs, output)
        return
    table = Table("ID", "NAME", "STATE", "CREATED", "REASON", box=None)
    for job in jobs:
        colour = {"completed": "green", "failed": "red", "stopped": "yellow"}.get(
            job["state"], "cyan"
        )
        table.add_row(
            job["id"][:8],
            job["name"],
            f"[{colour}]{job['state']}[/]",
            job["created"][:19].replace("T", " "),
            (job["reason"] or "").splitlines()[0] if job["reason"] else "",
        )
    console.print(table)
