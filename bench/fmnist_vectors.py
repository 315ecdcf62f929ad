"""The real embeddings of the 70,000 Fashion-MNIST images, computed once and cached.

``<data dir>/bench/fashion-mnist-70k.npy`` (70,000 x 1280 float32, train then test split, each
image inverted and upscaled with ``similarity.evaluation.fashion_mnist.to_photo`` and embedded through
the default preprocessing policy). Filled in chunks; ``<name>.count`` records how many rows
are done, so an interrupted run resumes and a partial cache is usable (``cached_vectors``).
For one million vectors, ``scaled_vectors`` repeats them with small Gaussian perturbations.

    python -m bench.fmnist_vectors [LIMIT]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from bench.common import data_dir as product_data_dir
from bench.common import model_dir, photo_png
from similarity.model.spec import EMBEDDING_DIM

TOTAL = 70_000
_CHUNK = 512


def cache_path(data_dir: Path | None = None) -> Path:
    return (data_dir or product_data_dir()) / "bench" / "fashion-mnist-70k.npy"


def _count_path(path: Path) -> Path:
    return path.with_suffix(".count")


def rows_done(path: Path) -> int:
    count = _count_path(path)
    return int(count.read_text()) if count.exists() else 0


def _all_images() -> np.ndarray:
    from similarity.evaluation.fashion_mnist import load_split

    return np.concatenate([load_split("train")[0], load_split("test")[0]])


def compute(path: Path, *, limit: int = TOTAL, num_threads: int = 1) -> int:
    """Embed images [rows_done, limit) into the cache at ``path``; returns rows done."""
    from similarity.embedding.embedder import ImageEmbedder

    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        np.lib.format.open_memmap(path, mode="w+", dtype=np.float32,
                                  shape=(TOTAL, EMBEDDING_DIM)).flush()
    out = np.load(path, mmap_mode="r+", allow_pickle=False)
    images = _all_images()
    embedder = ImageEmbedder(model_dir=model_dir(), num_threads=num_threads)
    done = rows_done(path)
    while done < limit:
        stop = min(limit, done + _CHUNK)
        out[done:stop] = embedder.embed_many([photo_png(im) for im in images[done:stop]])
        out.flush()
        done = stop
        _count_path(path).write_text(str(done))
    return done


def cached_vectors(path: Path | None = None) -> np.ndarray:
    """The embedded rows computed so far (float32, read into memory)."""
    path = path or cache_path()
    done = rows_done(path)
    return np.array(np.load(path, mmap_mode="r", allow_pickle=False)[:done])


def scaled_vectors(base: np.ndarray, n: int, *, sigma: float = 0.02,
                   seed: int = 0) -> np.ndarray:
    """``n`` vectors: ``base`` repeated, every copy after the first plus Gaussian noise.

    The noise's standard deviation is ``sigma`` times the base vectors' per-coordinate standard
    deviation, so copies stay near their originals without being duplicates.
    """
    rng = np.random.default_rng(seed)
    scale = np.float32(sigma * float(base.std()))
    out = np.empty((n, base.shape[1]), np.float32)
    for start in range(0, n, base.shape[0]):
        stop = min(n, start + base.shape[0])
        out[start:stop] = base[: stop - start]
        if start:
            out[start:stop] += scale * rng.standard_normal((stop - start, base.shape[1]),
                                                           dtype=np.float32)
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("limit", type=int, nargs="?", default=TOTAL,
                        help="embed the first LIMIT images (default: all 70,000)")
    print(compute(cache_path(), limit=parser.parse_args().limit))
