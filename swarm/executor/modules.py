"""The wasmtime engine and the compiled-module cache (used inside worker processes).

Compiling the 2.7 MB Go word count takes about a second; loading its compiled artefact
takes well under a millisecond. So a module is compiled once per node: the artefact is
kept on disk under ``<home>/cache/`` keyed by the module's sha256 and a fingerprint of
the wasmtime version and engine configuration (artefacts from another version or config
would be rejected or, worse, misread), and each worker keeps recently used modules in
memory. Artefacts are only ever written by this code from modules it validated itself:
deserializing is unsafe for untrusted bytes, so the cache directory must stay private.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections import OrderedDict
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import wasmtime

from swarm.errors import ModuleError

WASI_MODULE = "wasi_snapshot_preview1"
_CORE_HEADER = b"\0asm\x01\0\0\0"
_COMPONENT_HEADER = b"\0asm\x0d\0\x01\0"

_ENGINE_SETTINGS = (("epoch_interruption", True), ("cranelift_opt_level", "speed"))
FINGERPRINT = hashlib.sha256(
    repr((metadata.version("wasmtime"), _ENGINE_SETTINGS)).encode()
).hexdigest()[:16]


def make_engine() -> wasmtime.Engine:
    """The engine every sandbox run uses: epoch interruption on, optimised code."""
    config = wasmtime.Config()
    for name, value in _ENGINE_SETTINGS:
        setattr(config, name, value)
    return wasmtime.Engine(config)


@dataclass(frozen=True)
class LoadedModule:
    module: wasmtime.Module
    digest: str
    source: str  # "memory", "disk" or "compiled"


class ModuleCache:
    """Validated, compiled modules: in memory (LRU), then on disk, then compiled."""

    def __init__(self, engine: wasmtime.Engine, cache_dir: Path | None, *, capacity: int = 16):
        self.engine = engine
        self.cache_dir = cache_dir
        self.capacity = capacity
        self._modules: OrderedDict[tuple[str, str], wasmtime.Module] = OrderedDict()
        self._digests: dict[tuple, str] = {}

    def load(self, path: Path, entry_point: str) -> LoadedModule:
        digest = self._digest(path)
        key = (digest, entry_point)
        module = self._modules.get(key)
        if module is not None:
            self._modules.move_to_end(key)
            return LoadedModule(module, digest, "memory")
        module, source = self._from_disk(digest), "disk"
        if module is None:
            module, source = self._compile(path, digest), "compiled"
        check_entry_point(module, entry_point)
        self._modules[key] = module
        if len(self._modules) > self.capacity:
            self._modules.popitem(last=False)
        return LoadedModule(module, digest, source)

    def _digest(self, path: Path) -> str:
        try:
            st = path.stat()
        except OSError as exc:
            raise ModuleError(f"cannot read module {path}: {exc.strerror}") from exc
        stamp = (str(path), st.st_size, st.st_mtime_ns, st.st_ino)
        digest = self._digests.get(stamp)
        if digest is None:
            digest = hashlib.sha256(_read(path)).hexdigest()
            self._digests[stamp] = digest
        return digest

    def _artefact(self, digest: str) -> Path | None:
        if self.cache_dir is None:
            return None
        return self.cache_dir / f"{digest}-{FINGERPRINT}.cwasm"

    def _from_disk(self, digest: str) -> wasmtime.Module | None:
        artefact = self._artefact(digest)
        if artefact is None or not artefact.exists():
            return None
        try:
            return wasmtime.Module.deserialize_file(self.engine, str(artefact))
        except wasmtime.WasmtimeError:
            artefact.unlink(missing_ok=True)  # stale or damaged: compile again
            return None

    def _compile(self, path: Path, digest: str) -> wasmtime.Module:
        data = _read(path)
        if hashlib.sha256(data).hexdigest() != digest:
            raise ModuleError(f"module {path} changed while it was being loaded; try again")
        module = compile_module(self.engine, data, name=path.name)
        artefact = self._artefact(digest)
        if artefact is not None:
            artefact.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd, tmp = tempfile.mkstemp(dir=artefact.parent, suffix=".tmp")
            with os.fdopen(fd, "wb") as out:
                out.write(module.serialize())
            os.replace(tmp, artefact)
        return module


def compile_module(
    engine: wasmtime.Engine, data: bytes, *, name: str = "module"
) -> wasmtime.Module:
    """Compile ``data``, or raise ModuleError saying why it cannot run here."""
    if data.startswith(_COMPONENT_HEADER):
        raise ModuleError(
            f"{name} is a WebAssembly component; swarm runs WASI preview-1 command modules "
            "(Go: GOOS=wasip1 GOARCH=wasm, Rust: --target wasm32-wasip1)"
        )
    if not data.startswith(_CORE_HEADER) and not data.lstrip().startswith(b"("):
        raise ModuleError(f"{name} is not a WebAssembly module (no \\0asm header)")
    try:
        module = wasmtime.Module(engine, data)
    except wasmtime.WasmtimeError as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else "invalid"
        raise ModuleError(f"{name} is not a valid WebAssembly module: {detail}") from exc
    foreign = [f"{i.module}.{i.name}" for i in module.imports if i.module != WASI_MODULE]
    if foreign:
        shown = ", ".join(foreign[:5]) + (" …" if len(foreign) > 5 else "")
        raise ModuleError(
            f"{name} imports {shown}, which the sandbox does not provide; "
            f"only WASI preview 1 ({WASI_MODULE}) is available"
        )
    return module


def check_entry_point(module: wasmtime.Module, entry_point: str) -> None:
    functions = {e.name: e.type for e in module.exports if isinstance(e.type, wasmtime.FuncType)}
    if entry_point not in functions:
        names = ", ".join(sorted(functions)[:8]) or "none"
        raise ModuleError(
            f"module has no exported function {entry_point!r} (exported functions: {names}); "
            "pass --entry-point NAME or build a WASI command module"
        )
    if functions[entry_point].params:
        raise ModuleError(f"entry point {entry_point!r} takes parameters; it must take none")


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ModuleError(f"cannot read module {path}: {exc.strerror}") from exc
