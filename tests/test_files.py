"""mmzoo/files.py: a file is replaced whole or not at all, and a failed write leaves nothing behind."""

import os

import pytest

from mmzoo.files import write_text_then_rename, write_then_rename


def test_write_then_rename_replaces_the_file_whole(tmp_path):
    path = str(tmp_path / "out.txt")
    assert write_text_then_rename(path, "old\n") == path
    write_text_then_rename(path, "new\n")
    assert open(path).read() == "new\n" and os.listdir(tmp_path) == ["out.txt"]


def test_a_write_that_fails_midway_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = str(tmp_path / "out.jsonl")
    write_text_then_rename(path, "old\n")

    def write(tmp):
        with open(tmp, "w") as f:
            f.write("half")
        raise RuntimeError("row 3 failed")

    with pytest.raises(RuntimeError, match="row 3 failed"):
        write_then_rename(path, write)
    assert open(path).read() == "old\n" and os.listdir(tmp_path) == ["out.jsonl"]
