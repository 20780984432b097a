"""Input arguments: ``-i SRC[:DST][:ro|:rw]`` as users type them, and a job's inputs.

SRC is a source of one of the kinds in ``swarm.storage.sources``: ``file:///abs/path``
(or a plain path), ``data://NAME[/sub/path]`` or an ``http(s)://`` URL. DST is the guest
path (default ``/inputs``): it is whatever follows the last ``:`` that is followed by a
``/`` after the scheme, so ``https://host:8080/a.csv:/data`` is the URL and ``/data``.
A URL may carry the sha256 its file must have as its fragment:
``https://host/a.csv#sha256=<64 hex digits>``.

Dataset and URL inputs are read-only: asking ``:rw`` of one is refused here, when the
job is written, and declined by nodes if a job arrives with it anyway.

Parsing is pure; resolving a source on a node happens where the node's policy lives
(``swarm.compute.inputs``, ``swarm.compute.provision``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from swarm.errors import ConfigError, MountError
from swarm.executor.mounts import normalize_target
from swarm.executor.spec import DEFAULT_INPUT_TARGET, Mount
from swarm.storage.sources import (
    FILE_SCHEME,
    SourceKind,
    check_sha256,
    check_url,
    dataset_uri,
    source_kind,
    split_dataset_uri,
)

_DIGEST_FRAGMENT = "sha256="


@dataclass(frozen=True)
class InputArg:
    """One input of a job: where it comes from, where the guest sees it, and how.

    For a URL, ``target`` is a folder that holds the downloaded file under the last part
    of the URL's path, and ``sha256`` (optional, URLs only) is the digest the file must
    have. Build these with ``parse_input`` or ``make_input``, which check them.
    """

    source: str  # a URI: file:///abs/path, data://name/sub/path, https://host/file
    target: str = DEFAULT_INPUT_TARGET
    writable: bool = False
    sha256: str | None = field(default=None, metadata={"max": 64})

    @property
    def kind(self) -> SourceKind | None:
        return source_kind(self.source)

    @property
    def local_path(self) -> Path:
        return Path(self.source.removeprefix(FILE_SCHEME))

    def to_mount(self) -> Mount:
        """This input as a local mount (``swarm wasm exec``): ``file://`` sources only."""
        if self.kind is not SourceKind.FILE:
            raise ConfigError(
                f"input {self.source}: only local paths can be mounted here; "
                "send it to the swarm with swarm wasm run"
            )
        return Mount(source=self.local_path, target=self.target, writable=self.writable)


def parse_input(text: str) -> InputArg:
    """'file:///data:/inputs' → InputArg('file:///data', '/inputs'); plain paths too,
    relative ones from the current folder."""
    return input_from_text(text, base_dir=Path.cwd(), name=f"input {text!r}")


def input_from_text(text: str, *, base_dir: Path | None, name: str) -> InputArg:
    """The ``SRC[:DST][:ro|:rw]`` form; relative paths from ``base_dir`` (None: refused)."""
    rest, writable = text, False
    for suffix, flag in ((":rw", True), (":ro", False)):
        if rest.endswith(suffix):
            rest, writable = rest[: -len(suffix)], flag
            break
    scheme, sep, after = rest.partition("://")
    if not sep:
        scheme, after = "", rest
    source, target = rest, DEFAULT_INPUT_TARGET
    head, colon, tail = after.rpartition(":")
    if colon and tail.startswith("/"):
        source, target = scheme + sep + head, tail
    return make_input(source, target=target, writable=writable, base_dir=base_dir, name=name)


def make_input(
    source: str,
    *,
    target: str = DEFAULT_INPUT_TARGET,
    writable: bool = False,
    sha256: str | None = None,
    base_dir: Path | None = None,
    name: str = "input",
) -> InputArg:
    """A checked input in canonical form, or a one-line ConfigError starting with ``name``."""
    try:
        target = normalize_target(target)
    except MountError as exc:
        raise ConfigError(f"{name}: {exc}") from None
    kind = source_kind(source)
    if kind is SourceKind.URL:
        url, _, fragment = source.partition("#")
        if fragment:
            if not fragment.startswith(_DIGEST_FRAGMENT):
                raise ConfigError(
                    f"{name}: the only fragment a URL input may have is #sha256=<64 hex digits>"
                )
            digest = check_sha256(fragment.removeprefix(_DIGEST_FRAGMENT), name)
            if sha256 is not None and check_sha256(sha256, name) != digest:
                raise ConfigError(f"{name}: two different sha256 digests are given: keep one")
            sha256 = digest
        source = check_url(url, name)
    elif kind is SourceKind.DATA:
        source = dataset_uri(*split_dataset_uri(source, name))
    elif kind is None and "://" in source:
        scheme = source.split("://", 1)[0]
        raise ConfigError(
            f"{name}: {scheme}:// inputs are not supported yet; "
            "use file:///path, data://NAME or https://host/file"
        )
    else:
        path = os.path.expanduser(source.removeprefix(FILE_SCHEME))
        if not path:
            raise ConfigError(f"{name} has no source path: use file:///path/to/data[:/inputs]")
        if not os.path.isabs(path):
            if base_dir is None:
                raise ConfigError(
                    f"{name} {source!r} must be an absolute path (it is read on the compute node)"
                )
            path = os.path.normpath(base_dir / path)
        source = FILE_SCHEME + path
    digest = check_sha256(sha256, name) if sha256 is not None else None
    arg = InputArg(source=source, target=target, writable=writable, sha256=digest)
    check_input(arg, name)
    return arg


def check_input(arg: InputArg, name: str | None = None) -> None:
    """Refuse what no node may do with an input, whoever wrote it: write to a dataset or
    a download, a digest on anything but a URL, a malformed dataset path or URL."""
    name = name or f"input {arg.source}"
    kind = arg.kind
    if kind is SourceKind.URL:
        if "#" in arg.source or check_url(arg.source, name) != arg.source:
            raise ConfigError(f"{name}: the URL is not in canonical form (no fragment)")
        if arg.sha256 is not None and check_sha256(arg.sha256, name) != arg.sha256:
            raise ConfigError(f"{name}: sha256 must be 64 lowercase hex digits")
        if arg.writable:
            raise ConfigError(
                f"{name}: URL inputs are read-only (a downloaded copy); write results to /outputs"
            )
        return
    if arg.sha256 is not None:
        raise ConfigError(f"{name}: sha256 applies to http(s):// inputs only")
    if kind is SourceKind.DATA:
        split_dataset_uri(arg.source, name)
        if arg.writable:
            raise ConfigError(f"{name}: dataset inputs are read-only; write results to /outputs")


def parse_env(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"environment entry {text!r} must look like KEY=VALUE")
    return key, value
