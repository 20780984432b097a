"""Input arguments: ``-i SRC[:DST][:ro|:rw]`` as users type them.

SRC is ``file:///abs/path`` or a plain path; DST is the guest path (default ``/inputs``).
Parsing is pure; resolving a source on a node happens where the node's policy lives.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from swarm.errors import ConfigError
from swarm.executor.spec import DEFAULT_INPUT_TARGET, Mount

_LOCAL_SCHEME = "file://"


@dataclass(frozen=True)
class InputArg:
    source: str  # a URI: file:///abs/path
    target: str = DEFAULT_INPUT_TARGET
    writable: bool = False

    @property
    def local_path(self) -> Path:
        return Path(self.source.removeprefix(_LOCAL_SCHEME))

    def to_mount(self) -> Mount:
        return Mount(source=self.local_path, target=self.target, writable=self.writable)


def parse_input(text: str) -> InputArg:
    """'file:///data:/inputs' → InputArg('file:///data', '/inputs'); plain paths too."""
    rest, writable = text, False
    for suffix, flag in ((":rw", True), (":ro", False)):
        if rest.endswith(suffix):
            rest, writable = rest[: -len(suffix)], flag
            break
    if "://" in rest and not rest.startswith(_LOCAL_SCHEME):
        scheme = rest.split("://", 1)[0]
        raise ConfigError(
            f"input {text!r}: {scheme}:// sources are not supported here; use file:///path"
        )
    path = rest.removeprefix(_LOCAL_SCHEME)
    target = DEFAULT_INPUT_TARGET
    head, sep, tail = path.rpartition(":")
    if sep and tail.startswith("/"):
        path, target = head, tail
    if not path:
        raise ConfigError(f"input {text!r} has no source path: use -i /path/to/data[:/inputs]")
    source = Path(path).expanduser()
    if not source.is_absolute():
        source = Path.cwd() / source
    return InputArg(source=_LOCAL_SCHEME + str(source), target=target, writable=writable)


def parse_env(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"environment entry {text!r} must look like KEY=VALUE")
    return key, value
