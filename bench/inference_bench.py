"""Inference speed: Keras reference vs LiteRT at batch 64, and end to end from JPEG files.

    python -m bench.inference_bench [--quick]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from bench.common import garment_jpegs, median_seconds, model_dir

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
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repeats and files")
    for row in run(parser.parse_args().quick):
        print(row)
