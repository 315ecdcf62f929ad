"""A summary of a store directory (``MatrixStore.info``), read without loading the distances."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from similarity.errors import MatrixError
from similarity.index.store_format import META_KEYS, int_scalar, read_npz, text_scalar
from similarity.index.store_listing import Listing, base_path, retry_while_changing, scan


def store_info(path: str | os.PathLike[str]) -> dict[str, Any]:
    """See ``MatrixStore.info``."""
    directory = Path(path)
    if not directory.is_dir():
        raise MatrixError(f"{directory} is not a directory")
    return retry_while_changing(lambda: _info_once(directory), directory, "reading")


def _info_once(directory: Path) -> dict[str, Any]:
    listing = scan(directory)
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
        base = base_path(directory, gen)
        current.append(base)
        ids = _read_base_meta(base, out)
    _replay_ids(listing, ids)
    out["n"] = len(ids)
    out["bytes"] = sum(p.stat().st_size for p in current)
    out["bytes_total"] = _bytes_total(directory)
    return out


def _read_base_meta(base: Path, out: dict[str, Any]) -> set[int]:
    """Fill ``out`` with the base's meta; returns its ids."""
    z = read_npz(base, (*META_KEYS, "ids"))
    ids = set(z["ids"].tolist())
    out.update(
        n_base=len(ids), dim=int_scalar(z["dim"], "dim"), k=int_scalar(z["k"], "k"),
        metric=text_scalar(z["metric"], "metric"), policy=text_scalar(z["policy"], "policy"),
        weights_sha256=text_scalar(z["weights_sha256"], "weights_sha256"),
        format=int_scalar(z["format"], "format"),
    )
    return ids


def _replay_ids(listing: Listing, ids: set[int]) -> None:
    """Apply the listed deltas' upserts and removals to ``ids``."""
    for s in sorted(listing.deltas):
        z = read_npz(listing.deltas[s], ("op", "ids"))
        op = text_scalar(z["op"], "op")
        if op == "upsert":
            ids.update(z["ids"].tolist())
        elif op == "remove":
            ids.difference_update(z["ids"].tolist())


def _bytes_total(directory: Path) -> int:
    total = 0
    with os.scandir(directory) as it:
        for entry in it:
            with contextlib.suppress(FileNotFoundError):
                total += entry.stat().st_size
    return total
