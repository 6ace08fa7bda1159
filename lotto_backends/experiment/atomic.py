"""Atomic file writes: a file is written to a temporary name in its own folder and moved
into place with ``os.replace``, so a run killed at any moment leaves either the old file
or the new one, never a torn one.
"""

from __future__ import annotations

import os
import pathlib
import tempfile
from collections.abc import Callable
from typing import IO

__all__ = ["TEMP_PREFIX", "remove_stale_temporaries", "write_atomic", "write_bytes_atomic", "write_text_atomic"]

TEMP_PREFIX = ".lotto-tmp-"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: pathlib.Path, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, flush it to disk, then
    move it onto ``path``; on any failure the temporary file is removed."""
    fd, temp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            os.fchmod(file.fileno(), 0o666 & ~_umask())  # an ordinary new file's permissions, not mkstemp's 0600
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        pathlib.Path(temp).unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: pathlib.Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""

    def write(file: IO[bytes]) -> None:
        file.write(data)

    write_atomic(path, write)


def write_text_atomic(path: pathlib.Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    write_bytes_atomic(path, text.encode())


def remove_stale_temporaries(folder: pathlib.Path) -> None:
    """Remove the temporary files that a killed run left in ``folder``."""
    for stale in folder.glob(TEMP_PREFIX + "*"):
        stale.unlink(missing_ok=True)
