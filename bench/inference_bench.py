"""Inference speed: Keras reference vs LiteRT at batch 64, end to end from JPEG files, the
cost of framing (frame-margin@3, the default, and @1 against torchvision@1 on the same shop
photos, same run), and (``--colour``) the embed worker's cost per photo, vector and colour
descriptor, under lab-hist@2 (the policy's framing shared) and lab-hist@1 (found again at 128 px).

    python -m bench.inference_bench [--quick] [--framing ROUNDS] [--colour ROUNDS]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bench.common import garment_jpegs, median_seconds, model_dir, shop_jpegs

if TYPE_CHECKING:
    from similarity.embedding.embedder import Prepared

BATCH = 64


def run(quick: bool = False) -> list[dict]:
    from similarity.embedding.embedder import ImageEmbedder
    from similarity.embedding.runtime import LiteRTEmbedder
    from similarity.model.cache import ensure_model
    from similarity.model.network import build_mobilenet_v2

    repeats = 3 if quick else 5
    rng = np.random.default_rng(0)
    batch = rng.standard_normal((BATCH, 224, 224, 3)).astype(np.float32)
    ensure_model(model_dir())
    keras_model = build_mobilenet_v2()
    litert = LiteRTEmbedder(model_dir(), batch_size=BATCH)
    keras_s = median_seconds(lambda: keras_model.predict(batch, batch_size=BATCH, verbose=0),
                             repeats=repeats)
    litert_s = median_seconds(lambda: litert.embed(batch), repeats=repeats)
    max_diff = float(np.abs(keras_model.predict(batch, verbose=0) - litert.embed(batch)).max())
    rows = [
        {"benchmark": "embed, Keras predict (reference), batch 64",
         "figure": f"{BATCH / keras_s:.0f} images/s", "ratio": "1.00x"},
        {"benchmark": "embed, LiteRT fp32 XNNPACK (chosen), batch 64",
         "figure": f"{BATCH / litert_s:.0f} images/s",
         "ratio": f"{keras_s / litert_s:.2f}x vs Keras; max abs diff {max_diff:.1e}"},
    ]
    count = BATCH * (2 if quick else 4)
    with tempfile.TemporaryDirectory() as tmp:
        paths = garment_jpegs(Path(tmp), count)
        embedder = ImageEmbedder(model_dir=model_dir())
        e2e_s = median_seconds(lambda: embedder.embed_many(paths), repeats=max(2, repeats - 2))
    rows.append({"benchmark": f"end to end: {count} 800x800 JPEG files → vectors (decode, preprocess, embed)",
                 "figure": f"{count / e2e_s:.0f} images/s",
                 "ratio": f"{(count / e2e_s) / (BATCH / litert_s):.2f}x of model-only speed"})
    return rows + framing_rows(count, repeats=max(3, repeats))


FRAMING_POLICIES = ("torchvision@1", "frame-margin@3", "frame-margin@1")


def framing_rows(count: int, *, repeats: int) -> list[dict]:
    """End to end on 800x800 JPEG shop photos under each policy, the policies interleaved in
    every round (so a busy machine slows them alike); median images/s, and the median over
    the rounds of each round's ratio to torchvision@1's."""
    import statistics
    import time

    from similarity.embedding.embedder import ImageEmbedder

    with tempfile.TemporaryDirectory() as tmp:
        paths = shop_jpegs(Path(tmp), count)
        embedders = {key: ImageEmbedder(model_dir=model_dir(), policy=key) for key in FRAMING_POLICIES}
        speeds: dict[str, list[float]] = {key: [] for key in FRAMING_POLICIES}
        for rnd in range(repeats + 1):  # the first round warms up
            for key, embedder in embedders.items():
                start = time.perf_counter()
                embedder.embed_many(paths)
                if rnd:
                    speeds[key].append(count / (time.perf_counter() - start))
    base = speeds[FRAMING_POLICIES[0]]
    rows = []
    for key, speed in speeds.items():
        ratio = statistics.median(s / b for s, b in zip(speed, base, strict=True))
        rows.append({"benchmark": f"end to end, {count} 800x800 JPEG shop photos, {key}",
                     "figure": f"{statistics.median(speed):.0f} images/s",
                     "ratio": f"{ratio:.2f}x of torchvision@1 ({(1 - ratio) * 100:+.0f} % cost; "
                              f"rounds {min(s / b for s, b in zip(speed, base, strict=True)):.2f}-"
                              f"{max(s / b for s, b in zip(speed, base, strict=True)):.2f})"})
    return rows


def colour_rows(count: int, *, repeats: int) -> list[dict]:
    """The embed worker's work on 800x800 JPEG shop photos under frame-margin@3 (load, frame,
    crop, colour descriptor, embed, in batches; BLAS at one thread as in the workers), with each
    colour version, interleaved in every round: median ms per photo and of the rounds' ratios."""
    import statistics
    import time

    from similarity.embedding.colour import LAB_HIST_V1, LAB_HIST_V2
    from similarity.embedding.embedder import ImageEmbedder, stack_prepared
    from similarity.threads import limit_math_threads

    limit_math_threads(1)
    versions = (LAB_HIST_V1, LAB_HIST_V2)
    with tempfile.TemporaryDirectory() as tmp:
        data = [path.read_bytes() for path in shop_jpegs(Path(tmp), count)]
        embedders = {v.key: ImageEmbedder(model_dir=model_dir(), policy="frame-margin@3", colour=v)
                     for v in versions}
        ms: dict[str, list[float]] = {v.key: [] for v in versions}
        for rnd in range(repeats + 1):  # the first round warms up
            for key, embedder in embedders.items():
                start = time.perf_counter()
                for first in range(0, count, embedder.batch_size):
                    prepared = embedder.prepare_many(data[first : first + embedder.batch_size], colour=True)
                    embedder.embed_arrays(stack_prepared(prepared))
                if rnd:
                    ms[key].append((time.perf_counter() - start) * 1000 / count)
        moved = _colour_moved(*(embedders[v.key].prepare_many(data, colour=True) for v in versions))
    base = ms[LAB_HIST_V1.key]
    rows = []
    for key, times in ms.items():
        ratios = [t / b for t, b in zip(times, base, strict=True)]
        rows.append({"benchmark": f"embed worker's work, {count} 800x800 JPEG shop photos, "
                                  f"frame-margin@3 + {key}",
                     "figure": f"{statistics.median(times):.2f} ms/photo "
                               f"(rounds {min(times):.2f}-{max(times):.2f})",
                     "ratio": f"{statistics.median(ratios):.3f}x of lab-hist@1's time "
                              f"(rounds {min(ratios):.3f}-{max(ratios):.3f}); median saving "
                              f"{statistics.median(b - t for t, b in zip(times, base, strict=True)):.2f} ms"})
    rows.append({"benchmark": f"lab-hist@2 against lab-hist@1 of the same {count} photos: Hellinger "
                              "distance (euclidean between descriptors)",
                 "figure": f"median {np.median(moved):.4f}, 95th percentile {np.percentile(moved, 95):.4f}, "
                           f"largest {moved.max():.3f}",
                 "ratio": "n/a"})
    return rows


def _colour_moved(older: list[Prepared], newer: list[Prepared]) -> np.ndarray:
    """Per photo, the euclidean distance between its two descriptors."""
    pairs = [(a.colour, b.colour) for a, b in zip(older, newer, strict=True)]
    return np.array([float(np.linalg.norm(a - b)) for a, b in pairs if a is not None and b is not None])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repeats and files")
    parser.add_argument("--framing", type=int, metavar="ROUNDS",
                        help="only the cost of framing, over this many interleaved rounds")
    parser.add_argument("--colour", type=int, metavar="ROUNDS",
                        help="only the embed worker's cost per photo under each colour version")
    args = parser.parse_args()
    if args.colour:
        rows = colour_rows(BATCH * 2, repeats=args.colour)
    elif args.framing:
        rows = framing_rows(BATCH * 2, repeats=args.framing)
    else:
        rows = run(args.quick)
    for row in rows:
        print(row)
