"""The index of a full rebuild, published under the writer's fence: a dense matrix is built
here; a top-k index (the whole catalog's, or each top-k category partition when lists stay
inside categories) goes through row blocks spread over the rebuild workers
(catalog.services.rebuild_blocks), all categories' blocks queued at once."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from catalog.engine import IndexStore, follow_layout, layout_for
from catalog.models import RebuildRun
from catalog.services.index_writer import categories_of, index_rebuild
from catalog.services.locking import Fence
from catalog.services.rebuild_blocks import rebuild_blocks_collect, rebuild_blocks_plan
from similarity import (
    MatrixStore,
    NeighbourIndex,
    PartitionedStore,
    discard_input,
    discard_stale_inputs,
    group_by_category,
    partitions_remove,
)

logger = logging.getLogger(__name__)

Report = Callable[..., None]
Groups = Mapping[str, tuple[np.ndarray, np.ndarray]]


def rebuild_index(run: RebuildRun, store: IndexStore, ids: np.ndarray, vectors: np.ndarray,
                  report: Report, fence: Fence) -> NeighbourIndex:
    """Build and publish the index of ``ids`` (``vectors`` in the store's space)."""
    if stale := discard_stale_inputs(store.directory):
        logger.warning("removed %d rebuild input(s) that a stopped rebuild left behind", stale)
    if isinstance(store, PartitionedStore):
        return _by_category(run, store, ids, vectors, report, fence)
    return _across_catalog(run, store, ids, vectors, report, fence)


def _across_catalog(run: RebuildRun, store: MatrixStore, ids: np.ndarray, vectors: np.ndarray,
                    report: Report, fence: Fence) -> NeighbourIndex:
    store.layout = layout_for(int(ids.size))
    follow_layout(store)
    if store.layout != "topk":
        return index_rebuild(store, ids, vectors)
    matrix = _in_blocks(run, {"": store}, {"": (ids, vectors)}, report, fence)[""]
    partitions_remove(store.directory, fence)
    return matrix


def _by_category(run: RebuildRun, store: PartitionedStore, ids: np.ndarray, vectors: np.ndarray,
                 report: Report, fence: Fence) -> NeighbourIndex:
    """Top-k partitions in row blocks, the dense ones (small categories) here."""
    categories = categories_of(ids)
    large = {category: group for category, group in
             group_by_category(ids, vectors, categories).items()
             if store.layout_for(group[0].size) == "topk"}
    stores = {category: store.part_store(category, layout="topk") for category in large}
    built = _in_blocks(run, stores, large, report, fence) if large else {}
    return store.rebuild(ids, vectors, categories, built=built)


def _in_blocks(run: RebuildRun, stores: Mapping[str, MatrixStore], groups: Groups,
               report: Report, fence: Fence) -> dict[str, NeighbourIndex]:
    """Each group's top-k index computed in row blocks and published in its store."""
    inputs: dict[str, Path] = {}
    try:
        for category, (ids, vectors) in groups.items():
            inputs[category] = stores[category].rebuild_input(ids, vectors)
        first = next(iter(stores.values()))
        metric, k = first.meta.metric, first.k
        rebuild_blocks_plan(run=run, inputs=inputs, metric=metric, k=k)
        report(step="blocks", done=0, total=run.blocks.count())
        blocks = rebuild_blocks_collect(
            run=run, metric=metric, k=k, fence=fence,
            progress=lambda done, total: report(step="blocks", done=done, total=total),
        )
        return {category: stores[category].publish_rebuild(path, blocks[category])
                for category, path in inputs.items()}
    finally:
        for path in inputs.values():
            discard_input(path)
