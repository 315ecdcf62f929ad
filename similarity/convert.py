"""Convert the Keras reference network to a LiteRT flatbuffer (needs TensorFlow)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from similarity.network import build_mobilenet_v2


def convert_to_litert(weights_path: Path | None = None) -> bytes:
    """Return the embedding network as LiteRT (TFLite) bytes, fp32, dynamic batch."""
    import tensorflow as tf

    model = build_mobilenet_v2(include_top=False, weights_path=weights_path)
    with tempfile.TemporaryDirectory(prefix="lookalike-savedmodel-") as tmp:
        # A SavedModel freezes Keras 3 variables into constants; converting a bare
        # concrete function leaves them as uninitialised resource variables.
        model.export(tmp, format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp)
        # Plain fp32 builtins only, so XNNPACK runs every op and results match Keras.
        converter.optimizations = []
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        return converter.convert()
