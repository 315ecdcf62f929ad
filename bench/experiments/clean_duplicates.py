"""The clean quality experiment's near-duplicates: every 10th catalog garment copied (half the
same file again, half re-uploaded as an 800x800 JPEG), and the list places the copies take
without and with collapsing near-duplicate groups."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from bench.common import sq_distances
from bench.experiments.clean_inputs import Data, Embeddings, Input, K
from bench.experiments.clean_scores import quality_row, score
from bench.experiments.clean_spaces import Space
from similarity.embedding.projection import l2_normalise
from similarity.evaluation.fashion_mnist import to_photo
from similarity.evaluation.metrics import rank
from similarity.index.dedup import collapse, duplicate_groups

# Cosine distance under which two catalog items count as the same picture (similarity/index/dedup.py).
DUPLICATE_THRESHOLD = 0.01

Log = Callable[[str], None]


def reuploaded(image28: np.ndarray) -> Image.Image:
    """The same garment uploaded again as a different file: an 800x800 JPEG (quality 85)."""
    buf = io.BytesIO()
    to_photo(image28, size=800).save(buf, format="JPEG", quality=85)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def duplicate_slots(ranked: np.ndarray, true_groups: np.ndarray) -> np.ndarray:
    """Per list, the places taken by a copy of an item already listed higher."""
    out = np.zeros(ranked.shape[0], dtype=np.int64)
    for q, row in enumerate(ranked.tolist()):
        seen: set[int] = set()
        for item in row:
            if item < 0:
                continue
            g = int(true_groups[item])
            out[q] += g in seen
            seen.add(g)
    return out


@dataclass(frozen=True)
class CopiedCatalog:
    """The catalog's vectors followed by its copies'; ``true_groups[i]`` is the original of i."""

    vectors: np.ndarray
    labels: np.ndarray
    true_groups: np.ndarray
    copies: int


def copied_catalog(data: Data, cat_photos: list[Image.Image], inp: Input, emb: Embeddings,
                   c: np.ndarray) -> CopiedCatalog:
    yc = data.catalog_labels
    originals = np.arange(0, len(yc), 10)
    same_file, resaved = originals[0::2], originals[1::2]
    copy_photos = [cat_photos[i] for i in same_file] + [reuploaded(data.catalog[i]) for i in resaved]
    copies = emb.photos_vectors(inp, "copies", copy_photos)
    labels = np.concatenate([yc, yc[np.concatenate([same_file, resaved])]])
    true_groups = np.concatenate([np.arange(len(yc)), same_file, resaved])
    return CopiedCatalog(np.vstack([c, copies]), labels, true_groups, len(copy_photos))


def _log_copy_distances(dup: CopiedCatalog, n: int, log: Log) -> None:
    """Copy-to-original distances against the closest distinct garments, on raw cosine."""
    cos = l2_normalise(dup.vectors)
    copy_d = 1.0 - (cos[n:] * cos[dup.true_groups[n:]]).sum(1)
    sims = cos[:n] @ cos[:n].T
    np.fill_diagonal(sims, -np.inf)
    nn_d = 1.0 - sims.max(1)
    log(f"  duplicates: copy->original cosine distance max {copy_d.max():.4f}; distinct garments' "
        f"nearest-neighbour distance min {nn_d.min():.4f}, 1st percentile {np.percentile(nn_d, 1):.4f}")


def _groups(dup: CopiedCatalog, n: int, log: Log) -> tuple[np.ndarray, int, int]:
    """The near-duplicate groups, the copies they miss and the groups joining distinct garments."""
    groups = duplicate_groups(dup.vectors, DUPLICATE_THRESHOLD)
    true_groups = dup.true_groups
    missed = int((groups[n:] != groups[true_groups[n:]]).sum())
    false_merges = sum(len(set(true_groups[groups == g].tolist())) > 1 for g in np.unique(groups))
    log(f"  duplicate groups at cosine distance <= {DUPLICATE_THRESHOLD}: {missed} of {dup.copies} "
        f"copies missed, {false_merges} groups joining distinct garments")
    return groups, missed, false_merges


def duplicates_rows(data: Data, cat_photos: list[Image.Image], inp: Input, space: Space,
                    emb: Embeddings, vectors: Callable, log: Log) -> list[dict]:
    """The rows of the best configuration with the copies in the catalog, not collapsed and collapsed."""
    yc, yq = data.catalog_labels, data.query_labels
    c, q = vectors(inp)
    dup = copied_catalog(data, cat_photos, inp, emb, c)
    _log_copy_distances(dup, len(yc), log)
    transform = space.fit(c, yc)  # fitted on the catalog without the copies
    ranked = rank(sq_distances(transform(q), transform(dup.vectors)), 3 * K)
    groups, missed, false_merges = _groups(dup, len(yc), log)
    out = []
    for collapsed in (False, True):
        top = collapse(ranked, groups, K) if collapsed else ranked[:, :K]
        slots = duplicate_slots(top, dup.true_groups)
        report = score(top, dup.labels, yq)
        name = ("duplicates in the catalog, collapsed" if collapsed
                else "duplicates in the catalog, not collapsed")
        row = quality_row(name, inp, space, report, duplicate_slots=float(slots.mean()),
                          lists_with_duplicates=float((slots > 0).mean()), copies=dup.copies,
                          missed_copies=missed if collapsed else None,
                          false_merges=false_merges if collapsed else None)
        row["catalog_cv_precision_at_10"] = None
        out.append(row)
        log(f"  {name}: {slots.mean():.3f} places per list taken by copies, "
            f"{(slots > 0).mean():.1%} of lists have one")
    return out
