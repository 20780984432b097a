"""Entry point of the `swarm` command: assembles the command groups."""

from __future__ import annotations

import typer

from cli import wasm

app = typer.Typer(
    name="swarm",
    help="Peer-to-peer compute over data: run WebAssembly where the data is.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(wasm.app, name="wasm")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
