"""The names of a store directory's files (see similarity.index.store for the layout) and
``scan``, which lists them: the current generation, its deltas, stale files and temp files."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from similarity.errors import MatrixError

TEMP_PREFIX = ".w-"
TEMP_SUFFIX = ".tmp"
LOCK_NAME = ".lock"
#: Attempts of an operation that races other processes (a compaction, a cleanup).
RETRIES = 8

BASE_RE = re.compile(r"^base-(\d{8})\.npz$")
VECTORS_RE = re.compile(r"^base-(\d{8})-[0-9a-f]{12}\.vectors\.npy$")
LOW_RE = re.compile(r"^base-(\d{8})-[0-9a-f]{12}\.low\.npy$")
DELTA_RE = re.compile(r"^delta-(\d{8})-(\d{8})\.npz$")

T = TypeVar("T")


def base_path(directory: Path, gen: int) -> Path:
    return directory / f"base-{gen:08d}.npz"


def delta_path(directory: Path, gen: int, seq: int) -> Path:
    return directory / f"delta-{gen:08d}-{seq:08d}.npz"


def base_npy_name(gen: int, kind: str) -> str:
    """A new name for one of base ``gen``'s .npy files (``kind``: "vectors" or "low")."""
    return f"base-{gen:08d}-{uuid.uuid4().hex[:12]}.{kind}.npy"


class DeltaPaths(Mapping[int, Path]):
    """Delta paths by sequence number, made on access: a directory holds up to hundreds of
    deltas and a writer lists it several times a task (profiled: building a ``Path`` per
    entry took 45 ms of a 300 ms index task at N = 10,000)."""

    def __init__(self, directory: str, names: dict[int, str]) -> None:
        self._directory = directory
        self._names = names

    def __getitem__(self, seq: int) -> Path:
        return Path(self._directory, self._names[seq])

    def __iter__(self) -> Iterator[int]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


@dataclass
class Listing:
    generation: int = 0
    deltas: Mapping[int, Path] = field(default_factory=dict)
    stale: list[Path] = field(default_factory=list)
    temps: list[Path] = field(default_factory=list)


def scan(directory: Path) -> Listing:
    folder = str(directory)
    bases: dict[int, str] = {}
    deltas: dict[int, dict[int, str]] = {}
    vector_files: list[tuple[int, str]] = []
    temps: list[Path] = []
    for name in os.listdir(folder):  # noqa: PTH208 - names only: iterdir builds a Path each
        if name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX):
            temps.append(Path(folder, name))
        elif m := BASE_RE.match(name):
            bases[int(m.group(1))] = name
        elif m := DELTA_RE.match(name):
            deltas.setdefault(int(m.group(1)), {})[int(m.group(2))] = name
        elif m := VECTORS_RE.match(name) or LOW_RE.match(name):
            vector_files.append((int(m.group(1)), name))
    gen = max(bases, default=0)
    stale = [n for g, n in bases.items() if g < gen]
    stale += [n for g, d in deltas.items() if g < gen for n in d.values()]
    stale += [n for g, n in vector_files if g < gen]
    return Listing(generation=gen, deltas=DeltaPaths(folder, deltas.get(gen, {})),
                   stale=[Path(folder, n) for n in stale], temps=temps)


def retry_while_changing(attempt: Callable[[], T], directory: Path, doing: str) -> T:
    """``attempt()``, listed and read again while a concurrent compaction deletes what it
    listed (FileNotFoundError), up to ``RETRIES`` times."""
    for _ in range(RETRIES):
        try:
            return attempt()
        except FileNotFoundError:
            continue
    raise MatrixError(f"{directory} kept changing while {doing}; try again")
