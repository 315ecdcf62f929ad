"""What a store's files hold: the format version, the arrays of a base and of a delta, reading
them (``allow_pickle=False``; read errors become ``MatrixError``) and checking their scalars,
the meta a base is compared with, and writing a float32 .npy from row blocks."""

from __future__ import annotations

import contextlib
import dataclasses
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO

import numpy as np

from similarity.errors import MatrixError, StaleMatrixError
from similarity.index.layout import NeighbourIndex
from similarity.index.store_settings import MatrixMeta

FORMAT_VERSION = 1
OPS = ("upsert", "remove", "seal")

BASE_KEYS = (
    "format", "generation", "weights_sha256", "policy", "metric", "k", "dim",
    "ids", "vectors", "distances", "nbr_ids", "nbr_dist",
)
META_KEYS = BASE_KEYS[:7]
TOPK_BASE_KEYS = (*META_KEYS, "layout", "vectors_file", "ids", "sq", "nbr_ids", "nbr_dist")
# Present in a top-k base whose scans are pruned.
LOW_KEYS = ("low_file", "basis_mean", "basis_axes")
DELTA_KEYS = ("format", "generation", "seq", "op", "ids", "vectors")
# A top-k delta also logs the lists the operation wrote, so replaying never recomputes.
LIST_KEYS = ("changed", "list_ids", "list_nbr_ids", "list_nbr_dist")


@contextlib.contextmanager
def open_npz(path: Path) -> Iterator[np.lib.npyio.NpzFile]:
    """``np.load(path, allow_pickle=False)`` of an .npz; read errors become MatrixErrors.

    FileNotFoundError from opening passes through (a concurrent compaction removed the
    file: the caller lists the directory again).
    """
    try:
        z = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise MatrixError(f"cannot read {path}: {e}") from e
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise MatrixError(f"{path.name} is not an .npz archive")
    try:
        with z:
            yield z
    except MatrixError:
        raise
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as e:
        raise MatrixError(f"cannot read {path}: {e}") from e


def members(z: np.lib.npyio.NpzFile, path: Path, keys: Sequence[str]) -> dict[str, np.ndarray]:
    missing = [k for k in keys if k not in z.files]
    if missing:
        raise MatrixError(f"{path.name} is not a matrix file: missing {missing}")
    return {k: z[k] for k in keys}


def read_npz(path: Path, keys: Sequence[str]) -> dict[str, np.ndarray]:
    """Read the named arrays of an .npz (see ``open_npz`` for errors)."""
    with open_npz(path) as z:
        return members(z, path, keys)


@contextlib.contextmanager
def open_distances(npz: np.lib.npyio.NpzFile, path: Path, n: int) -> Iterator[IO[bytes]]:
    """The base's ``distances.npy`` member, positioned after its header (checked: C-order
    float32 n x n)."""
    if "distances" not in npz.files or npz.zip is None:
        raise MatrixError(f"{path.name} is not a matrix file: missing ['distances']")
    with npz.zip.open("distances.npy") as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise MatrixError(f"{path.name}: unsupported .npy version {version}")
        if dtype != np.dtype("<f4") or fortran or shape != (n, n):
            raise MatrixError(
                f"{path.name}: distances must be C-order float32 ({n}, {n}), got "
                f"{dtype} {shape}{' Fortran order' if fortran else ''}"
            )
        yield f


def write_npy(f: BinaryIO, shape: tuple[int, int], blocks: Iterable[np.ndarray]) -> None:
    """An uncompressed C-order float32 .npy of ``shape`` from row blocks (never one copy)."""
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype("<f4")), "fortran_order": False,
              "shape": shape}
    np.lib.format.write_array_header_1_0(f, header)
    rows = 0
    for block in blocks:
        f.write(np.ascontiguousarray(block, "<f4").tobytes())
        rows += block.shape[0]
    if rows != shape[0]:
        raise MatrixError(f"wrote {rows} vector rows, expected {shape[0]}")


def text_scalar(arr: np.ndarray, what: str) -> str:
    if arr.ndim != 0 or arr.dtype.kind != "U":
        raise MatrixError(f"{what} must be a fixed-width unicode scalar, got {arr.dtype}")
    return str(arr[()])


def int_scalar(arr: np.ndarray, what: str) -> int:
    if arr.ndim != 0 or arr.dtype.kind not in "iu":
        raise MatrixError(f"{what} must be an integer scalar, got {arr.dtype} {arr.shape}")
    return int(arr[()])


def unicode_scalar(text: str) -> np.ndarray:
    return np.array(text, dtype=f"<U{max(1, len(text))}")


_layouts: dict[tuple[str, int, int, int], str] = {}
_LAYOUTS_CACHED = 1024  # bases whose layout is kept: one per category's store


def base_layout(path: Path) -> str:
    """A base's ``layout`` member, cached by the file's identity: a published base never
    changes (a new one gets a new generation), and every task asks (with lists inside
    categories, for every category's store)."""
    st = path.stat()
    key = (str(path), st.st_ino, st.st_size, st.st_mtime_ns)
    layout = _layouts.get(key)
    if layout is None:
        with open_npz(path) as npz:
            layout = text_scalar(npz["layout"], "layout") if "layout" in npz.files else "dense"
        if len(_layouts) >= _LAYOUTS_CACHED:
            _layouts.clear()
        _layouts[key] = layout
    return layout


@dataclass(frozen=True)
class BaseMeta:
    """The meta a base holds (``read``) or that a store expects (``expected``)."""

    format: int
    weights: str
    policy: str
    metric: str
    dim: int

    @classmethod
    def read(cls, z: dict[str, np.ndarray]) -> BaseMeta:
        metric, dim = text_scalar(z["metric"], "metric"), int_scalar(z["dim"], "dim")
        return cls(int_scalar(z["format"], "format"),
                   text_scalar(z["weights_sha256"], "weights_sha256"),
                   text_scalar(z["policy"], "policy"), metric, dim)

    @classmethod
    def expected(cls, meta: MatrixMeta, dim: int) -> BaseMeta:
        return cls(FORMAT_VERSION, meta.weights_sha256, meta.policy, meta.metric, dim)

    def differences(self, expected: BaseMeta) -> list[str]:
        """One "<field>: stored ..., expected ..." per field that differs."""
        names = [f.name for f in dataclasses.fields(self)]
        return [f"{name}: stored {getattr(self, name)!r}, expected {getattr(expected, name)!r}"
                for name in names if getattr(self, name) != getattr(expected, name)]


def meta_arrays(matrix: NeighbourIndex, gen: int, meta: MatrixMeta) -> dict[str, np.ndarray]:
    """The meta members of base ``gen`` of ``matrix``."""
    return {
        "format": np.array(FORMAT_VERSION, np.int64),
        "generation": np.array(gen, np.int64),
        "weights_sha256": unicode_scalar(meta.weights_sha256),
        "policy": unicode_scalar(meta.policy),
        "metric": unicode_scalar(matrix.metric),
        "k": np.array(matrix.k, np.int64),
        "dim": np.array(matrix.dim, np.int64),
        "layout": unicode_scalar(matrix.layout),
    }


def delta_arrays(gen: int, seq: int, op: str, ids: np.ndarray,
                 vecs: np.ndarray) -> dict[str, np.ndarray]:
    """The members every delta holds (a top-k delta adds ``LIST_KEYS``)."""
    return {
        "format": np.array(FORMAT_VERSION, np.int64),
        "generation": np.array(gen, np.int64),
        "seq": np.array(seq, np.int64),
        "op": unicode_scalar(op),
        "ids": np.ascontiguousarray(ids, np.int64),
        "vectors": np.ascontiguousarray(vecs, np.float32),
    }


def delta_op(z: dict[str, np.ndarray], path: Path, gen: int, seq: int) -> str:
    """The op of a delta's ``DELTA_KEYS``, once its format, generation and seq are checked."""
    op = text_scalar(z["op"], "op")
    fmt = int_scalar(z["format"], "format")
    if fmt != FORMAT_VERSION:
        raise StaleMatrixError(f"{path.name}: format stored {fmt}, expected {FORMAT_VERSION}")
    if (int_scalar(z["generation"], "generation"), int_scalar(z["seq"], "seq")) != (gen, seq):
        raise MatrixError(f"{path.name} does not hold generation {gen} seq {seq}")
    return op


def op_of(path: Path) -> str:
    """The op of the delta at ``path``, read alone."""
    return text_scalar(read_npz(path, ("op",))["op"], "op")
