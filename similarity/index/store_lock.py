"""The store's single-writer lock: an exclusive ``fcntl.flock`` on a file, optionally with a
timeout."""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from similarity.errors import MatrixError


@contextlib.contextmanager
def exclusive_flock(path: Path, *, timeout: float | None = None) -> Iterator[None]:
    """Hold an exclusive flock on ``path`` (created if missing) for the block; wait forever,
    or raise ``MatrixError`` after ``timeout`` seconds."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if timeout is None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        else:
            _flock_within(fd, path, timeout)
        yield
    finally:
        os.close(fd)


def _flock_within(fd: int, path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise MatrixError(
                    f"could not lock {path} within {timeout} s: another writer holds it"
                ) from None
            time.sleep(0.01)
