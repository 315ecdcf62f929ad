"""Persistence of an index (either layout) as ``.npz`` files: atomic, versioned, incremental.

Directory layout::

    base-GGGGGGGG.npz             full state of generation G and the meta (format, weights
                                  hash, policy, metric, k, dim, layout). Dense: ids, vectors,
                                  distances, top-k tables. Top-k: ids, squared norms, top-k
                                  tables and the name of its vectors file:
    base-GGGGGGGG-XXXXXXXXXXXX.vectors.npy
                                  (top-k) the base's float32 vectors, uncompressed, opened
                                  with ``mmap_mode="r"`` so processes share them through the
                                  page cache; written (or hard-linked from a distributed
                                  rebuild's input) before the .npz that names it
    base-GGGGGGGG-XXXXXXXXXXXX.low.npy
                                  (top-k, large enough bases) the rows' low coordinates in
                                  the base's basis (``basis_mean``, ``basis_axes`` in the
                                  .npz), float32, memory-mapped like the vectors: they prune
                                  every scan (similarity.index.prune)
    rebuild-XXXXXXXXXXXX/         a distributed rebuild's input (similarity.index.block_knn)
    delta-GGGGGGGG-SSSSSSSS.npz   one operation on top of base G, seq S = 1, 2, ...:
                                  op "upsert" (ids, vectors), "remove" (ids) or "seal"
    .w-XXXXXXXX.tmp               a file being written (removed by ``cleanup_temp``)
    .lock                         target of the optional ``lock()``

Loading takes the newest base and replays its deltas in seq order (dense: through the same
``DistanceMatrix`` methods; top-k: a delta also holds the lists its operation wrote, which
are written back, so a reader never recomputes and never re-reads the base's vectors);
deltas of other generations are ignored (and deleted as stale by the next write).
No base at all means an empty index (generation 0).

Every file is written to a temp file in the same directory (``np.savez`` given the open
file, never a name), flushed, fsynced, then published, and the directory is fsynced.
Deltas and bases are published with ``os.link`` (fails if the name exists) so two writers
that both read seq 41 cannot both write seq 42: the second gets ``ConcurrentWriterError``
(a ``MatrixError``) and must ``refresh`` and retry. Writers first ``refresh`` the matrix to
the newest state on disk, so sequential writers from different processes just work.

Compaction (``compact``, ``rebuild``, or automatically once a generation holds
``max_deltas`` deltas) first claims the next seq of the current generation with a "seal"
delta, so no writer can append to a generation that is being folded into a new base, then
publishes ``base-(G+1)``, then deletes the older files. A crash at any point leaves a
loadable state; a writer that finds a generation sealed without a newer base finishes the
compaction itself. A writer that managed to append to a generation after a newer base was
published (only possible once the seal was deleted) notices it, withdraws its delta and
raises ``ConcurrentWriterError``.

Fencing: a store given ``fence`` (a callable; the index writer passes its Redis lock's
check, see catalog.services.locking) calls it after a temp file is written and fsynced and
right before publishing it; if it raises, the temp file is removed and nothing is published,
so a writer whose distributed lock expired cannot add a file. ``similarity.failpoints`` names
that moment ``store.before_publish`` (crash tests pause and SIGKILL a writer there).

Everything is read with ``np.load(..., allow_pickle=False)`` and written with
``allow_pickle=False``: ids are int64, text is fixed-width unicode, no object arrays.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import tempfile
import time
import uuid
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, BinaryIO

import numpy as np

from similarity.atomic import fsync_dir
from similarity.errors import MatrixError, StaleMatrixError
from similarity.failpoints import failpoint
from similarity.index.block_knn import Block, merge_blocks, open_input, write_input
from similarity.index.dense import METRICS, DistanceMatrix
from similarity.index.layout import LAYOUTS, NeighbourIndex, to_topk
from similarity.index.prune import Basis
from similarity.index.topk import ListChange, TopKIndex
from similarity.model.spec import EMBEDDING_DIM

FORMAT_VERSION = 1
OPS = ("upsert", "remove", "seal")
TEMP_PREFIX = ".w-"
TEMP_SUFFIX = ".tmp"
LOCK_NAME = ".lock"

_BASE_RE = re.compile(r"^base-(\d{8})\.npz$")
_VECTORS_RE = re.compile(r"^base-(\d{8})-[0-9a-f]{12}\.vectors\.npy$")
_LOW_RE = re.compile(r"^base-(\d{8})-[0-9a-f]{12}\.low\.npy$")
_DELTA_RE = re.compile(r"^delta-(\d{8})-(\d{8})\.npz$")
_RETRIES = 8
_BASE_KEYS = (
    "format", "generation", "weights_sha256", "policy", "metric", "k", "dim",
    "ids", "vectors", "distances", "nbr_ids", "nbr_dist",
)
_TOPK_BASE_KEYS = (
    *_BASE_KEYS[:7], "layout", "vectors_file", "ids", "sq", "nbr_ids", "nbr_dist",
)
# Present in a top-k base whose scans are pruned.
_LOW_KEYS = ("low_file", "basis_mean", "basis_axes")
_DELTA_KEYS = ("format", "generation", "seq", "op", "ids", "vectors")
# A top-k delta also logs the lists the operation wrote, so replaying never recomputes.
_LIST_KEYS = ("changed", "list_ids", "list_nbr_ids", "list_nbr_dist")
_VECTOR_BLOCK = 65_536


class ConcurrentWriterError(MatrixError):
    """Another process wrote the file this writer meant to write: refresh and retry."""


@dataclass(frozen=True)
class MatrixMeta:
    """What a stored matrix was computed with; a mismatch makes it stale."""

    weights_sha256: str
    policy: str
    metric: str

    def __post_init__(self) -> None:
        for name in ("weights_sha256", "policy", "metric"):
            if not isinstance(getattr(self, name), str):
                raise MatrixError(f"MatrixMeta.{name} must be a str")
        if self.metric not in METRICS:
            raise MatrixError(f"MatrixMeta.metric must be one of {METRICS}, got {self.metric!r}")


class _Deltas(Mapping[int, Path]):
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
class _Listing:
    generation: int = 0
    deltas: Mapping[int, Path] = field(default_factory=dict)
    stale: list[Path] = field(default_factory=list)
    temps: list[Path] = field(default_factory=list)


def _scan(directory: Path) -> _Listing:
    folder = str(directory)
    bases: dict[int, str] = {}
    deltas: dict[int, dict[int, str]] = {}
    vector_files: list[tuple[int, str]] = []
    temps: list[Path] = []
    for name in os.listdir(folder):  # noqa: PTH208 - names only: iterdir builds a Path each
        if name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX):
            temps.append(Path(folder, name))
        elif m := _BASE_RE.match(name):
            bases[int(m.group(1))] = name
        elif m := _DELTA_RE.match(name):
            deltas.setdefault(int(m.group(1)), {})[int(m.group(2))] = name
        elif m := _VECTORS_RE.match(name) or _LOW_RE.match(name):
            vector_files.append((int(m.group(1)), name))
    gen = max(bases, default=0)
    stale = [n for g, n in bases.items() if g < gen]
    stale += [n for g, d in deltas.items() if g < gen for n in d.values()]
    stale += [n for g, n in vector_files if g < gen]
    return _Listing(generation=gen, deltas=_Deltas(folder, deltas.get(gen, {})),
                    stale=[Path(folder, n) for n in stale], temps=temps)


_layouts: dict[tuple[str, int, int, int], str] = {}


def _base_layout(path: Path) -> str:
    """A base's ``layout`` member, cached by the file's identity: a published base never
    changes (a new one gets a new generation), and every task asks."""
    st = path.stat()
    key = (str(path), st.st_ino, st.st_size, st.st_mtime_ns)
    layout = _layouts.get(key)
    if layout is None:
        with _open_npz(path) as npz:
            layout = _text(npz["layout"], "layout") if "layout" in npz.files else "dense"
        _layouts.clear()
        _layouts[key] = layout
    return layout


@contextlib.contextmanager
def _open_npz(path: Path) -> Iterator[np.lib.npyio.NpzFile]:
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


def _members(z: np.lib.npyio.NpzFile, path: Path, keys: Sequence[str]) -> dict[str, np.ndarray]:
    missing = [k for k in keys if k not in z.files]
    if missing:
        raise MatrixError(f"{path.name} is not a matrix file: missing {missing}")
    return {k: z[k] for k in keys}


def _read_npz(path: Path, keys: Sequence[str]) -> dict[str, np.ndarray]:
    """Read the named arrays of an .npz (see ``_open_npz`` for errors)."""
    with _open_npz(path) as z:
        return _members(z, path, keys)


@contextlib.contextmanager
def _open_distances(npz: np.lib.npyio.NpzFile, path: Path, n: int) -> Iterator[IO[bytes]]:
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


def _write_npy(f: BinaryIO, shape: tuple[int, int], blocks: Iterable[np.ndarray]) -> None:
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


def _text(arr: np.ndarray, what: str) -> str:
    if arr.ndim != 0 or arr.dtype.kind != "U":
        raise MatrixError(f"{what} must be a fixed-width unicode scalar, got {arr.dtype}")
    return str(arr[()])


def _int(arr: np.ndarray, what: str) -> int:
    if arr.ndim != 0 or arr.dtype.kind not in "iu":
        raise MatrixError(f"{what} must be an integer scalar, got {arr.dtype} {arr.shape}")
    return int(arr[()])


def _unicode(text: str) -> np.ndarray:
    return np.array(text, dtype=f"<U{max(1, len(text))}")


class MatrixStore:
    """A directory holding one persisted ``DistanceMatrix`` (see the module docstring)."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        meta: MatrixMeta,
        k: int = 10,
        max_items: int = 20_000,
        dim: int = EMBEDDING_DIM,
        max_deltas: int = 500,
        fence: Callable[[], None] | None = None,
        layout: str = "dense",
        engine: str = "numpy",
    ) -> None:
        if max_deltas < 1:
            raise MatrixError(f"max_deltas must be >= 1, got {max_deltas}")
        if layout not in LAYOUTS:
            raise MatrixError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        #: Layout of what ``rebuild`` builds and of an empty store; a stored base keeps its
        #: own layout until ``convert`` (see similarity.index.layout).
        self.layout = layout
        #: Ranking engine of the top-k layout's full scans: "numpy" or "faiss".
        self.engine = engine
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.meta = meta
        self.k = k
        self.max_items = max_items
        self.dim = dim
        self.max_deltas = max_deltas
        #: Called right before every file is published; raises to refuse the write (a writer
        #: whose distributed lock expired: see catalog.services.locking). None: no check.
        self.fence = fence

    def __repr__(self) -> str:
        return f"MatrixStore({str(self.directory)!r}, meta={self.meta!r})"

    def _base_path(self, gen: int) -> Path:
        return self.directory / f"base-{gen:08d}.npz"

    def _delta_path(self, gen: int, seq: int) -> Path:
        return self.directory / f"delta-{gen:08d}-{seq:08d}.npz"

    # ------------------------------------------------------------------ reading

    def load(self, *, allow_stale: bool = False) -> NeighbourIndex:
        """The newest state on disk (an empty matrix when there is none).

        Raises StaleMatrixError when the stored weights, policy, metric, format or dim differ
        from this store's; ``allow_stale=True`` loads anyway (for inspection only).
        """
        for _ in range(_RETRIES):
            try:
                return self._load_listing(_scan(self.directory), allow_stale=allow_stale)
            except FileNotFoundError:
                continue  # a concurrent compaction deleted what we listed: list again
        raise MatrixError(f"{self.directory} kept changing while loading; try again")

    def _empty(self) -> NeighbourIndex:
        if self.layout == "topk":
            return TopKIndex(dim=self.dim, metric=self.meta.metric, k=self.k, engine=self.engine)
        return DistanceMatrix(dim=self.dim, metric=self.meta.metric, k=self.k,
                              max_items=self.max_items)

    def _load_listing(self, listing: _Listing, *, allow_stale: bool) -> NeighbourIndex:
        gen = listing.generation
        if gen == 0:
            matrix = self._empty()
        else:
            matrix = self._read_base(self._base_path(gen), gen, allow_stale=allow_stale)
        matrix.version = (gen, 0)
        matrix.sealed = False
        self._replay(matrix, listing)
        return matrix

    def _read_base(self, path: Path, gen: int, *, allow_stale: bool) -> NeighbourIndex:
        with _open_npz(path) as npz:
            if "layout" in npz.files and _text(npz["layout"], "layout") == "topk":
                keys = _TOPK_BASE_KEYS + (_LOW_KEYS if "low_file" in npz.files else ())
                return self._read_topk_base(_members(npz, path, keys), path, gen,
                                            allow_stale=allow_stale)
            z = _members(npz, path, [key for key in _BASE_KEYS if key != "distances"])
            metric, dim = self._check_base(z, path, gen, allow_stale=allow_stale)
            n = z["ids"].shape[0]
            # Stream the N x N block straight into the matrix's storage (no second copy).
            with _open_distances(npz, path, n) as f:
                try:
                    return DistanceMatrix.from_arrays(
                        z["ids"], z["vectors"], f, z["nbr_ids"], z["nbr_dist"],
                        metric=metric, k=self.k, max_items=self.max_items, dim=dim,
                    )
                except MatrixError as e:
                    raise MatrixError(f"{path.name}: {e}") from e

    def _read_topk_base(self, z: dict[str, np.ndarray], path: Path, gen: int, *,
                        allow_stale: bool) -> TopKIndex:
        """A top-k base: small arrays from the .npz, vectors memory-mapped from the .npy."""
        metric, dim = self._check_base(z, path, gen, allow_stale=allow_stale)
        vectors = self._map_base_file(z, "vectors_file", _VECTORS_RE, path, gen)
        low, basis = None, None
        if "low_file" in z:
            low = self._map_base_file(z, "low_file", _LOW_RE, path, gen)
            basis = Basis(z["basis_mean"].astype(np.float64), z["basis_axes"].astype(np.float64))
        try:
            return TopKIndex.from_arrays(z["ids"], vectors, z["nbr_ids"], z["nbr_dist"],
                                         sq=z["sq"], metric=metric, k=self.k, dim=dim,
                                         engine=self.engine, low=low, basis=basis)
        except MatrixError as e:
            raise MatrixError(f"{path.name}: {e}") from e

    def _map_base_file(self, z: dict[str, np.ndarray], key: str, pattern: re.Pattern[str],
                       path: Path, gen: int) -> np.ndarray:
        """The .npy a base names under ``key``, opened with ``mmap_mode="r"``."""
        name = _text(z[key], key)
        if not pattern.match(name) or not name.startswith(f"base-{gen:08d}-"):
            raise MatrixError(f"{path.name}: bad {key} name {name!r}")
        try:
            return np.load(self.directory / name, mmap_mode="r", allow_pickle=False)
        except FileNotFoundError:
            raise
        except (OSError, ValueError) as e:
            raise MatrixError(f"cannot read {name}: {e}") from e

    def _check_base(self, z: dict[str, np.ndarray], path: Path, gen: int, *,
                    allow_stale: bool) -> tuple[str, int]:
        """Compare a base's meta with this store's; returns its (metric, dim)."""
        metric, dim = _text(z["metric"], "metric"), _int(z["dim"], "dim")
        stored = {
            "format": _int(z["format"], "format"),
            "weights": _text(z["weights_sha256"], "weights_sha256"),
            "policy": _text(z["policy"], "policy"),
            "metric": metric,
            "dim": dim,
        }
        expected = {
            "format": FORMAT_VERSION,
            "weights": self.meta.weights_sha256,
            "policy": self.meta.policy,
            "metric": self.meta.metric,
            "dim": self.dim,
        }
        diffs = [f"{key}: stored {stored[key]!r}, expected {expected[key]!r}"
                 for key in expected if stored[key] != expected[key]]
        if diffs and not allow_stale:
            raise StaleMatrixError(
                f"the matrix in {self.directory} is stale ({'; '.join(diffs)}): rebuild it"
            )
        if _int(z["generation"], "generation") != gen:
            raise MatrixError(f"{path.name} holds generation {int(z['generation'])}")
        if metric not in METRICS:
            raise MatrixError(f"{path.name}: unknown metric {metric!r}")
        return metric, dim

    def _replay(self, matrix: NeighbourIndex, listing: _Listing) -> set[int]:
        """Apply the deltas newer than the matrix's seq, in order; union of changed sets."""
        assert matrix.version is not None
        gen, seq = matrix.version
        changed: set[int] = set()
        for s in sorted(x for x in listing.deltas if x > seq):
            if s != seq + 1:
                raise MatrixError(
                    f"{self.directory}: delta seq {seq + 1} of generation {gen} is missing "
                    f"(found {s}); the directory was altered"
                )
            changed |= self._apply_delta(matrix, listing.deltas[s], gen, s)
            seq = s
        return changed

    def _apply_delta(self, matrix: NeighbourIndex, path: Path, gen: int, seq: int) -> set[int]:
        z = _read_npz(path, _DELTA_KEYS)
        op = _text(z["op"], "op")
        fmt = _int(z["format"], "format")
        if fmt != FORMAT_VERSION:
            raise StaleMatrixError(f"{path.name}: format stored {fmt}, expected {FORMAT_VERSION}")
        if (_int(z["generation"], "generation"), _int(z["seq"], "seq")) != (gen, seq):
            raise MatrixError(f"{path.name} does not hold generation {gen} seq {seq}")
        try:
            if isinstance(matrix, TopKIndex):
                changed = self._replay_topk(matrix, path, op, z)
            elif op == "upsert":
                ids, vecs = matrix.plan_upsert(z["ids"], z["vectors"])
                changed = matrix.apply_upsert(ids, vecs)
            elif op == "remove":
                changed = matrix.remove(z["ids"])
            elif op == "seal":
                changed = set()
            else:
                raise MatrixError(f"unknown op {op!r}")
        except MatrixError as e:
            raise type(e)(f"replaying {path.name}: {e}") from e
        matrix.version = (gen, seq)
        matrix.sealed = op == "seal"
        return changed

    @staticmethod
    def _replay_topk(index: TopKIndex, path: Path, op: str, z: dict[str, np.ndarray]) -> set[int]:
        """Row changes, then the logged lists: no distance is computed."""
        if op == "seal":
            return set()
        if op not in ("upsert", "remove"):
            raise MatrixError(f"unknown op {op!r}")
        lists = _read_npz(path, _LIST_KEYS)
        index.apply_vectors(op, z["ids"], z["vectors"])
        index.apply_lists(ListChange(lists["list_ids"], lists["list_nbr_ids"],
                                     lists["list_nbr_dist"]))
        return set(lists["changed"].tolist())

    def _op_of(self, path: Path) -> str:
        return _text(_read_npz(path, ("op",))["op"], "op")

    def refresh(self, matrix: NeighbourIndex) -> set[int]:
        """Bring ``matrix`` (in place) to the newest state on disk.

        Applies the deltas other processes wrote since, or reloads when the generation
        changed. Returns the products whose lists may have changed (on a reload, every
        product before and after).
        """
        self._check_matrix(matrix)
        if matrix.version is None and len(matrix):
            raise MatrixError(
                f"this matrix was not loaded from {self.directory}: use MatrixStore.load() "
                "or MatrixStore.rebuild()"
            )
        for _ in range(_RETRIES):
            try:
                listing = _scan(self.directory)
                version = matrix.version
                if (
                    version is None
                    or version[0] != listing.generation
                    or version[1] > max(listing.deltas, default=0)
                ):
                    fresh = self._load_listing(listing, allow_stale=False)
                    changed = set(matrix.ids.tolist()) | set(fresh.ids.tolist())
                    matrix.replace_state(fresh)
                    return changed
                return self._replay(matrix, listing)
            except FileNotFoundError:
                continue
        raise MatrixError(f"{self.directory} kept changing while refreshing; try again")

    def _check_matrix(self, matrix: NeighbourIndex) -> None:
        if matrix.metric != self.meta.metric or matrix.dim != self.dim:
            raise StaleMatrixError(
                f"matrix has metric {matrix.metric!r} and dim {matrix.dim}, the store expects "
                f"{self.meta.metric!r} and {self.dim}"
            )

    # ------------------------------------------------------------------ writing

    def upsert(self, matrix: NeighbourIndex, ids: Sequence[int] | np.ndarray,
               vectors: Any) -> set[int]:
        """Durably log an upsert, then apply it to ``matrix``; returns the changed set.

        A no-op (nothing new, identical vectors) writes nothing and returns an empty set.
        """
        self.refresh(matrix)
        ids_arr, vecs = matrix.plan_upsert(ids, vectors)
        if ids_arr.size == 0:
            return set()
        return self._write(matrix, "upsert", ids_arr, vecs,
                           lambda: matrix.apply_upsert(ids_arr, vecs))

    def remove(self, matrix: NeighbourIndex, ids: Iterable[int] | np.ndarray) -> set[int]:
        """Durably log a removal, then apply it; unknown ids are ignored (no write)."""
        self.refresh(matrix)
        present = matrix.plan_remove(ids)
        if present.size == 0:
            return set()
        return self._write(matrix, "remove", present, np.empty((0, self.dim), np.float32),
                           lambda: matrix.apply_remove(present))

    def _write(self, matrix: NeighbourIndex, op: str, ids: np.ndarray, vecs: np.ndarray,
               apply: Callable[[], set[int]]) -> set[int]:
        """Log and apply one operation.

        Dense: log, then apply (replaying recomputes). Top-k: apply, then log the lists it
        wrote with it. Either way a failure after the first step leaves the object marked
        for a reload from disk on its next use.
        """
        self._ready_to_log(matrix)
        if isinstance(matrix, TopKIndex):
            try:
                changed = apply()
                self._log(matrix, op, ids, vecs, self._list_arrays(matrix, changed))
            except BaseException:
                matrix.version = (-1, -1)
                raise
            return changed
        self._log(matrix, op, ids, vecs, {})
        try:
            return apply()
        except BaseException:
            matrix.version = (-1, -1)  # the op is durable but not applied in memory
            raise

    @staticmethod
    def _list_arrays(index: TopKIndex, changed: set[int]) -> dict[str, np.ndarray]:
        assert index.last_change is not None
        lists = index.last_change
        return {"changed": np.array(sorted(changed), np.int64), "list_ids": lists.ids,
                "list_nbr_ids": lists.nbr_ids, "list_nbr_dist": lists.nbr_dist}

    def _ready_to_log(self, matrix: NeighbourIndex) -> None:
        """Compact first when the generation is empty, sealed or full of deltas."""
        assert matrix.version is not None
        self._housekeeping()
        gen, seq = matrix.version
        if gen == 0 or matrix.sealed or seq >= self.max_deltas:
            self._compact_current(matrix)

    def _log(self, matrix: NeighbourIndex, op: str, ids: np.ndarray, vecs: np.ndarray,
             extra: dict[str, np.ndarray]) -> None:
        assert matrix.version is not None
        gen, seq = matrix.version
        path = self._delta_path(gen, seq + 1)
        arrays = {**self._delta_arrays(gen, seq + 1, op, ids, vecs), **extra}
        self._publish(path, arrays, exclusive=True)
        self._check_not_superseded(path, gen)
        matrix.version = (gen, seq + 1)
        matrix.sealed = False

    def _delta_arrays(self, gen: int, seq: int, op: str, ids: np.ndarray,
                      vecs: np.ndarray) -> dict[str, np.ndarray]:
        return {
            "format": np.array(FORMAT_VERSION, np.int64),
            "generation": np.array(gen, np.int64),
            "seq": np.array(seq, np.int64),
            "op": _unicode(op),
            "ids": np.ascontiguousarray(ids, np.int64),
            "vectors": np.ascontiguousarray(vecs, np.float32),
        }

    def _meta_arrays(self, matrix: NeighbourIndex, gen: int) -> dict[str, np.ndarray]:
        return {
            "format": np.array(FORMAT_VERSION, np.int64),
            "generation": np.array(gen, np.int64),
            "weights_sha256": _unicode(self.meta.weights_sha256),
            "policy": _unicode(self.meta.policy),
            "metric": _unicode(matrix.metric),
            "k": np.array(matrix.k, np.int64),
            "dim": np.array(matrix.dim, np.int64),
            "layout": _unicode(matrix.layout),
        }

    def _publish_base(self, matrix: NeighbourIndex, gen: int,
                      vectors_from: Path | None = None) -> None:
        """Publish ``base-gen`` (top-k: its vectors .npy first, written or hard-linked from
        ``vectors_from``; the .npz naming it is the commit point)."""
        ids, nbr_ids, nbr_dist = matrix.top_k_table()
        arrays = {**self._meta_arrays(matrix, gen), "ids": ids, "nbr_ids": nbr_ids,
                  "nbr_dist": nbr_dist}
        if isinstance(matrix, DistanceMatrix):
            arrays["vectors"] = matrix.vectors
            arrays["distances"] = matrix.distances  # a strided view: written in chunks
        else:
            assert isinstance(matrix, TopKIndex)
            name = f"base-{gen:08d}-{uuid.uuid4().hex[:12]}.vectors.npy"
            if vectors_from is None:
                self._publish_npy(name, (len(matrix), matrix.dim),
                                  matrix.vector_blocks(_VECTOR_BLOCK))
            else:
                self._link(vectors_from, self.directory / name)
            arrays["vectors_file"] = _unicode(name)
            arrays["sq"] = matrix.sq_norms
            arrays.update(self._publish_low(matrix, gen))
        self._publish(self._base_path(gen), arrays, exclusive=True)

    def _publish_npy(self, name: str, shape: tuple[int, int],
                     blocks: Iterable[np.ndarray]) -> None:
        self._publish_with(self.directory / name, lambda f: _write_npy(f, shape, blocks),
                           exclusive=True)

    def _publish_low(self, index: TopKIndex, gen: int) -> dict[str, np.ndarray]:
        """The base's low coordinates file (basis refitted on the live rows when needed);
        returns the arrays naming it, or none for an index too small to prune."""
        index.refit_for_base()
        basis = index.basis
        if basis is None:
            return {}
        name = f"base-{gen:08d}-{uuid.uuid4().hex[:12]}.low.npy"
        self._publish_npy(name, (len(index), basis.dims), index.low_blocks(_VECTOR_BLOCK))
        return {"low_file": _unicode(name), "basis_mean": basis.mean,
                "basis_axes": basis.axes}

    def _check_not_superseded(self, path: Path, gen: int) -> None:
        """After publishing into ``gen``: withdraw and fail if a newer base exists."""
        if _scan(self.directory).generation > gen:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            raise ConcurrentWriterError(
                f"concurrent writer: generation {gen} was compacted by another process while "
                f"{path.name} was written; refresh and retry"
            )

    def compact(self, matrix: NeighbourIndex) -> None:
        """Fold the current state into ``base-(G+1)`` and delete the older files."""
        self.refresh(matrix)
        self._housekeeping()
        self._compact_current(matrix)

    def _compact_current(self, matrix: NeighbourIndex) -> None:
        assert matrix.version is not None
        gen, seq = matrix.version
        if not matrix.sealed:
            seal = self._delta_path(gen, seq + 1)
            empty = np.empty((0, matrix.dim), np.float32)
            self._publish(seal, self._delta_arrays(gen, seq + 1, "seal",
                                                   np.empty(0, np.int64), empty), exclusive=True)
            self._check_not_superseded(seal, gen)
            matrix.version = (gen, seq + 1)
            matrix.sealed = True
        self._publish_base(matrix, gen + 1)
        matrix.version = (gen + 1, 0)
        matrix.sealed = False
        self._remove_stale()

    def rebuild(self, ids: Sequence[int] | np.ndarray, vectors: Any) -> NeighbourIndex:
        """Full build (in this store's ``layout``), published as a fresh generation."""
        if self.layout == "topk":
            matrix: NeighbourIndex = TopKIndex.build(ids, vectors, metric=self.meta.metric,
                                                     k=self.k, dim=self.dim, engine=self.engine)
        else:
            matrix = DistanceMatrix.build(ids, vectors, metric=self.meta.metric, k=self.k,
                                          max_items=self.max_items, dim=self.dim)
        return self.publish_generation(matrix)

    def convert(self, matrix: NeighbourIndex, layout: str) -> NeighbourIndex:
        """Publish ``matrix``'s current state in ``layout`` as a fresh generation and return
        it (dense to top-k takes the lists as they are; top-k to dense recomputes)."""
        self.refresh(matrix)
        if layout == "topk":
            target: NeighbourIndex = to_topk(matrix, engine=self.engine)
        elif layout == "dense":
            target = DistanceMatrix.build(matrix.ids, matrix.vectors, metric=matrix.metric,
                                          k=matrix.k, max_items=self.max_items, dim=matrix.dim)
        else:
            raise MatrixError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        return self.publish_generation(target)

    def rebuild_input(self, ids: Sequence[int] | np.ndarray, vectors: Any) -> Path:
        """Write a distributed rebuild's input in this store's directory (see
        similarity.index.block_knn); block workers call ``knn_block`` on the returned directory."""
        return write_input(self.directory, ids, vectors, dim=self.dim, metric=self.meta.metric)

    def publish_rebuild(self, input_dir: Path, blocks: Iterable[Block]) -> TopKIndex:
        """Merge the blocks of a distributed rebuild and publish them as the next generation
        (top-k layout, fenced); the input's vectors become the base's by a hard link."""
        index = open_input(input_dir, k=self.k, metric=self.meta.metric, engine=self.engine)
        ids = index.ids
        nbr_ids, nbr_dist = merge_blocks(ids, blocks, self.k)
        index.apply_lists(ListChange(ids, nbr_ids, nbr_dist))
        self.publish_generation(index, vectors_from=Path(input_dir) / "vectors.npy")
        return index

    def publish_generation(self, matrix: NeighbourIndex,
                           vectors_from: Path | None = None) -> NeighbourIndex:
        """Seal the current generation and publish ``matrix`` as the next one (fenced)."""
        empty = np.empty((0, self.dim), np.float32)
        for _ in range(_RETRIES):
            try:
                self._housekeeping()
                listing = _scan(self.directory)
                gen = listing.generation
                last = max(listing.deltas, default=0)
                if last == 0 or self._op_of(listing.deltas[last]) != "seal":
                    seal = self._delta_path(gen, last + 1)
                    self._publish(seal, self._delta_arrays(gen, last + 1, "seal",
                                                           np.empty(0, np.int64), empty),
                                  exclusive=True)
                    self._check_not_superseded(seal, gen)
                self._publish_base(matrix, gen + 1, vectors_from)
            except (ConcurrentWriterError, FileNotFoundError):
                continue
            matrix.version = (gen + 1, 0)
            matrix.sealed = False
            self._remove_stale()
            return matrix
        raise ConcurrentWriterError(
            f"concurrent writer: could not publish a rebuild in {self.directory} after "
            f"{_RETRIES} attempts"
        )

    # ------------------------------------------------------------------ files

    def _open_temp(self) -> tuple[Path, BinaryIO]:
        """A new temp file, exclusively flock'ed so ``cleanup_temp`` leaves it alone."""
        for _ in range(_RETRIES):
            fd, name = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX,
                                        dir=self.directory)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                # A cleanup may have removed the name between mkstemp and flock.
                if Path(name).stat().st_ino == os.fstat(fd).st_ino:
                    return Path(name), os.fdopen(fd, "wb")
            except (BlockingIOError, FileNotFoundError):
                pass
            os.close(fd)
        raise MatrixError(f"could not create a temporary file in {self.directory}")

    def _publish(self, path: Path, arrays: dict[str, np.ndarray], *, exclusive: bool) -> None:
        """Atomically write ``arrays`` to ``path`` (exclusive: fail if it exists)."""
        self._publish_with(path, lambda f: np.savez(f, allow_pickle=False, **arrays),
                           exclusive=exclusive)

    def _link(self, source: Path, path: Path) -> None:
        """Publish an existing durable file under a new name (fenced, no copy)."""
        try:
            failpoint("store.before_publish")
            if self.fence is not None:
                self.fence()
            os.link(source, path)
            fsync_dir(self.directory)
        except FileExistsError:
            raise ConcurrentWriterError(f"concurrent writer: {path.name} exists") from None
        except OSError as e:
            raise MatrixError(f"could not link {source} to {path}: {e}") from e

    def _publish_with(self, path: Path, write: Callable[[BinaryIO], None], *,
                      exclusive: bool) -> None:
        """Atomically publish what ``write`` writes as ``path`` (exclusive: fail if it
        exists): temp file, fsync, fence, link or replace, fsync the directory."""
        try:
            tmp, f = self._open_temp()
            with f:
                published = False
                try:
                    write(f)
                    f.flush()
                    os.fsync(f.fileno())
                    failpoint("store.before_publish")
                    if self.fence is not None:
                        self.fence()  # raises (and the temp file goes) if no longer the writer
                    if exclusive:
                        os.link(tmp, path)
                    else:
                        os.replace(tmp, path)
                    published = True
                finally:
                    if exclusive or not published:
                        with contextlib.suppress(FileNotFoundError):
                            tmp.unlink()
            fsync_dir(self.directory)
        except FileExistsError:
            raise ConcurrentWriterError(
                f"concurrent writer: {path.name} already exists, written by another process "
                "since this matrix was read; refresh and retry"
            ) from None
        except OSError as e:
            raise MatrixError(f"could not write {path}: {e}") from e

    def cleanup_temp(self) -> int:
        """Remove temp files left by crashed writers (not those a live writer holds)."""
        return self._cleanup_temps(_scan(self.directory).temps)

    @staticmethod
    def _cleanup_temps(temps: list[Path]) -> int:
        removed = 0
        for path in temps:
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if path.stat().st_ino == os.fstat(fd).st_ino:
                    path.unlink()
                    removed += 1
            except (BlockingIOError, FileNotFoundError):
                pass  # held by a live writer, or already gone
            finally:
                os.close(fd)
        return removed

    def _remove_stale(self) -> None:
        for path in _scan(self.directory).stale:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def _housekeeping(self) -> None:
        listing = _scan(self.directory)
        self._cleanup_temps(listing.temps)
        for path in listing.stale:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    @contextlib.contextmanager
    def lock(self, *, timeout: float | None = None) -> Iterator[None]:
        """Exclusive ``fcntl.flock`` on ``<dir>/.lock``: serialises writers on one host."""
        path = self.directory / LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if timeout is None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            else:
                deadline = time.monotonic() + timeout
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if time.monotonic() >= deadline:
                            raise MatrixError(
                                f"could not lock {path} within {timeout} s: another writer "
                                "holds it"
                            ) from None
                        time.sleep(0.01)
            yield
        finally:
            os.close(fd)

    # ------------------------------------------------------------------ inspection

    def stored_layout(self) -> str | None:
        """The layout of the newest base on disk (None without one), reading only its
        ``layout`` member: a web process decides how to search without loading anything."""
        for _ in range(_RETRIES):
            listing = _scan(self.directory)
            if not listing.generation:
                return None
            try:
                return _base_layout(self._base_path(listing.generation))
            except FileNotFoundError:
                continue  # compacted meanwhile: list again
        raise MatrixError(f"{self.directory} kept changing while reading; try again")

    @staticmethod
    def info(path: str | os.PathLike[str]) -> dict[str, Any]:
        """Summary of a store directory without loading the distances.

        Keys: directory, n (after replaying deltas), n_base, dim, k, metric, policy,
        weights_sha256, format, generation, seq (newest delta), deltas (count), bytes (current
        base + deltas), bytes_total (every file in the directory).
        """
        directory = Path(path)
        if not directory.is_dir():
            raise MatrixError(f"{directory} is not a directory")
        for _ in range(_RETRIES):
            try:
                return MatrixStore._info_once(directory)
            except FileNotFoundError:
                continue
        raise MatrixError(f"{directory} kept changing while reading; try again")

    @staticmethod
    def _info_once(directory: Path) -> dict[str, Any]:
        listing = _scan(directory)
        gen = listing.generation
        out: dict[str, Any] = {
            "directory": str(directory), "n": 0, "n_base": 0, "dim": None, "k": None,
            "metric": None, "policy": None, "weights_sha256": None, "format": None,
            "generation": gen, "seq": max(listing.deltas, default=0),
            "deltas": len(listing.deltas),
        }
        ids: set[int] = set()
        current = list(listing.deltas.values())
        if gen:
            base = directory / f"base-{gen:08d}.npz"
            current.append(base)
            z = _read_npz(base, (*_BASE_KEYS[:7], "ids"))
            ids = set(z["ids"].tolist())
            out.update(
                n_base=len(ids), dim=_int(z["dim"], "dim"), k=_int(z["k"], "k"),
                metric=_text(z["metric"], "metric"), policy=_text(z["policy"], "policy"),
                weights_sha256=_text(z["weights_sha256"], "weights_sha256"),
                format=_int(z["format"], "format"),
            )
        for s in sorted(listing.deltas):
            z = _read_npz(listing.deltas[s], ("op", "ids"))
            op = _text(z["op"], "op")
            if op == "upsert":
                ids.update(z["ids"].tolist())
            elif op == "remove":
                ids.difference_update(z["ids"].tolist())
        out["n"] = len(ids)
        out["bytes"] = sum(p.stat().st_size for p in current)
        total = 0
        with os.scandir(directory) as it:
            for entry in it:
                with contextlib.suppress(FileNotFoundError):
                    total += entry.stat().st_size
        out["bytes_total"] = total
        return out
