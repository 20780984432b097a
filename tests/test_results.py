"""The requester's result store: the folder layout, caps, readers and downloads."""

from __future__ import annotations

import os

import pytest

from swarm.errors import ConfigError, NotFound, ProtocolError
from swarm.jobspec import OutputCaps
from swarm.requester.results import OutputFile, ResultStore
from swarm.storage.archive import pack, unpack

JOB = "0b5c3f0e-6a2d-4f4e-9a51-3f1f2f1e0c11"
EXE = "7d1e2f30-1111-4222-8333-944445555666"


@pytest.fixture
def results(tmp_path) -> ResultStore:
    return ResultStore(tmp_path / "results")


@pytest.fixture
def outputs(tmp_path):
    folder = tmp_path / "guest-outputs"
    (folder / "sub").mkdir(parents=True)
    (folder / "count.txt").write_text("file1.txt has 69 words\n")
    (folder / "sub" / "data.bin").write_bytes(os.urandom(3000))
    return folder


def store_result(results: ResultStore, outputs, exit_code=0, caps=OutputCaps()):
    with results.writer(JOB, EXE, caps=caps) as writer:
        writer.append("stdout", b"Total word count:  ")
        writer.append("stderr", b"warning\n")
        writer.append("stdout", b"414\n")
        unpacker = writer.outputs()
        for chunk in pack(outputs):
            unpacker.feed(chunk)
        unpacker.close()
        writer.set_exit_code(exit_code)


def test_layout_is_the_one_swarm_get_hands_out(results, outputs):
    store_result(results, outputs)
    folder = results.root / JOB / EXE
    assert folder == results.folder(JOB, EXE)
    assert sorted(p.name for p in folder.iterdir()) == ["exitCode", "outputs", "stderr", "stdout"]
    assert (folder / "stdout").read_bytes() == b"Total word count:  414\n"
    assert (folder / "stderr").read_bytes() == b"warning\n"
    assert (folder / "exitCode").read_text() == "0\n"
    assert (folder / "outputs" / "count.txt").read_text() == "file1.txt has 69 words\n"
    modes = {p.name: p.stat().st_mode & 0o777 for p in folder.iterdir() if p.is_file()}
    assert len(set(modes.values())) == 1 and not modes["exitCode"] & 0o111, modes


def test_result_info(results, outputs):
    store_result(results, outputs, exit_code=3)
    info = results.result(JOB, EXE)
    assert (info.stdout_size, info.stderr_size, info.exit_code) == (23, 8, 3)
    assert info.outputs == (OutputFile("count.txt", 23), OutputFile("sub/data.bin", 3000))
    assert results.executions(JOB) == [EXE]
    assert results.executions("ffffffff") == []


def test_streams_are_readable_while_the_run_goes_on(results):
    with results.writer(JOB, EXE) as writer:
        writer.append("stdout", b"line 1\n")
        assert results.read(JOB, EXE, "stdout") == b"line 1\n"
        writer.append("stdout", b"line 2\n")
        assert results.read(JOB, EXE, "stdout", offset=7) == b"line 2\n"
        assert results.read(JOB, EXE, "stdout", offset=7, limit=4) == b"line"
        assert results.read(JOB, EXE, "stderr") == b""
        assert results.result(JOB, EXE).exit_code is None  # not ended yet


def test_a_new_writer_starts_afresh(results, outputs):
    store_result(results, outputs)
    with results.writer(JOB, EXE) as writer:
        writer.append("stdout", b"again\n")
    info = results.result(JOB, EXE)
    assert info.exit_code is None and info.outputs == () and info.stdout_size == 6


def test_caps_are_enforced_again_on_the_requester(results, outputs):
    caps = OutputCaps(stdout=10, stderr=10, outputs=100, output_files=10)
    with results.writer(JOB, EXE, caps=caps) as writer:
        writer.append("stdout", b"0123456789")
        with pytest.raises(ProtocolError, match="stdout grew past the job's cap of 10 bytes"):
            writer.append("stdout", b"!")
        with pytest.raises(ProtocolError, match="more than 100 bytes"):
            unpacker = writer.outputs()
            for chunk in pack(outputs):
                unpacker.feed(chunk)
        with pytest.raises(ProtocolError, match="unknown output stream"):
            writer.append("stdin", b"x")


def test_archive_for_download_round_trips(results, outputs, tmp_path):
    store_result(results, outputs)
    unpack(results.archive(JOB, EXE), tmp_path / "one", max_bytes=10**9, max_entries=100)
    assert (tmp_path / "one" / "stdout").read_bytes() == b"Total word count:  414\n"
    assert (tmp_path / "one" / "outputs" / "sub" / "data.bin").stat().st_size == 3000
    unpack(results.archive_job(JOB), tmp_path / "all", max_bytes=10**9, max_entries=100)
    assert (tmp_path / "all" / EXE / "exitCode").read_text() == "0\n"


@pytest.mark.parametrize(
    "job,execution", [("../etc", EXE), (JOB, "../../x"), (JOB, "a/b"), ("", EXE)]
)
def test_ids_cannot_be_paths(results, job, execution):
    with pytest.raises(ConfigError, match="is not a (job|execution) id"):
        results.writer(job, execution)
    with pytest.raises(ConfigError):
        results.result(job, execution)


def test_missing_results(results):
    with pytest.raises(NotFound, match="no results for execution"):
        results.result(JOB, EXE)
    with pytest.raises(NotFound):
        list(results.archive(JOB, EXE))
    with pytest.raises(NotFound, match="has no results yet"):
        results.archive_job(JOB)
    with pytest.raises(ConfigError, match="unknown stream"):
        results.read(JOB, EXE, "exitCode")
