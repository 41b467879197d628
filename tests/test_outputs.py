"""The output guard, the atomic writer and the folder lock, on real files."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from ampcap.errors import AmpcapError, write_error
from ampcap.outputs import (
    LOCK_NAME,
    OutputRefused,
    atomic_output,
    check_output_file,
    folder_lock,
    holds_files,
)


def test_two_writers_of_one_file_never_share_a_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "take.wav"
    with atomic_output(target) as first, atomic_output(target) as second:
        assert first != second and first.parent == second.parent == tmp_path
        first.write_bytes(b"first")
        second.write_bytes(b"second")
    # The outer block ends last, so its bytes are the file's; no temporary file is left.
    assert target.read_bytes() == b"first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["take.wav"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "model.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_output(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("the writer failed")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json"]


def test_a_writer_error_names_the_file_asked_for_not_the_temporary_one(tmp_path: Path) -> None:
    target = tmp_path / "pair.wav"
    with pytest.raises(
        AmpcapError, match=r"disk is full: could not write \S*pair\.wav\."
    ) as caught:
        with atomic_output(target) as tmp:
            # What a streaming writer (WavStreamWriter) raises when the disk fills up.
            full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            raise write_error(tmp, full, "nothing partial is kept") from full
    assert ".tmp" not in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_a_hard_link_to_an_input_is_that_input(tmp_path: Path) -> None:
    source = tmp_path / "di.wav"
    source.write_bytes(b"RIFF")
    alias = tmp_path / "alias.wav"
    os.link(source, alias)
    with pytest.raises(OutputRefused, match="an input of this command"):
        check_output_file(alias, (source,), option="OUT.wav")
    check_output_file(tmp_path / "other.wav", (source,), option="OUT.wav")


def test_a_second_lock_is_refused_naming_the_holder_and_the_first_leaves_nothing(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "runs" / "r"
    with folder_lock(folder, "train"):
        assert (folder / LOCK_NAME).read_text() == f"{os.getpid()} train\n"
        assert not holds_files(folder)
        with pytest.raises(OutputRefused, match=rf"another ampcap train \(PID {os.getpid()}\)"):
            with folder_lock(folder, "export"):
                pass
    # The lock created the folder, which stayed empty: both are gone.
    assert not folder.exists() and (tmp_path / "runs").is_dir()
    with folder_lock(folder, "train"):
        (folder / "run.json").write_text("{}")
    assert sorted(p.name for p in folder.iterdir()) == ["run.json"]
