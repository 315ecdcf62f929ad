"""What "consistent" means, checked from the outside: the database, the files, brute force."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.pipeline.helpers import K, fashion_images, problems, settled, upload, wait_for

__all__ = ["K", "fashion_images", "files_problems", "problems", "settled", "upload", "wait_for"]


def files_problems(directory: Path) -> list[str]:
    """Every .npz in ``directory`` must load, member by member, with allow_pickle=False, and the
    store must load from them."""
    from catalog.engine import matrix_store

    out = []
    for path in sorted(directory.glob("*.npz")):
        try:
            with np.load(path, allow_pickle=False) as z:
                for key in z.files:
                    z[key]
        except Exception as exc:
            out.append(f"{path.name}: {type(exc).__name__}: {exc}")
    try:
        matrix_store().store.load()
    except Exception as exc:
        out.append(f"the store does not load: {type(exc).__name__}: {exc}")
    return out
