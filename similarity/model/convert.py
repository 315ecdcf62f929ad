"""Convert the Keras reference network to a LiteRT flatbuffer (needs TensorFlow)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from similarity.model.network import build_mobilenet_v2
from similarity.model.saved_model import saved_model_converter
from similarity.model.spec import PRECISIONS, Precision


def convert_to_litert(weights_path: Path | None = None, *, precision: Precision = "fp32") -> bytes:
    """Return the embedding network as LiteRT (TFLite) bytes, dynamic batch, float I/O.

    ``fp32``: plain float builtins, matching Keras within 1e-4. ``int8``: post-training
    quantisation calibrated on garment photos (similarity/model/quantize.py).
    """
    import tensorflow as tf

    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    model = build_mobilenet_v2(include_top=False, weights_path=weights_path)
    if precision == "int8":
        from similarity.model.quantize import quantize_int8

        return quantize_int8(model)
    with tempfile.TemporaryDirectory(prefix="lookalike-savedmodel-") as tmp:
        converter = saved_model_converter(model, tmp)
        # Plain fp32 builtins only, so XNNPACK runs every op and results match Keras.
        converter.optimizations = []
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        return bytes(converter.convert())
