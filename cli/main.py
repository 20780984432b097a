"""Entry point of the `swarm` command: assembles the command groups."""

from __future__ import annotations

import typer

from cli import jobs, node, serve, wasm

app = typer.Typer(
    name="swarm",
    help="Peer-to-peer compute over data: run WebAssembly where the data is.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(wasm.app, name="wasm")
app.command("serve")(serve.serve)
app.add_typer(node.app, name="node")
app.command("agent")(node.agent)
app.command("version")(node.version)
wasm.app.command("run", context_settings={"allow_interspersed_args": False})(jobs.wasm_run)
app.add_typer(jobs.job_app, name="job")
app.command("get")(jobs.get)
app.command("logs")(jobs.logs)
app.command("describe")(jobs.describe)
app.command("list")(jobs.list_jobs)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
