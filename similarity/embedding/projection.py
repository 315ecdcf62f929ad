"""Learned linear transforms of embeddings, fitted on a catalog: PCA whitening and class-aware
projections (within-class whitening, LDA). Pure numpy, no Django.

Every fitted transform is one :class:`LinearProjection`::

    z = (maybe_l2(x) - mean) @ matrix        then maybe_l2(z)

and distances are euclidean on ``z`` (with ``output_l2`` that ranks exactly like cosine).
A projection is data: :meth:`LinearProjection.to_dict` / :meth:`from_dict` store it next to
a distance matrix, and :attr:`LinearProjection.key` (a hash of its parameters) identifies
the vectors it produced, the way a preprocessing policy key does.

Fitters:

- :func:`fit_pca_whitening` (no labels): centre, keep the top ``dim`` principal axes, divide
  each by ``eigenvalue ** power`` (``power=0.5`` is full whitening, 0 plain PCA).
- :func:`fit_class_whitening` (labels): PCA to ``dim``, then whiten by the *within-class*
  covariance, shrunk towards a multiple of the identity by ``shrinkage`` (0 = no shrinkage,
  1 = isotropic, i.e. plain PCA). Directions along which garments of one category vary are
  damped; directions that separate categories keep their size. All ``dim`` dimensions are
  kept, so similarity inside a category still counts.
- :func:`fit_lda`: class whitening followed by the ``dim <= classes - 1`` directions along
  which the category means spread most (Fisher's linear discriminant).
- :func:`fit_blend`: the LDA space next to the plain cosine space (weighted), so that inside
  a category neighbours are still ordered by visual likeness.
- :func:`fit_robust_blend`: :func:`fit_blend` fitted on the catalog's vectors plus vectors of
  augmented views of the same garments (re-framed, tilted, other backgrounds, JPEG) with the
  garments' labels: what changes between views of one garment lands in the within-class
  covariance, so the LDA part learns to ignore it; optionally the visual half too is whitened
  by the within-garment covariance of the views.
- :func:`select_by_cross_validation`: pick a fitter's hyper-parameters by stratified k-fold
  inside the catalog only (held-out catalog items query the rest of it).
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from similarity.atomic import atomic_file

__all__ = [
    "BlendProjection",
    "LinearProjection",
    "cross_validated_precision",
    "fit_blend",
    "fit_class_whitening",
    "fit_lda",
    "fit_pca_whitening",
    "fit_robust_blend",
    "l2_normalise",
    "select_by_cross_validation",
    "stratified_folds",
]

_EPS = 1e-12


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (all-zero rows stay zero), float64."""
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norms, _EPS)


@dataclass(frozen=True, eq=False)
class LinearProjection:
    """A fitted affine map plus optional L2 normalisation before and after."""

    mean: np.ndarray  # (D,)
    matrix: np.ndarray  # (D, d)
    input_l2: bool = False
    output_l2: bool = False
    kind: str = "linear"
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        mean = np.asarray(self.mean, dtype=np.float64)
        matrix = np.asarray(self.matrix, dtype=np.float64)
        if mean.ndim != 1 or matrix.ndim != 2 or matrix.shape[0] != mean.shape[0]:
            raise ValueError(f"mean {mean.shape} and matrix {matrix.shape} do not fit together")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "matrix", matrix)
        object.__setattr__(self, "params", dict(self.params))

    @property
    def input_dim(self) -> int:
        return int(self.matrix.shape[0])

    @property
    def output_dim(self) -> int:
        return int(self.matrix.shape[1])

    def transform(self, x: np.ndarray) -> np.ndarray:
        """(N, D) or (D,) raw vectors to (N, d) or (d,) projected float64 vectors."""
        x = np.asarray(x, dtype=np.float64)
        if x.shape[-1] != self.input_dim:
            raise ValueError(f"expected vectors of dimension {self.input_dim}, got {x.shape[-1]}")
        if self.input_l2:
            x = l2_normalise(x)
        z = (x - self.mean) @ self.matrix
        return l2_normalise(z) if self.output_l2 else z

    __call__ = transform

    @property
    def key(self) -> str:
        """``<kind>-<16 hex digits>``: changes whenever anything that changes the output does."""
        digest = hashlib.sha256()
        digest.update(json.dumps(self._meta(), sort_keys=True).encode())
        digest.update(np.ascontiguousarray(self.mean, dtype="<f8").tobytes())
        digest.update(np.ascontiguousarray(self.matrix, dtype="<f8").tobytes())
        return f"{self.kind}-{digest.hexdigest()[:16]}"

    def _meta(self) -> dict[str, Any]:
        return {"kind": self.kind, "params": self.params, "input_l2": self.input_l2,
                "output_l2": self.output_l2, "shape": list(self.matrix.shape)}

    def to_dict(self) -> dict[str, Any]:
        """Arrays and metadata, e.g. for ``np.savez`` next to a matrix (see :meth:`from_dict`)."""
        return {**self._meta(), "mean": self.mean.copy(), "matrix": self.matrix.copy(), "key": self.key}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LinearProjection:
        proj = cls(mean=np.asarray(data["mean"]), matrix=np.asarray(data["matrix"]),
                   input_l2=bool(data.get("input_l2", False)),
                   output_l2=bool(data.get("output_l2", False)),
                   kind=str(data.get("kind", "linear")), params=dict(data.get("params", {})))
        if "key" in data and str(data["key"]) != proj.key:
            raise ValueError(f"projection data does not match its key {data['key']!r}")
        return proj


def _prepare(x: np.ndarray, input_l2: bool) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"need a 2-D array of at least 2 vectors, got shape {x.shape}")
    return l2_normalise(x) if input_l2 else x


def _pca(x: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, axes (D, dim), variances (dim,)) of the top ``dim`` principal axes.

    Each axis's sign is fixed (largest-magnitude coordinate positive) so that fitting is
    reproducible across LAPACK builds.
    """
    n, d_in = x.shape
    limit = min(n - 1, d_in)
    if not 1 <= dim <= limit:
        raise ValueError(f"dim must be between 1 and {limit} for {n} vectors of dimension {d_in}")
    mean = x.mean(axis=0)
    centred = x - mean
    if n >= d_in:  # eigen-decompose the smaller of the covariance and the Gram matrix
        evals, evecs = np.linalg.eigh(centred.T @ centred)
        order = np.argsort(evals)[::-1][:dim]
        axes, evals = evecs[:, order], evals[order]
    else:
        evals, evecs = np.linalg.eigh(centred @ centred.T)
        order = np.argsort(evals)[::-1][:dim]
        evals = np.maximum(evals[order], 0.0)
        axes = centred.T @ evecs[:, order] / np.sqrt(np.maximum(evals, _EPS))
    signs = np.sign(axes[np.abs(axes).argmax(axis=0), np.arange(dim)])
    axes = axes * np.where(signs == 0, 1.0, signs)
    return mean, axes, np.maximum(evals, 0.0) / (n - 1)


def fit_pca_whitening(x: np.ndarray, *, dim: int, power: float = 0.5, input_l2: bool = True,
                      output_l2: bool = True) -> LinearProjection:
    """PCA to ``dim`` axes, each scaled by ``variance ** -power``; no labels used."""
    x = _prepare(x, input_l2)
    mean, axes, var = _pca(x, dim)
    scale = np.maximum(var, _EPS * max(var.max(), _EPS)) ** -power
    return LinearProjection(mean, axes * scale, input_l2=input_l2, output_l2=output_l2,
                            kind="pca-whiten", params={"dim": dim, "power": power})


def _labels(y: Iterable[Any], n: int) -> tuple[np.ndarray, np.ndarray]:
    classes, codes = np.unique(np.asarray(list(y)), return_inverse=True)
    if codes.shape[0] != n:
        raise ValueError(f"{n} vectors but {codes.shape[0]} labels")
    if classes.size < 2:
        raise ValueError("a class-aware projection needs at least two categories")
    return classes, codes


def _class_whitener(z: np.ndarray, codes: np.ndarray, shrinkage: float) -> np.ndarray:
    """(d, d) symmetric inverse square root of the shrunk within-class covariance of ``z``."""
    if not 0.0 <= shrinkage <= 1.0:
        raise ValueError(f"shrinkage must be in [0, 1], got {shrinkage}")
    means = np.zeros((codes.max() + 1, z.shape[1]))
    np.add.at(means, codes, z)
    means /= np.bincount(codes)[:, None]
    within = z - means[codes]
    sw = within.T @ within / max(z.shape[0] - means.shape[0], 1)
    target = np.trace(sw) / sw.shape[0]
    sw = (1.0 - shrinkage) * sw + shrinkage * target * np.eye(sw.shape[0])
    evals, evecs = np.linalg.eigh(sw)
    evals = np.maximum(evals, _EPS * max(evals.max(), _EPS))
    return (evecs * evals**-0.5) @ evecs.T


def fit_class_whitening(x: np.ndarray, y: Iterable[Any], *, dim: int, shrinkage: float,
                        input_l2: bool = True, output_l2: bool = True) -> LinearProjection:
    """PCA to ``dim``, then whitening by the shrunk within-class covariance (labels ``y``)."""
    x = _prepare(x, input_l2)
    _, codes = _labels(y, x.shape[0])
    mean, axes, _ = _pca(x, dim)
    whitener = _class_whitener((x - mean) @ axes, codes, shrinkage)
    return LinearProjection(mean, axes @ whitener, input_l2=input_l2, output_l2=output_l2,
                            kind="class-whiten", params={"dim": dim, "shrinkage": shrinkage})


def fit_lda(x: np.ndarray, y: Iterable[Any], *, dim: int | None = None, pca_dim: int = 256,
            shrinkage: float = 0.1, input_l2: bool = True, output_l2: bool = True) -> LinearProjection:
    """Fisher LDA: class whitening in a ``pca_dim`` PCA space, then the top ``dim`` between-class
    directions (default and at most ``classes - 1``)."""
    x = _prepare(x, input_l2)
    classes, codes = _labels(y, x.shape[0])
    dim = classes.size - 1 if dim is None else dim
    if not 1 <= dim <= classes.size - 1:
        raise ValueError(f"dim must be between 1 and {classes.size - 1} for {classes.size} classes")
    mean, axes, _ = _pca(x, pca_dim)
    whitener = _class_whitener((x - mean) @ axes, codes, shrinkage)
    z = (x - mean) @ axes @ whitener
    means = np.zeros((classes.size, z.shape[1]))
    np.add.at(means, codes, z)
    counts = np.bincount(codes)
    means /= counts[:, None]
    centred = (means - z.mean(axis=0)) * np.sqrt(counts / counts.sum())[:, None]
    evals, evecs = np.linalg.eigh(centred.T @ centred)
    top = evecs[:, np.argsort(evals)[::-1][:dim]]
    signs = np.sign(top[np.abs(top).argmax(axis=0), np.arange(dim)])
    top = top * np.where(signs == 0, 1.0, signs)
    return LinearProjection(mean, axes @ whitener @ top, input_l2=input_l2, output_l2=output_l2,
                            kind="lda", params={"dim": dim, "pca_dim": pca_dim, "shrinkage": shrinkage})


@dataclass(frozen=True, eq=False)
class BlendProjection:
    """``[weight * lda(x), visual(x)] / sqrt(1 + weight**2)``: a class-aware part and a visual part
    side by side (unit vectors, so euclidean distance ranks like cosine).

    The LDA part (unit length, ``classes - 1`` dimensions) pulls garments of the same
    category together; the visual part keeps ordering by visual likeness inside a category,
    which the few LDA dimensions alone lose. The visual part is the plain cosine space,
    ``l2(x)`` (all 1280 dimensions), unless ``visual`` is given: then it is that projection
    (unit length), e.g. one that damps what changes between photos of one garment
    (:func:`fit_robust_blend`). Without ``visual``, vectors and key are those of every earlier
    blend.
    """

    lda: LinearProjection
    weight: float
    visual: LinearProjection | None = None

    @property
    def output_dim(self) -> int:
        return self.lda.output_dim + (self.lda.input_dim if self.visual is None else self.visual.output_dim)

    def transform(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        one = x.ndim == 1
        x2 = np.atleast_2d(x)
        lda = l2_normalise(self.lda.transform(x2))
        visual = l2_normalise(x2 if self.visual is None else self.visual.transform(x2))
        z = np.hstack([self.weight * lda, visual]) / np.sqrt(1.0 + self.weight**2)
        return z[0] if one else z

    __call__ = transform

    @property
    def key(self) -> str:
        text = f"{self.lda.key}/{self.weight!r}" + ("" if self.visual is None else f"/{self.visual.key}")
        return f"blend-{hashlib.sha256(text.encode()).hexdigest()[:16]}"

    def to_dict(self) -> dict[str, Any]:
        out = {"kind": "blend", "weight": self.weight, "key": self.key,
               **{f"lda_{k}": v for k, v in self.lda.to_dict().items()}}
        if self.visual is not None:
            out.update({f"visual_{k}": v for k, v in self.visual.to_dict().items()})
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BlendProjection:
        lda = LinearProjection.from_dict({k[4:]: v for k, v in data.items() if k.startswith("lda_")})
        visual_data = {k[7:]: v for k, v in data.items() if k.startswith("visual_")}
        visual = LinearProjection.from_dict(visual_data) if visual_data else None
        proj = cls(lda=lda, weight=float(data["weight"]), visual=visual)
        if "key" in data and str(data["key"]) != proj.key:
            raise ValueError(f"projection data does not match its key {data['key']!r}")
        return proj


def fit_blend(x: np.ndarray, y: Iterable[Any], *, weight: float, pca_dim: int = 256,
              shrinkage: float = 0.1) -> BlendProjection:
    """:func:`fit_lda` (default ``dim``) blended with the cosine space (see :class:`BlendProjection`)."""
    if weight < 0:
        raise ValueError(f"weight must be non-negative, got {weight}")
    lda = fit_lda(x, y, pca_dim=pca_dim, shrinkage=shrinkage, input_l2=True, output_l2=True)
    return BlendProjection(lda=lda, weight=float(weight))


def fit_robust_blend(x: np.ndarray, y: Iterable[Any], augmented: np.ndarray, augmented_y: Iterable[Any],
                     *, weight: float, pca_dim: int = 256, shrinkage: float = 0.1,
                     augmented_of: Iterable[int] | None = None, invariant_dim: int | None = None,
                     invariant_shrinkage: float = 0.5) -> BlendProjection:
    """:func:`fit_blend` on ``x`` plus ``augmented`` (vectors of augmented views of catalog
    garments, labelled ``augmented_y``): what changes between views of one garment lands in
    the LDA's within-class covariance. The LDA's parameters record how many views it saw, so
    the key differs from a plain blend's.

    With ``invariant_dim`` (and ``augmented_of``, the row of ``x`` each view was made from) the
    visual half is no longer plain cosine but :func:`fit_class_whitening` with every garment
    its own class (``invariant_dim`` PCA dimensions, ``invariant_shrinkage``): directions
    along which photos of one garment differ are damped, the rest keep their size."""
    x = np.asarray(x, dtype=np.float64)
    augmented = np.asarray(augmented, dtype=np.float64).reshape(-1, x.shape[1])
    labels = np.concatenate([np.asarray(list(y)), np.asarray(list(augmented_y))])
    stacked = np.vstack([x, augmented])
    blend = fit_blend(stacked, labels, weight=weight, pca_dim=pca_dim, shrinkage=shrinkage)
    lda = blend.lda
    robust = LinearProjection(lda.mean, lda.matrix, input_l2=lda.input_l2, output_l2=lda.output_l2,
                              kind=lda.kind, params={**lda.params, "augmented": int(augmented.shape[0])})
    visual = None
    if invariant_dim is not None:
        if augmented_of is None:
            raise ValueError("invariant_dim needs augmented_of: which garment each view shows")
        of = np.asarray(list(augmented_of), dtype=np.int64)
        if of.shape[0] != augmented.shape[0] or (of.size and not 0 <= of.min() <= of.max() < x.shape[0]):
            raise ValueError("augmented_of must give a row of x for every augmented vector")
        garments = np.concatenate([np.arange(x.shape[0]), of])
        whitening = fit_class_whitening(stacked, garments, dim=invariant_dim, shrinkage=invariant_shrinkage)
        visual = LinearProjection(whitening.mean, whitening.matrix, input_l2=True, output_l2=True,
                                  kind="garment-whiten", params=dict(whitening.params))
    return BlendProjection(lda=robust, weight=blend.weight, visual=visual)


# ---------------------------------------------------------------------------------------------
# Choosing hyper-parameters inside the catalog


def stratified_folds(y: Iterable[Any], folds: int, *, seed: int = 0) -> list[np.ndarray]:
    """Split indices into ``folds`` parts with every category spread evenly (seeded shuffle)."""
    y = np.asarray(list(y))
    if folds < 2:
        raise ValueError("need at least 2 folds")
    rng = np.random.default_rng(seed)
    parts: list[list[int]] = [[] for _ in range(folds)]
    for cls in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == cls))
        for f in range(folds):
            parts[f].extend(idx[f::folds].tolist())
    return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]


Fitter = Callable[[np.ndarray, np.ndarray], Callable[[np.ndarray], np.ndarray]]


def cross_validated_precision(x: np.ndarray, y: Iterable[Any], fit: Fitter, *, k: int = 10,
                              folds: int = 4, seed: int = 0) -> float:
    """Mean precision@k of each held-out fold querying the rest, transform fitted on the rest.

    ``fit(x_train, y_train)`` returns a callable mapping vectors into the space in which
    euclidean distance ranks neighbours.
    """
    from similarity.evaluation.metrics import rank

    x = np.asarray(x)
    y = np.asarray(list(y))
    hits = total = 0
    for held in stratified_folds(y, folds, seed=seed):
        train = np.setdiff1d(np.arange(y.size), held)
        transform = fit(x[train], y[train])
        gallery, queries = transform(x[train]), transform(x[held])
        d = _sq_euclidean(queries, gallery)
        top = rank(d, k)
        hits += int((y[train][top] == y[held][:, None]).sum())
        total += top.size
    return hits / total


def select_by_cross_validation(x: np.ndarray, y: Iterable[Any],
                               make_fit: Callable[..., Fitter], grid: Mapping[str, Iterable[Any]],
                               *, k: int = 10, folds: int = 4, seed: int = 0
                               ) -> tuple[dict[str, Any], float, list[tuple[dict[str, Any], float]]]:
    """Try every combination in ``grid`` (``make_fit(**params)`` gives a fitter); return the
    best parameters, their cross-validated precision@k and every (params, score) tried.
    Ties go to the first combination in grid order."""
    y = np.asarray(list(y))
    names = list(grid)
    tried = []
    for values in itertools.product(*(list(grid[n]) for n in names)):
        params = dict(zip(names, values, strict=True))
        tried.append((params, cross_validated_precision(x, y, make_fit(**params), k=k, folds=folds,
                                                        seed=seed)))
    best = max(tried, key=lambda t: t[1])  # max keeps the first of equal scores
    return best[0], best[1], tried


def _sq_euclidean(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared euclidean distances (A, B) in float64, clamped at 0."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.maximum(d, 0.0)


# ------------------------------------------------------------------------------ persistence
# A fitted blend is stored as an .npz of plain arrays (nested parameters as JSON text), so it
# loads with allow_pickle=False; ``vector_key`` records which embeddings it was fitted on.


def _to_arrays(projection: BlendProjection, vector_key: str) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {"vector_key": np.array(vector_key)}
    for name, value in projection.to_dict().items():
        if isinstance(value, dict | list):
            arrays[f"{name}__json"] = np.array(json.dumps(value, sort_keys=True))
        else:
            arrays[name] = np.asarray(value)
    return arrays


def save_blend(path: Path, projection: BlendProjection, vector_key: str,
               extra: Mapping[str, float] | None = None) -> None:
    """Write atomically (temp file, fsync, rename, fsync the directory); ``extra`` numbers
    (e.g. the colour weight chosen with the projection) are stored beside it."""
    arrays = _to_arrays(projection, vector_key)
    for name, value in (extra or {}).items():
        arrays[f"extra__{name}"] = np.asarray(value, dtype=np.float64)
    with atomic_file(path, prefix=".p-") as handle:
        np.savez(handle, allow_pickle=False, **arrays)


def read_blend(path: Path) -> tuple[BlendProjection, str, dict[str, float]]:
    """(projection, the vector key it was fitted on, the ``extra`` numbers stored with it);
    ``from_dict`` checks the stored key."""
    data: dict[str, object] = {}
    extra: dict[str, float] = {}
    with np.load(path, allow_pickle=False) as z:
        for name in z.files:
            arr = z[name]
            if name.startswith("extra__"):
                extra[name[len("extra__"):]] = float(arr)
            elif name.endswith("__json"):
                data[name[: -len("__json")]] = json.loads(str(arr[()]))
            elif arr.ndim == 0:
                data[name] = arr.item()
            else:
                data[name] = arr
    vector_key = str(data.pop("vector_key"))
    return BlendProjection.from_dict(data), vector_key, extra


def load_blend(path: Path) -> tuple[BlendProjection, str]:
    """(projection, the vector key it was fitted on): :func:`read_blend` without the extras."""
    projection, vector_key, _ = read_blend(path)
    return projection, vector_key
