"""What this node can say about a job's inputs: the I/O half of the bid strategy.

A ``data://NAME/sub/path`` source is this node's own copy of dataset NAME: the path
under the dataset's folder, resolved with symlinks followed, and only when it stays
inside the dataset's resolved folder. An ``http(s)://`` source is served by any node
(it is downloaded at run time, see ``swarm.compute.provision``); nothing is looked up.

Every ``file://`` source is resolved with symlinks followed, and only the resolved path
is checked against the allow-list, so a symlink inside an allowed folder that points
outside it is refused. An allow-list pattern matches a path when the pattern's glob
matches the path or one of its parent folders, one path component per pattern component
(``*`` never crosses a ``/``). The part of a pattern before its first wildcard is itself
resolved, so allow-listing ``/data`` where ``/data`` is a symlink allows its target.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable
from fnmatch import fnmatchcase
from pathlib import PurePosixPath

from swarm.config import Dataset
from swarm.errors import ConfigError
from swarm.models import AllowedPath
from swarm.placement import InputFacts
from swarm.storage.sources import SourceKind, source_kind, split_dataset_uri

_LOCAL_SCHEME = "file://"


def input_facts(
    sources: Iterable[str],
    allowed_paths: tuple[AllowedPath, ...],
    datasets: Iterable[Dataset] = (),
) -> dict[str, InputFacts]:
    """Facts about each source on this host, keyed by the source URI."""
    patterns = [(_resolved_pattern(p.pattern), p.writable) for p in allowed_paths]
    roots = {dataset.name: str(dataset.path) for dataset in datasets}
    return {source: _facts(source, patterns, roots) for source in sources}


def _facts(
    source: str, patterns: list[tuple[tuple[str, ...], bool]], roots: dict[str, str]
) -> InputFacts:
    kind = source_kind(source)
    if kind is SourceKind.URL:
        return InputFacts(source=source, supported=True)
    if kind is SourceKind.DATA:
        return _dataset_facts(source, roots)
    if kind is not SourceKind.FILE:
        return InputFacts(source=source, supported=False)
    raw = source.removeprefix(_LOCAL_SCHEME)
    if not raw.startswith("/") or "\x00" in raw:
        return InputFacts(source=source, supported=True)
    path = os.path.realpath(raw)  # follows every symlink, also in parent folders
    parts = PurePosixPath(path).parts
    matching = [writable for pattern, writable in patterns if _within(parts, pattern)]
    if not matching:  # not even a stat outside the allow-list
        return InputFacts(source=source, supported=True, path=path)
    return InputFacts(
        source=source,
        supported=True,
        path=path,
        exists=os.path.exists(path),
        allowed=True,
        writable_allowed=any(matching),
    )


def _dataset_facts(source: str, roots: dict[str, str]) -> InputFacts:
    try:
        name, sub = split_dataset_uri(source)
    except ConfigError:  # malformed: the bid strategy says why, from the URI alone
        return InputFacts(source=source, supported=True)
    if name not in roots:
        return InputFacts(source=source, supported=True)
    root = os.path.realpath(roots[name])
    path = os.path.realpath(os.path.join(root, sub))  # follows every symlink on the way
    if os.path.commonpath([root, path]) != root:  # a symlink out of the dataset
        return InputFacts(source=source, supported=True, hosted=True)
    return InputFacts(
        source=source,
        supported=True,
        path=path,
        exists=os.path.exists(path),
        allowed=True,
        hosted=True,
    )


def _within(parts: tuple[str, ...], pattern: tuple[str, ...]) -> bool:
    if len(parts) < len(pattern):
        return False
    return all(
        fnmatchcase(part, glob_part) for part, glob_part in zip(parts, pattern, strict=False)
    )


def _resolved_pattern(pattern: str) -> tuple[str, ...]:
    parts = PurePosixPath(os.path.abspath(pattern)).parts
    static = 0
    while static < len(parts) and not glob.has_magic(parts[static]):
        static += 1
    head = PurePosixPath(os.path.realpath(PurePosixPath(*parts[:static]))).parts
    # Literal parts must match literally even if they hold characters like '[': escape them.
    return tuple(glob.escape(part) for part in head) + parts[static:]
