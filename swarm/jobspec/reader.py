"""Reading job specs as users write them: YAML or JSON files, or plain dicts.

The one validator of the schema in docs/JOB_SPEC.md. Every problem is a one-line
``ConfigError`` naming the field (``task.inputs[0].target``) and how to fix it; unknown
fields are errors, with a did-you-mean when a known one is close.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from swarm.constraints import parse_constraint
from swarm.errors import ConfigError
from swarm.executor.spec import (
    DEFAULT_MEMORY,
    DEFAULT_OUTPUT_FILES_CAP,
    DEFAULT_OUTPUTS_CAP,
    DEFAULT_STDERR_CAP,
    DEFAULT_STDOUT_CAP,
    DEFAULT_TIMEOUT,
    format_size,
    parse_size,
)
from swarm.jobspec.model import (
    DEFAULT_RETRIES,
    InputSource,
    JobSpec,
    OutputCaps,
    ResourceRequest,
    Target,
    TaskSpec,
)
from swarm.storage.blobs import DIGEST_PREFIX, is_digest
from swarm.storage.inputs import input_from_text, make_input

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_NAME = re.compile(r"[^\x00-\x1f\x7f]{1,128}")
_MIN_MEMORY = 64 * 1024  # one WebAssembly page
_MAX_CPU = 4096.0
_MAX_INT = 2**53  # exact in JSON readers everywhere, far above any real size or count
_MAX_COUNT = 10_000
_MAX_RETRIES = 100
_TYPES = {"batch": Target.ANY, "ops": Target.ALL}


def parse_job_spec(text: str, *, base_dir: Path | None = None, source: str = "") -> JobSpec:
    """A spec from YAML text (JSON is YAML too); a ``source`` ending in .json is read as JSON."""
    where = f" in {source}" if source else ""
    try:
        data = json.loads(text) if source.endswith(".json") else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"cannot read the job spec{where}: {first_line}") from None
    if data is None:
        raise ConfigError(f"the job spec{where} is empty: see docs/JOB_SPEC.md for an example")
    return JobSpec.from_dict(data, base_dir=base_dir)


def load_job_spec(path: Path) -> JobSpec:
    """Read a spec file; its module path is relative to the file's folder and must exist."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read job spec {path}: {exc}") from None
    spec = parse_job_spec(text, base_dir=path.absolute().parent, source=str(path))
    if spec.task.module_digest is None and not Path(spec.task.module).is_file():
        raise ConfigError(
            f"task.module {spec.task.module} in {path} does not exist: build it, or fix the path "
            "(relative paths start at the spec's folder)"
        )
    return spec


def parse_duration(text: str | int | float, *, name: str = "duration") -> float:
    """90, '90s', '30m', '1h30m', '250ms' → seconds (> 0)."""
    if isinstance(text, bool):
        raise ConfigError(f"{name} must be seconds or a duration like 90s, 30m, 1h")
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        compact = str(text).strip().replace(" ", "")
        try:
            seconds = float(compact)
        except ValueError:
            parts = _DURATION_PART.findall(compact)
            if not parts or "".join(n + u for n, u in parts) != compact:
                raise ConfigError(
                    f"{name} {text!r} is not a duration: use seconds or a form like 90s, 30m, 1h"
                ) from None
            seconds = sum(float(n) * _DURATION_UNITS[u] for n, u in parts)
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(f"{name} {text!r} must be more than zero, like 30m")
    return seconds


class _Fields:
    """One mapping of a spec: refuses unknown keys and names fields by their path."""

    def __init__(self, data: Any, path: str, known: tuple[str, ...], example: str) -> None:
        where = path or "the job spec"
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where} must be a mapping of fields, like {example}")
        for key in data:
            if key not in known:
                close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
                hint = f"did you mean {close[0]!r}?" if close else "known: " + ", ".join(known)
                raise ConfigError(f"unknown field {key!r} in {where}: {hint}")
        self.data, self.path = data, path

    def name(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def __contains__(self, key: str) -> bool:
        return key in self.data


def read_job_spec(data: Any, *, base_dir: Path | None = None) -> JobSpec:
    """``JobSpec.from_dict``: a validated spec from plain data."""
    _check_unicode(data)
    top = _Fields(
        data,
        "",
        ("name", "type", "count", "constraints", "resources", "retries", "queue_timeout", "task"),
        "{task: {module: main.wasm}}",
    )
    if "task" not in top:
        raise ConfigError("the job spec has no task: add task: {module: path/to/main.wasm}")
    task_fields = _Fields(
        top.get("task"),
        "task",
        ("module", "entry_point", "args", "env", "inputs", "timeout", "memory", "caps"),
        "{module: main.wasm}",
    )
    kind = top.get("type", "batch")
    if kind not in _TYPES:
        raise ConfigError(
            f"type {kind!r} is not known: use batch (--target any) or ops (--target all)"
        )
    target = _TYPES[kind]
    count = _integer(top, "count", 1, minimum=1, maximum=_MAX_COUNT)
    if target is Target.ALL and count != 1:
        raise ConfigError("count applies to type batch only: type ops runs on every node that bids")
    constraints = tuple(
        _read_constraint(item, f"constraints[{i}]")
        for i, item in enumerate(_list(top, "constraints"))
    )
    task = _read_task(task_fields, base_dir)
    resources = _read_resources(top.get("resources", {}), task_fields)
    if "memory" not in task_fields:  # a task's cap follows its reservation unless given
        task = dataclasses.replace(task, memory=resources.memory)
    elif task.memory > resources.memory:
        raise ConfigError(
            f"task.memory {format_size(task.memory)} exceeds resources.memory "
            f"{format_size(resources.memory)}: "
            "raise resources.memory or lower task.memory"
        )
    retries = _integer(top, "retries", DEFAULT_RETRIES, minimum=0, maximum=_MAX_RETRIES)
    queue_timeout = top.get("queue_timeout", 0)
    if isinstance(queue_timeout, bool) or queue_timeout not in (0, "0"):
        queue_timeout = parse_duration(queue_timeout, name="queue_timeout")
    name = top.get("name")
    if name is None:
        name = "job" if is_digest(task.module) else Path(task.module).stem or "job"
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError("name must be 1 to 128 printable characters, like wordcount")
    return JobSpec(
        name=name,
        task=task,
        target=target,
        count=count,
        constraints=constraints,
        resources=resources,
        retries=retries,
        queue_timeout=float(queue_timeout),
    )


def _read_constraint(item: Any, name: str) -> str:
    text = _string(item, name)
    try:
        return str(parse_constraint(text))
    except ConfigError as exc:
        raise ConfigError(f"{name}: {exc}") from None


def _read_resources(data: Any, task_fields: _Fields) -> ResourceRequest:
    fields = _Fields(data, "resources", ("cpu", "memory", "gpu"), "{cpu: 1, memory: 512MiB}")
    cpu = fields.get("cpu", 1.0)
    if isinstance(cpu, bool) or not isinstance(cpu, int | float) or not 0 < cpu <= _MAX_CPU:
        raise ConfigError(f"resources.cpu {cpu!r} must be a number of CPUs above 0, like 1 or 0.5")
    default_memory = task_fields.get("memory", DEFAULT_MEMORY)  # follows task.memory if given
    memory = _size(fields, "memory", _size_value(default_memory, "task.memory"))
    return ResourceRequest(cpu=float(cpu), memory=memory, gpu=_integer(fields, "gpu", 0, minimum=0))


def _read_task(fields: _Fields, base_dir: Path | None) -> TaskSpec:
    module = fields.get("module")
    if not isinstance(module, str) or not module.strip():
        raise ConfigError("task.module is missing: give the module's path or its sha256: id")
    if module.startswith(DIGEST_PREFIX):
        if not is_digest(module):
            raise ConfigError(
                f"task.module {module!r} is not a module id: sha256: and 64 lowercase hex digits"
            )
    elif base_dir is not None:
        module = os.path.normpath(base_dir / Path(module).expanduser())
    entry_point = fields.get("entry_point", "_start")
    if not isinstance(entry_point, str) or not entry_point:
        raise ConfigError("task.entry_point must be an exported function name, like _start")
    caps = _Fields(
        fields.get("caps", {}),
        "task.caps",
        ("stdout", "stderr", "outputs", "output_files"),
        "{stdout: 64MiB, outputs: 1GiB}",
    )
    return TaskSpec(
        module=module,
        entry_point=entry_point,
        args=tuple(_scalar(a, f"task.args[{i}]") for i, a in enumerate(_list(fields, "args"))),
        env=_read_env(fields.get("env", {})),
        inputs=tuple(
            _read_input(item, f"task.inputs[{i}]", base_dir)
            for i, item in enumerate(_list(fields, "inputs"))
        ),
        timeout=parse_duration(fields.get("timeout", DEFAULT_TIMEOUT), name="task.timeout"),
        memory=_size(fields, "memory", DEFAULT_MEMORY, minimum=_MIN_MEMORY),
        caps=OutputCaps(
            stdout=_size(caps, "stdout", DEFAULT_STDOUT_CAP, minimum=0),
            stderr=_size(caps, "stderr", DEFAULT_STDERR_CAP, minimum=0),
            outputs=_size(caps, "outputs", DEFAULT_OUTPUTS_CAP, minimum=0),
            output_files=_integer(caps, "output_files", DEFAULT_OUTPUT_FILES_CAP, minimum=0),
        ),
    )


def _read_env(data: Any) -> tuple[tuple[str, str], ...]:
    if isinstance(data, Mapping):
        pairs = [(key, value) for key, value in data.items()]
    elif isinstance(data, list):
        pairs = []
        for i, item in enumerate(data):
            key, sep, value = _string(item, f"task.env[{i}]").partition("=")
            if not sep:
                raise ConfigError(f"task.env[{i}] {item!r} must look like KEY=VALUE")
            pairs.append((key, value))
    else:
        raise ConfigError("task.env must be a mapping like {LANG: C} or a list like [LANG=C]")
    seen: set[str] = set()
    env = []
    for key, value in pairs:
        if not isinstance(key, str) or not key or "=" in key or "\x00" in key:
            raise ConfigError(f"task.env name {key!r} must be a non-empty name without '='")
        if key in seen:
            raise ConfigError(f"task.env sets {key} twice: keep one")
        seen.add(key)
        env.append((key, _scalar(value, f"task.env.{key}")))
    return tuple(env)


def _read_input(item: Any, name: str, base_dir: Path | None) -> InputSource:
    if isinstance(item, str):  # the -i form: SRC[:DST][:ro|:rw]
        return input_from_text(item, base_dir=base_dir, name=name)
    fields = _Fields(
        item, name, ("source", "target", "writable", "sha256"), "{source: file:///data}"
    )
    writable = fields.get("writable", False)
    if not isinstance(writable, bool):
        raise ConfigError(f"{name}.writable must be true or false")
    sha256 = fields.get("sha256")
    if sha256 is not None and not isinstance(sha256, str):
        raise ConfigError(f"{name}.sha256 must be 64 hex digits, as a string")
    return make_input(
        _string(fields.get("source"), f"{name}.source"),
        target=_string(fields.get("target", "/inputs"), f"{name}.target"),
        writable=writable,
        sha256=sha256,
        base_dir=base_dir,
        name=name,
    )


def _list(fields: _Fields, key: str) -> list:
    value = fields.get(key, [])
    if not isinstance(value, list):
        raise ConfigError(f"{fields.name(key)} must be a list, like [a, b]")
    return value


def _check_unicode(value: Any, depth: int = 0) -> None:
    """Every string in the spec is text that can be stored and sent: JSON's escapes can
    spell a lone surrogate (``"\\ud800"``), which no UTF-8 file, database or message holds."""
    if depth > 64:
        raise ConfigError("the job spec is nested too deep: a spec is a few levels of maps")
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ConfigError(
                f"the job spec holds text that is not valid Unicode ({value[:40]!r}): fix it"
            ) from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_unicode(key, depth + 1)
            _check_unicode(item, depth + 1)
    elif isinstance(value, list | tuple):
        for item in value:
            _check_unicode(item, depth + 1)


def _string(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{name} must be a non-empty string")
    return value


def _scalar(value: Any, name: str) -> str:
    """Args and env values: strings; numbers are taken as written, booleans must be quoted."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ConfigError(f"{name} must be a string: quote it, like '{value}'")
    text = value if isinstance(value, str) else str(value)
    if "\x00" in text:
        raise ConfigError(f"{name} must not contain a NUL character")
    return text


def _integer(
    fields: _Fields, key: str, default: int, *, minimum: int, maximum: int = _MAX_INT
) -> int:
    value = fields.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise ConfigError(
            f"{fields.name(key)} must be a whole number from {minimum} to {maximum}, got {value!r}"
        )
    return value


def _size(fields: _Fields, key: str, default: int, *, minimum: int = 1) -> int:
    size = _size_value(fields.get(key, default), fields.name(key))
    if size < minimum:
        raise ConfigError(f"{fields.name(key)} {size} bytes is too small: at least {minimum}")
    return size


def _size_value(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ConfigError(f"{name} must be a size, like 512MiB or 2G, got {value!r}")
    if isinstance(value, str):
        try:
            value = parse_size(value)
        except ConfigError as exc:
            raise ConfigError(f"{name}: {exc}") from None
    if value > _MAX_INT:
        raise ConfigError(f"{name} {value} bytes is too large: at most {format_size(_MAX_INT)}")
    return value
