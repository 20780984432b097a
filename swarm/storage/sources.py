"""The three kinds of input source URI, and their syntax. Pure: no I/O.

- ``file:///abs/path``: a path on the compute node, inside its allow-list;
- ``data://NAME[/sub/path]``: the dataset NAME as each node hosts it (``swarm serve
  --data NAME=PATH``): every node that hosts NAME reads its own copy;
- ``http://…`` / ``https://…``: one file, downloaded by the compute node before the run.

Every function here either returns the canonical form or raises a one-line
``ConfigError`` that starts with ``name`` (``input 'x'``, ``task.inputs[0]``), so the
same checks serve the CLI, the spec reader and a compute node judging an announce.
"""

from __future__ import annotations

import enum
import posixpath
import re
from urllib.parse import unquote, urlsplit

from swarm.errors import ConfigError

FILE_SCHEME = "file://"
DATA_SCHEME = "data://"
URL_SCHEMES = ("http://", "https://")
DATASET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_URL_FORBIDDEN = re.compile(r"[\x00-\x20\x7f]")  # also space: a written URL has none


class SourceKind(enum.StrEnum):
    FILE = "file"
    DATA = "data"
    URL = "url"


def source_kind(uri: str) -> SourceKind | None:
    """The kind of a canonical source URI; None for a scheme swarm does not serve."""
    if uri.startswith(FILE_SCHEME):
        return SourceKind.FILE
    if uri.startswith(DATA_SCHEME):
        return SourceKind.DATA
    if uri.lower().startswith(URL_SCHEMES):
        return SourceKind.URL
    return None


def check_dataset_name(name: str, what: str) -> str:
    if not DATASET_NAME.fullmatch(name):
        raise ConfigError(
            f"{what}: dataset name {name!r} must be 1 to 64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def split_dataset_uri(uri: str, name: str = "input") -> tuple[str, str]:
    """'data://logs-eu/2026//jan/' → ('logs-eu', '2026/jan'): the dataset and the path
    inside it, with empty and '.' parts dropped. A '..' part is refused: a dataset input
    never leaves its dataset."""
    rest = uri.removeprefix(DATA_SCHEME)
    dataset, _, sub = rest.partition("/")
    if not dataset:
        raise ConfigError(f"{name} names no dataset: write data://NAME or data://NAME/sub/path")
    check_dataset_name(dataset, name)
    parts = [part for part in sub.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise ConfigError(f"{name}: a dataset path must not contain '..'")
    if any("\x00" in part for part in parts):
        raise ConfigError(f"{name}: a dataset path must not contain a NUL character")
    return dataset, "/".join(parts)


def dataset_uri(dataset: str, sub: str) -> str:
    return DATA_SCHEME + dataset + ("/" + sub if sub else "")


def check_url(uri: str, name: str = "input") -> str:
    """An http(s) URL with a host and a file name, without its fragment; ConfigError if not."""
    if _URL_FORBIDDEN.search(uri):
        raise ConfigError(f"{name}: a URL must not contain spaces or control characters")
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        raise ConfigError(f"{name}: not a valid URL ({exc})") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{name}: a URL input needs a host, like https://example.org/data.csv")
    url_file_name(uri, name)
    return parts._replace(fragment="").geturl()


def url_file_name(uri: str, name: str = "input") -> str:
    """The file name a URL input gets in its target folder: the last part of its path."""
    last = posixpath.basename(urlsplit(uri).path)
    file_name = unquote(last)
    if file_name in ("", ".", "..") or "/" in file_name or _CONTROL.search(file_name):
        raise ConfigError(
            f"{name}: a URL input must end in a file name, like https://example.org/data.csv "
            "(the file keeps that name in its target folder)"
        )
    return file_name


def check_sha256(digest: str, name: str = "input") -> str:
    """64 hex digits, as lowercase."""
    lowered = digest.lower()
    if not _SHA256.fullmatch(lowered):
        raise ConfigError(f"{name}: sha256 must be 64 hex digits, got {digest[:80]!r}")
    return lowered
