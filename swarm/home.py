"""The node home directory and its `swarm.run` file.

`swarm.run` holds the shell exports the CLI needs to reach a running node, so that
``source ~/.swarm/swarm.run`` in a new shell is all a user has to do. The node writes it
once its API listens and removes it when it stops cleanly.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from swarm.errors import ConfigError

RUN_FILE = "swarm.run"
KEY_FILE = "node.key"
RUN_VARIABLES = ("SWARM_API_HOST", "SWARM_API_PORT", "SWARM_API_TOKEN")


def prepare_home(home: Path) -> Path:
    """Create the home directory (0700) if needed; refuse a home that is not a directory."""
    try:
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot use {home} as the node home: {exc.strerror}") from exc
    if not os.access(home, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot write to the node home {home}: choose another with --home")
    return home


def run_exports(host: str, port: int, token: str | None) -> dict[str, str]:
    """The variables the CLI reads, as they go into `swarm.run`."""
    return {"SWARM_API_HOST": host, "SWARM_API_PORT": str(port), "SWARM_API_TOKEN": token or ""}


def format_exports(exports: dict[str, str]) -> str:
    return "".join(f"export {name}={shlex.quote(value)}\n" for name, value in exports.items())


def write_run_file(home: Path, exports: dict[str, str]) -> Path:
    """Write `swarm.run` atomically, readable by the owner only (it holds the token)."""
    path = home / RUN_FILE
    temporary = path.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(format_exports(exports))
    os.replace(temporary, path)
    return path


def read_run_file(path: Path) -> dict[str, str]:
    """The exports in a `swarm.run` file; lines that are not `export NAME=VALUE` are ignored."""
    exports: dict[str, str] = {}
    for line in path.read_text().splitlines():
        try:
            words = shlex.split(line, comments=True)
        except ValueError:
            continue
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            name, _, value = words[1].partition("=")
            exports[name] = value
    return exports


def remove_run_file(home: Path, exports: dict[str, str]) -> None:
    """Remove `swarm.run` if it is still ours (another node may have taken the home over)."""
    path = home / RUN_FILE
    try:
        if read_run_file(path) == exports:
            path.unlink()
    except OSError:
        pass
