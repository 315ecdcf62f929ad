"""A Keras model exported as a SavedModel, ready for TensorFlow Lite's converter."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import keras
    import tensorflow as tf


def saved_model_converter(model: keras.Model, directory: str) -> tf.lite.TFLiteConverter:
    """A converter for ``model``, exported as a SavedModel into ``directory``.

    A SavedModel freezes Keras 3 variables into constants; converting a bare concrete
    function leaves them as uninitialised resource variables.
    """
    import tensorflow as tf

    model.export(directory, format="tf_saved_model", verbose=False)
    return tf.lite.TFLiteConverter.from_saved_model(directory)
