"""Pure parts of the sandbox: sizes, input arguments, mount planning."""

from __future__ import annotations

import pytest

from swarm.errors import ConfigError, MountError
from swarm.executor.mounts import normalize_target, plan_preopens
from swarm.executor.spec import Mount, RunResult, RunStatus, parse_size
from swarm.storage.inputs import parse_env, parse_input


@pytest.mark.parametrize(
    "text,size",
    [
        ("4096", 4096),
        ("512MiB", 512 << 20),
        ("512M", 512 << 20),
        ("1.5g", 3 << 29),
        ("64 KiB", 64 << 10),
        ("2GB", 2 << 30),
    ],
)
def test_parse_size(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "lots", "12x", "-1M", "1.2.3G"])
def test_parse_size_refuses_nonsense(text):
    with pytest.raises(ConfigError, match="512MiB"):
        parse_size(text)


@pytest.mark.parametrize(
    "text,source,target,writable",
    [
        ("file:///data:/inputs", "file:///data", "/inputs", False),
        ("file:///data", "file:///data", "/inputs", False),
        ("/data:/in", "file:///data", "/in", False),
        ("/data:/in:rw", "file:///data", "/in", True),
        ("/data:ro", "file:///data", "/inputs", False),
        ("/odd:name", "file:///odd:name", "/inputs", False),
    ],
)
def test_parse_input(text, source, target, writable):
    arg = parse_input(text)
    assert (arg.source, arg.target, arg.writable) == (source, target, writable)


def test_parse_input_makes_relative_paths_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert parse_input("data").source == f"file://{tmp_path}/data"


@pytest.mark.parametrize("text", ["s3://bucket/key", "ipfs://Qm", ":/inputs"])
def test_parse_input_refuses_what_it_cannot_mount(text):
    with pytest.raises(ConfigError):
        parse_input(text)


def test_parse_env():
    assert parse_env("A=b=c") == ("A", "b=c")
    with pytest.raises(ConfigError):
        parse_env("=x")


@pytest.mark.parametrize("target", ["inputs", "/", "/a/../b", "/outputs", "/outputs/x"])
def test_bad_guest_paths(target):
    with pytest.raises(MountError):
        normalize_target(target)


def test_plan_preopens_groups_files_and_refuses_clashes(tmp_path):
    data = tmp_path / "d"
    data.mkdir()
    for name in ("a.txt", "b.txt"):
        (data / name).write_text(name)
    staging = tmp_path / "staging"
    plans = plan_preopens(
        (Mount(data / "a.txt"), Mount(data / "b.txt", "/inputs/bee.txt")), lambda: staging
    )
    assert [(p.guest, p.writable) for p in plans] == [("/inputs", False)]
    assert sorted(x.name for x in (staging / "mount-0").iterdir()) == ["a.txt", "bee.txt"]
    plans = plan_preopens((Mount(data / "a.txt", "/data"),), lambda: tmp_path / "s2")
    assert plans[0].guest == "/data"
    with pytest.raises(MountError, match="two inputs"):
        plan_preopens((Mount(data), Mount(data)), lambda: tmp_path / "s3")
    with pytest.raises(MountError, match="clashes"):
        plan_preopens((Mount(data), Mount(data / "a.txt")), lambda: tmp_path / "s4")


def test_symlinked_sources_are_resolved(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    (plan,) = plan_preopens((Mount(tmp_path / "link"),), nothing_staged)
    assert plan.host == str(real)


def nothing_staged():
    raise AssertionError("folders are mounted as they are: nothing is staged")


@pytest.mark.parametrize(
    "status,code,shell",
    [
        (RunStatus.COMPLETED, 0, 0),
        (RunStatus.FAILED, 3, 3),
        (RunStatus.TIMEOUT, None, 124),
        (RunStatus.CANCELLED, None, 130),
        (RunStatus.FAILED, None, 134),
        (RunStatus.OUT_OF_MEMORY, 2, 2),
    ],
)
def test_shell_exit_code(status, code, shell):
    assert RunResult(status=status, exit_code=code).shell_exit_code == shell
