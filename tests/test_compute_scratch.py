"""Scratch folders: an empty one is kept and reused, anything a run left is removed."""

from __future__ import annotations

import os

from swarm.compute.scratch import ScratchFolders, is_spare


def ran(folder, *files: str) -> None:
    """What the sandbox worker and a guest would do: make outputs/, write ``files``."""
    os.makedirs(folder / "outputs", exist_ok=True)
    for name in files:
        (folder / "outputs" / name).write_text("x")


async def test_an_empty_folder_is_reused_by_the_next_run(tmp_path):
    scratch = ScratchFolders(tmp_path)
    first = scratch.take("exec-1")
    assert not first.exists()  # nothing to reuse yet: the worker makes it
    ran(first)
    inode = first.stat().st_ino
    await scratch.give_back(first)
    assert not first.exists()
    [spare] = tmp_path.iterdir()
    assert is_spare(spare)

    second = scratch.take("exec-2")
    assert second == tmp_path / "exec-2"
    assert second.stat().st_ino == inode  # the same folder, renamed into place
    assert os.listdir(second) == ["outputs"] and not os.listdir(second / "outputs")
    assert list(tmp_path.iterdir()) == [second]


async def test_a_folder_with_anything_left_in_it_is_removed_not_kept(tmp_path):
    scratch = ScratchFolders(tmp_path)
    with_output = scratch.take("exec-1")
    ran(with_output, "count.txt")
    await scratch.give_back(with_output)
    with_input = scratch.take("exec-2")
    ran(with_input)
    (with_input / "inputs").mkdir()
    await scratch.give_back(with_input)
    assert list(tmp_path.iterdir()) == []
    assert not scratch.take("exec-3").exists()  # no spare was kept


async def test_spares_are_kept_up_to_the_limit_and_the_rest_removed(tmp_path):
    scratch = ScratchFolders(tmp_path, keep=2)
    folders = [scratch.take(f"exec-{i}") for i in range(4)]
    for folder in folders:
        ran(folder)
    for folder in folders:
        await scratch.give_back(folder)
    left = list(tmp_path.iterdir())
    assert len(left) == 2 and all(is_spare(p) for p in left)


async def test_a_spare_that_has_gone_is_skipped(tmp_path):
    scratch = ScratchFolders(tmp_path)
    folder = scratch.take("exec-1")
    ran(folder)
    await scratch.give_back(folder)
    [spare] = tmp_path.iterdir()
    (spare / "outputs").rmdir()
    spare.rmdir()
    assert not scratch.take("exec-2").exists()


def test_is_spare_wants_the_name_and_an_empty_skeleton(tmp_path):
    named = tmp_path / ".spare-0"
    ran(named)
    assert is_spare(named)
    (named / "outputs" / "left.txt").write_text("x")
    assert not is_spare(named)
    unnamed = tmp_path / "exec-1"
    ran(unnamed)
    assert not is_spare(unnamed)
