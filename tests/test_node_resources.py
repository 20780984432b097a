"""Resource detection: /proc/meminfo and nvidia-smi parsing, with a fake nvidia-smi on PATH."""

from __future__ import annotations

import os
import stat

import pytest

from swarm.models import Gpu
from swarm.resources import detect_gpus, detect_resources, parse_meminfo, parse_nvidia_smi

MEMINFO = """MemTotal:       16318504 kB
MemFree:         1203312 kB
MemAvailable:    9876544 kB
Buffers:          123456 kB
HugePages_Total:       0
"""


def test_meminfo():
    assert parse_meminfo(MEMINFO) == (16318504 * 1024, 9876544 * 1024)
    assert parse_meminfo("MemTotal: 1000 kB\nMemFree: 10 kB\n") == (1024000, 10240)
    assert parse_meminfo("garbage") == (0, 0)


def test_this_host_has_cpus_and_memory():
    resources = detect_resources(gpus=())
    assert resources.cpu >= 1 and resources.memory > resources.memory_free > 0


@pytest.mark.parametrize(
    ("text", "gpus"),
    [
        ("", ()),
        ("NVIDIA A100-SXM4-40GB, 40960 MiB\n", (Gpu("NVIDIA A100-SXM4-40GB", 40960 << 20),)),
        (
            "Tesla T4, 15360 MiB\nNVIDIA GeForce RTX 3090, 24576 MiB\n",
            (Gpu("Tesla T4", 15360 << 20), Gpu("NVIDIA GeForce RTX 3090", 24576 << 20)),
        ),
        ("Odd, Name, With Commas, 8 GiB", (Gpu("Odd, Name, With Commas", 8 << 30),)),
        ("Mystery GPU, [N/A]", (Gpu("Mystery GPU", 0),)),
        ("NoMemoryColumn", (Gpu("NoMemoryColumn", 0),)),
    ],
)
def test_parse_nvidia_smi(text, gpus):
    assert parse_nvidia_smi(text) == gpus


def fake_nvidia_smi(directory, script: str) -> None:
    path = directory / "nvidia-smi"
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def test_detect_gpus_runs_nvidia_smi_on_path(tmp_path, monkeypatch):
    fake_nvidia_smi(
        tmp_path,
        'test "$1" = "--query-gpu=name,memory.total" || exit 9\n'
        'test "$2" = "--format=csv,noheader" || exit 9\n'
        'echo "NVIDIA H100 80GB HBM3, 81559 MiB"\necho "NVIDIA H100 80GB HBM3, 81559 MiB"\n',
    )
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert detect_gpus() == (Gpu("NVIDIA H100 80GB HBM3", 81559 << 20),) * 2


def test_failing_nvidia_smi_means_no_gpus(tmp_path, monkeypatch):
    fake_nvidia_smi(tmp_path, 'echo "NVIDIA-SMI has failed" >&2\nexit 9\n')
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert detect_gpus() == ()


def test_no_nvidia_smi_means_no_gpus(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert detect_gpus() == ()
