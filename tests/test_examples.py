"""The examples, end to end: through the sandbox library and through the real CLI."""

from __future__ import annotations

import csv
import os
import random
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from swarm.executor import Limits, Mount, RunSpec, RunStatus, open_executor
from tests import guests

ROOT = Path(__file__).resolve().parent.parent
WORDCOUNT = ROOT / "examples" / "wordcount-go" / "main.wasm"
CSVSTATS = ROOT / "examples" / "csvstats-c" / "main.wasm"
SWARM = Path(sys.executable).parent / "swarm"


@pytest.fixture(scope="session", autouse=True)
def built_examples():
    """Build the example modules (a no-op when `make examples` already did)."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    subprocess.run(
        ["make", "-s", "-C", str(ROOT / "examples"), f"PYTHON={sys.executable}"],
        check=True,
        env=env,
        capture_output=True,
    )
    assert WORDCOUNT.exists() and CSVSTATS.exists()


def python_word_counts(folder: Path) -> dict[str, int]:
    return {p.name: len(p.read_bytes().split()) for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture
def texts(tmp_path) -> Path:
    """Generated files: empty, names with spaces, odd whitespace, a long token."""
    rng = random.Random(7)
    words = ["cod", "salted", "dried", "wasm", "swarm", "données", "🐟"]
    folder = tmp_path / "texts"
    folder.mkdir()
    (folder / "empty.txt").write_bytes(b"")
    (folder / "name with spaces.txt").write_text("one two  three\tfour\nfive")
    (folder / "whitespace only.txt").write_text(" \n\t\r\v\f ")
    (folder / "long-token.txt").write_bytes(b"x" * 200_000 + b" y")
    for i in range(5):
        seps = [" ", "\n", "\t", "  ", "\r\n"]
        body = "".join(rng.choice(words) + rng.choice(seps) for _ in range(rng.randint(0, 5000)))
        (folder / f"file{i}.txt").write_text(body)
    return folder


def expected_count_txt(counts: dict[str, int]) -> str:
    return "".join(f"{name} has {n} words\n" for name, n in counts.items())


async def test_wordcount_matches_python(tmp_path, texts):
    async with open_executor(cache_dir=tmp_path / "cache", max_workers=1, warm=0) as executor:
        result = await executor.run(
            RunSpec(
                module=WORDCOUNT,
                outputs_dir=tmp_path / "out",
                mounts=(Mount(texts),),
                stdout_path=tmp_path / "stdout",
            )
        )
    counts = python_word_counts(texts)
    assert result.status == RunStatus.COMPLETED, result
    assert (tmp_path / "stdout").read_text() == f"Total word count:  {sum(counts.values())}\n"
    assert (tmp_path / "out" / "count.txt").read_text() == expected_count_txt(counts)


async def test_go_module_is_compiled_once(tmp_path):
    sources = []
    for _ in range(2):  # two executors: new worker processes, same node cache
        async with open_executor(cache_dir=tmp_path / "cache", max_workers=1, warm=0) as ex:
            result = await ex.run(
                RunSpec(
                    module=WORDCOUNT,
                    outputs_dir=tmp_path / f"out{len(sources)}",
                    mounts=(Mount(ROOT / "examples" / "wordcount-go" / "data"),),
                )
            )
            assert result.status == RunStatus.COMPLETED
            sources.append(result.module_source)
    assert sources == ["compiled", "disk"]


async def test_go_module_under_its_minimum_memory_is_out_of_memory(tmp_path):
    async with open_executor(cache_dir=tmp_path / "cache", max_workers=1, warm=0) as ex:
        result = await ex.run(
            RunSpec(
                module=WORDCOUNT,
                outputs_dir=tmp_path / "out",
                limits=Limits(memory=8 * 1024 * 1024),
            )
        )
    assert result.status == RunStatus.OUT_OF_MEMORY


def swarm(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    env = dict(os.environ, SWARM_HOME=str(cwd / "home"))
    return subprocess.run(
        [str(SWARM), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_cli_exec_runs_the_seed_journey(tmp_path):
    data = ROOT / "examples" / "wordcount-go" / "data"
    done = swarm(
        "wasm", "exec", "-i", f"file://{data}:/inputs", "-o", "res", str(WORDCOUNT), cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "Total word count:  414\n"
    res = tmp_path / "res"
    assert (res / "stdout").read_text() == "Total word count:  414\n"
    assert (res / "exitCode").read_text() == "0\n"
    assert (res / "stderr").read_text() == ""
    assert (res / "outputs" / "count.txt").read_text() == expected_count_txt(
        python_word_counts(data)
    )


def test_cli_exec_default_folder_args_and_mount_target(tmp_path, texts):
    # The module reads the directory named by its first argument.
    done = swarm(
        "wasm", "exec", "-i", f"{texts}:/data", str(WORDCOUNT), "--", "/data", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    (folder,) = tmp_path.glob("exec-*")
    assert (folder / "outputs" / "count.txt").read_text() == expected_count_txt(
        python_word_counts(texts)
    )


def test_cli_exec_exits_with_the_guest_code(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    done = swarm("wasm", "exec", "-i", str(empty), "-o", "r", str(WORDCOUNT), cwd=tmp_path)
    assert done.returncode == 1
    assert "No files found" in done.stderr
    assert (tmp_path / "r" / "exitCode").read_text() == "1\n"


def test_cli_exec_timeout_is_124_with_one_line(tmp_path):
    sleeper = tmp_path / "sleep.wasm"
    sleeper.write_bytes(guests.sleeper(30))
    done = swarm("wasm", "exec", "--timeout", "0.5", "-o", "r", str(sleeper), cwd=tmp_path)
    assert done.returncode == 124
    assert done.stderr.splitlines() == [
        "swarm: timeout: timed out after 0.5s (blocked in a host call);"
        " results in r/ (stdout, stderr, exitCode, outputs/)"
    ]
    assert (tmp_path / "r" / "exitCode").read_text() == "124\n"


@pytest.mark.parametrize(
    "args,message",
    [
        (["missing.wasm"], "does not exist"),
        (["-i", "/no/such/dir", "MODULE"], "does not exist"),
        (["-i", "s3://bucket/x", "MODULE"], "not supported"),
        (["--memory", "lots", "MODULE"], "cannot read size"),
        (["-e", "NOEQUALS", "MODULE"], "KEY=VALUE"),
        (["BAD"], "not a WebAssembly module"),
    ],
)
def test_cli_exec_bad_input_is_one_line(tmp_path, args, message):
    (tmp_path / "bad.wasm").write_text("hello")
    args = [
        str(WORDCOUNT) if a == "MODULE" else str(tmp_path / "bad.wasm") if a == "BAD" else a
        for a in args
    ]
    done = swarm("wasm", "exec", *args, cwd=tmp_path)
    assert done.returncode == 1
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def python_csv_stats(folder: Path) -> dict[tuple[str, str], tuple[int, float, float, float]]:
    stats = {}
    for path in sorted(folder.glob("*.csv")):
        with path.open(newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
        for column in rows[0]:
            values = [r[column].strip() for r in rows if r[column] and r[column].strip()]
            try:
                numbers = [float(v) for v in values]
            except ValueError:
                continue
            if numbers:
                stats[(path.name, column.strip())] = (
                    len(numbers),
                    min(numbers),
                    max(numbers),
                    statistics.fmean(numbers),
                )
    return stats


def test_cli_exec_csvstats_matches_python(tmp_path):
    data = ROOT / "examples" / "csvstats-c" / "data"
    done = swarm("wasm", "exec", "-i", f"file://{data}", "-o", "r", str(CSVSTATS), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    with (tmp_path / "r" / "outputs" / "stats.csv").open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["file"] != "ALL"]
    got = {
        (r["file"], r["column"]): (
            int(r["count"]),
            float(r["min"]),
            float(r["max"]),
            float(r["mean"]),
        )
        for r in rows
    }
    expected = python_csv_stats(data)
    assert got.keys() == expected.keys() and expected
    for key, (count, lo, hi, mean) in expected.items():
        assert got[key][:3] == (count, lo, hi)
        assert got[key][3] == pytest.approx(mean, rel=1e-9)
