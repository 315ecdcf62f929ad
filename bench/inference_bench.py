"""Inference speed: Keras reference vs LiteRT at batch 64, and end to end from JPEG files."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from bench.common import median_seconds, model_dir

BATCH = 64


def _jpeg_folder(folder: Path, count: int) -> list[Path]:
    """Fashion-MNIST garments written as 800x800 JPEG photos (what a shop uploads)."""
    from similarity.evaluation.fashion_mnist import load_split, to_photo

    images, _ = load_split("test")
    paths = []
    for i in range(count):
        path = folder / f"{i:04d}.jpg"
        to_photo(images[i], size=800).save(path, quality=90)
        paths.append(path)
    return paths


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
        paths = _jpeg_folder(Path(tmp), count)
        embedder = ImageEmbedder(model_dir=model_dir())
        e2e_s = median_seconds(lambda: embedder.embed_many(paths), repeats=max(2, repeats - 2))
    rows.append({"benchmark": f"end to end: {count} 800x800 JPEG files → vectors (decode, preprocess, embed)",
                 "figure": f"{count / e2e_s:.0f} images/s",
                 "ratio": f"{(count / e2e_s) / (BATCH / litert_s):.2f}x of model-only speed"})
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    for row in run(parser.parse_args().quick):
        print(row)
