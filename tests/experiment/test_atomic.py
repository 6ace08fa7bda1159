"""Atomic writes: a write that fails half-way leaves the old file and no temporary."""

from __future__ import annotations

import os

import pytest

from lotto_backends.experiment.atomic import TEMP_PREFIX, remove_stale_temporaries, write_atomic, write_text_atomic


def test_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "state.pt"
    write_text_atomic(path, "old")

    def half_then_fail(file):
        file.write(b"new but torn")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(path, half_then_fail)
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["state.pt"]


def test_written_files_have_ordinary_permissions(tmp_path):
    path = tmp_path / "results.json"
    write_text_atomic(path, "{}")
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_stale_temporaries_are_removed(tmp_path):
    (tmp_path / f"{TEMP_PREFIX}abc").write_bytes(b"left by a killed run")
    (tmp_path / "results.json").write_text("{}")
    remove_stale_temporaries(tmp_path)
    assert os.listdir(tmp_path) == ["results.json"]
