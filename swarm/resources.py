"""What this host offers: CPUs, memory (from /proc/meminfo) and GPUs (from nvidia-smi).

The parsers are pure functions over text; the detectors around them read the files and run
the commands. A GPU count given with ``--gpu N`` replaces detection.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from swarm.models import Gpu, Resources

NVIDIA_SMI_QUERY = ["--query-gpu=name,memory.total", "--format=csv,noheader"]
_UNITS = {"kib": 1024, "kb": 1024, "mib": 1024**2, "mb": 1024**2, "gib": 1024**3, "gb": 1024**3}


def parse_meminfo(text: str) -> tuple[int, int]:
    """/proc/meminfo → (total, available) bytes; available falls back to free."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        words = rest.split()
        if words and words[0].isdigit():
            factor = _UNITS.get(words[1].lower(), 1) if len(words) > 1 else 1
            values[name.strip()] = int(words[0]) * factor
    total = values.get("MemTotal", 0)
    return total, values.get("MemAvailable", values.get("MemFree", 0))


def parse_nvidia_smi(text: str) -> tuple[Gpu, ...]:
    """`nvidia-smi --query-gpu=name,memory.total --format=csv,noheader` → GPUs.

    Each line is like ``NVIDIA A100-SXM4-40GB, 40960 MiB``; unreadable memory counts as 0.
    """
    gpus = []
    for line in text.splitlines():
        if not line.strip():
            continue
        name, _, memory = line.rpartition(",")
        if not name:
            name, memory = memory, ""
        gpus.append(Gpu(name=name.strip(), memory=_parse_memory(memory)))
    return tuple(gpus)


def _parse_memory(text: str) -> int:
    words = text.split()
    try:
        number = float(words[0])
    except (IndexError, ValueError):
        return 0
    unit = words[1].lower() if len(words) > 1 else "mib"  # nvidia-smi reports MiB
    return int(number * _UNITS.get(unit, 1))


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def read_memory(meminfo: Path = Path("/proc/meminfo")) -> tuple[int, int]:
    try:
        return parse_meminfo(meminfo.read_text())
    except OSError:
        return 0, 0


def detect_gpus(timeout: float = 5.0) -> tuple[Gpu, ...]:
    """GPUs reported by nvidia-smi when it is on PATH; none if it is absent or fails."""
    command = shutil.which("nvidia-smi")
    if command is None:
        return ()
    try:
        result = subprocess.run(
            [command, *NVIDIA_SMI_QUERY], capture_output=True, text=True, timeout=timeout
        )
    except (OSError, subprocess.TimeoutExpired):
        return ()
    if result.returncode != 0:
        return ()
    return parse_nvidia_smi(result.stdout)


def declared_gpus(count: int) -> tuple[Gpu, ...]:
    return tuple(Gpu(name="declared") for _ in range(count))


def detect_resources(gpus: tuple[Gpu, ...]) -> Resources:
    """CPU and memory of this host now, with the GPUs found once at start."""
    total, available = read_memory()
    return Resources(cpu=cpu_count(), memory=total, memory_free=available, gpus=gpus)
