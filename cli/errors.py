"""How every command reports a failure: one line on stderr, exit code 1, no traceback."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import typer

from swarm.errors import SwarmError


def fail(message: str, code: int = 1) -> typer.Exit:
    print(f"Error: {message}", file=sys.stderr)
    return typer.Exit(code)


@contextmanager
def reported_errors() -> Iterator[None]:
    """Turn SwarmError into a one-line message, and Ctrl-C into a quiet exit 130."""
    try:
        yield
    except SwarmError as exc:
        raise fail(str(exc)) from None
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        raise typer.Exit(130) from None
