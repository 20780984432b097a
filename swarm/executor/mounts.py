"""Turn the user's mounts into WASI preopened directories.

WASI preview 1 can only preopen directories. A directory mount is preopened as it is; a
file mount is shown inside a staging directory that holds a hard link to the file (a copy
when a link is impossible), so ``-i data.csv`` appears as ``/inputs/data.csv`` and
``-i data.csv:/in/x.csv`` as ``/in/x.csv``. Sources are resolved with symlinks followed
before anything is handed to the sandbox.
"""

from __future__ import annotations

import os
import posixpath
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from swarm.errors import MountError
from swarm.executor.spec import DEFAULT_INPUT_TARGET, OUTPUTS_TARGET, Mount


@dataclass(frozen=True)
class Preopen:
    host: str
    guest: str
    writable: bool


def normalize_target(target: str) -> str:
    """A guest path: absolute, no '..', not the root, not /outputs."""
    if not target.startswith("/"):
        raise MountError(f"guest path {target!r} must be absolute, like /inputs")
    if ".." in target.split("/"):
        raise MountError(f"guest path {target!r} must not contain '..'")
    normal = posixpath.normpath(target)
    if normal == "/":
        raise MountError("cannot mount over the guest's root '/': choose a directory like /inputs")
    if normal == OUTPUTS_TARGET or normal.startswith(OUTPUTS_TARGET + "/"):
        raise MountError(
            f"{OUTPUTS_TARGET} is the job's own output directory: mount inputs elsewhere"
        )
    return normal


def plan_preopens(mounts: tuple[Mount, ...], staging: Callable[[], Path]) -> list[Preopen]:
    """Preopens for ``mounts``; file mounts are staged in the folder ``staging()`` makes
    (called only if there are any: most runs mount folders and need none)."""
    dirs: dict[str, Preopen] = {}
    files: dict[str, dict[str, tuple[Path, bool]]] = {}  # guest dir -> name -> (source, writable)
    for mount in mounts:
        target = normalize_target(mount.target)
        try:
            source = mount.source.resolve(strict=True)
        except (OSError, RuntimeError) as exc:
            raise MountError(f"input {mount.source} does not exist or cannot be read") from exc
        if source.is_dir():
            if target in dirs or target in files:
                raise MountError(
                    f"two inputs are mounted at {target}: give each its own guest path"
                )
            dirs[target] = Preopen(str(source), target, mount.writable)
        elif source.is_file():
            # A file mounted at the default /inputs, or at a top-level directory like /data,
            # lands inside it under its own name; otherwise the target is the file's path.
            guest_dir, name = posixpath.split(target)
            if target == DEFAULT_INPUT_TARGET or guest_dir == "/":
                guest_dir, name = target, source.name
            if guest_dir in dirs:
                raise MountError(
                    f"{mount.source} clashes with the directory mounted at {guest_dir}"
                )
            entry = files.setdefault(guest_dir, {})
            if name in entry:
                raise MountError(f"two inputs are mounted at {guest_dir}/{name}")
            entry[name] = (source, mount.writable)
        else:
            raise MountError(f"input {mount.source} is neither a file nor a directory")
    preopens = list(dirs.values())
    for index, (guest_dir, entries) in enumerate(sorted(files.items())):
        folder = staging() / f"mount-{index}"
        folder.mkdir(parents=True, exist_ok=True)
        for name, (source, _) in entries.items():
            _link_or_copy(source, folder / name)
        writable = any(w for _, w in entries.values())
        preopens.append(Preopen(str(folder), guest_dir, writable))
    return preopens


def _link_or_copy(source: Path, dest: Path) -> None:
    try:
        os.link(source, dest)
    except OSError:
        shutil.copyfile(source, dest)
