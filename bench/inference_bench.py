"""Inference speed: Keras reference vs LiteRT at batch 64, end to end from JPEG files, and the
cost of framing (frame-margin@1 and @2 against torchvision@1 on the same shop photos, same run).

    python -m bench.inference_bench [--quick]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from bench.common import garment_jpegs, median_seconds, model_dir, shop_jpegs

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


FRAMING_POLICIES = ("torchvision@1", "frame-margin@1", "frame-margin@3")


def framing_rows(count: int, *, repeats: int) -> list[dict]:
    """End to end on 800x800 JPEG shop photos under each policy, the policies interleaved in
    every repeat (so a busy machine slows them alike); median images/s and the ratio to
    torchvision@1's."""
    import statistics
    import time

    from similarity.embedding.embedder import ImageEmbedder

    with tempfile.TemporaryDirectory() as tmp:
        paths = shop_jpegs(Path(tmp), count)
        embedders = {key: ImageEmbedder(model_dir=model_dir(), policy=key) for key in FRAMING_POLICIES}
        times: dict[str, list[float]] = {key: [] for key in FRAMING_POLICIES}
        for rep in range(repeats + 1):  # the first round warms up
            for key, embedder in embedders.items():
                start = time.perf_counter()
                embedder.embed_many(paths)
                if rep:
                    times[key].append(time.perf_counter() - start)
    speed = {key: count / statistics.median(t) for key, t in times.items()}
    base = speed[FRAMING_POLICIES[0]]
    return [{"benchmark": f"end to end, {count} 800x800 JPEG shop photos, {key}",
             "figure": f"{s:.0f} images/s",
             "ratio": f"{s / base:.2f}x of torchvision@1 ({(1 - s / base) * 100:+.0f} % cost)"}
            for key, s in speed.items()]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repeats and files")
    for row in run(parser.parse_args().quick):
        print(row)
