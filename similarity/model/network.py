"""MobileNetV2 built in Keras to torchvision's layout, loaded with torchvision's weights.

torchvision differs from ``keras.applications.MobileNetV2`` in ways that change the
embeddings: stride-2 3x3 convolutions pad one pixel on every side (Keras pads only bottom
and right) and batch norm uses epsilon 1e-5 (Keras 1e-3). Loading these weights into the
stock Keras network runs but gives different vectors, so the network is built here.

Importing this module imports TensorFlow: only conversion, tests and benchmarks need it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np

from similarity.errors import WeightsError
from similarity.model.spec import EMBEDDING_DIM
from similarity.model.weights import load_state_dict

INPUT_SIZE = 224
NUM_CLASSES = 1000
BN_EPSILON = 1e-5
# (expansion t, output channels c, repeats n, first stride s), as in torchvision.
_INVERTED_RESIDUAL_SETTING = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


@dataclass(frozen=True)
class _Unit:
    """One Conv(+BN) pair: the Keras layer names and the torchvision key prefixes."""

    conv_layer: str
    conv_key: str
    bn_layer: str
    bn_key: str
    depthwise: bool


def _layer_name(key: str) -> str:
    return key.replace(".", "_")


def _conv_bn(
    x: keras.KerasTensor,
    units: list[_Unit],
    *,
    conv_key: str,
    bn_key: str,
    filters: int,
    kernel: int,
    stride: int,
    depthwise: bool,
    relu6: bool,
) -> keras.KerasTensor:
    if kernel == 3:
        # torchvision pads 1 on every side for every 3x3 convolution, stride 1 or 2.
        x = keras.layers.ZeroPadding2D(1, name=_layer_name(conv_key) + "_pad")(x)
    conv_name, bn_name = _layer_name(conv_key), _layer_name(bn_key)
    if depthwise:
        x = keras.layers.DepthwiseConv2D(kernel, stride, use_bias=False, name=conv_name)(x)
    else:
        x = keras.layers.Conv2D(filters, kernel, stride, use_bias=False, name=conv_name)(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, momentum=0.9, name=bn_name)(x)
    if relu6:
        x = keras.layers.ReLU(6.0, name=bn_name + "_relu6")(x)
    units.append(_Unit(conv_name, conv_key, bn_name, bn_key, depthwise))
    return x


def _inverted_residual(
    x: keras.KerasTensor, units: list[_Unit], *, index: int, inp: int, out: int, stride: int, t: int
) -> keras.KerasTensor:
    prefix = f"features.{index}.conv"
    shortcut = x
    hidden = inp * t
    part = 0
    if t != 1:
        x = _conv_bn(x, units, conv_key=f"{prefix}.0.0", bn_key=f"{prefix}.0.1", filters=hidden,
                     kernel=1, stride=1, depthwise=False, relu6=True)
        part = 1
    x = _conv_bn(x, units, conv_key=f"{prefix}.{part}.0", bn_key=f"{prefix}.{part}.1",
                 filters=hidden, kernel=3, stride=stride, depthwise=True, relu6=True)
    x = _conv_bn(x, units, conv_key=f"{prefix}.{part + 1}", bn_key=f"{prefix}.{part + 2}",
                 filters=out, kernel=1, stride=1, depthwise=False, relu6=False)
    if stride == 1 and inp == out:
        x = keras.layers.Add(name=f"features_{index}_add")([shortcut, x])
    return x


def _build(include_top: bool) -> tuple[keras.Model, list[_Unit]]:
    units: list[_Unit] = []
    inputs = keras.Input((INPUT_SIZE, INPUT_SIZE, 3), name="image")
    x = _conv_bn(inputs, units, conv_key="features.0.0", bn_key="features.0.1", filters=32,
                 kernel=3, stride=2, depthwise=False, relu6=True)
    channels, index = 32, 1
    for t, c, n, s in _INVERTED_RESIDUAL_SETTING:
        for i in range(n):
            x = _inverted_residual(x, units, index=index, inp=channels, out=c,
                                   stride=s if i == 0 else 1, t=t)
            channels, index = c, index + 1
    x = _conv_bn(x, units, conv_key=f"features.{index}.0", bn_key=f"features.{index}.1",
                 filters=EMBEDDING_DIM, kernel=1, stride=1, depthwise=False, relu6=True)
    x = keras.layers.GlobalAveragePooling2D(name="embedding")(x)
    if include_top:
        # Dropout is a no-op at inference; logits, as torchvision returns them.
        x = keras.layers.Dense(NUM_CLASSES, name="classifier_1")(x)
    return keras.Model(inputs, x, name="mobilenet_v2_torchvision"), units


def _conv_kernel(weight: np.ndarray, depthwise: bool) -> np.ndarray:
    # torch: (out, in/groups, kh, kw); keras Conv2D (kh, kw, in, out), depthwise (kh, kw, c, 1).
    return weight.transpose(2, 3, 0, 1) if depthwise else weight.transpose(2, 3, 1, 0)


def _assignments(units: list[_Unit], include_top: bool) -> Iterator[tuple[str, list[str]]]:
    for unit in units:
        yield unit.conv_layer, [f"{unit.conv_key}.weight"]
        yield unit.bn_layer, [f"{unit.bn_key}.{n}" for n in ("weight", "bias", "running_mean",
                                                             "running_var")]
    if include_top:
        yield "classifier_1", ["classifier.1.weight", "classifier.1.bias"]


def build_mobilenet_v2(*, include_top: bool = False, weights_path: Path | None = None) -> keras.Model:
    """Keras MobileNetV2 (torchvision layout) with torchvision's ImageNet weights.

    Input: (batch, 224, 224, 3) RGB, already scaled to [0, 1] and normalised with ImageNet
    mean/std. Output: the 1280-d global-average-pooled embedding, or 1000 logits.
    """
    state = load_state_dict(weights_path)
    model, units = _build(include_top)
    used: set[str] = set()
    by_depthwise = {u.conv_layer: u.depthwise for u in units}
    for layer_name, keys in _assignments(units, include_top):
        missing = [k for k in keys if k not in state]
        if missing:
            raise WeightsError(f"weights lack tensors {missing} needed by layer {layer_name}")
        arrays = [state[k] for k in keys]
        if layer_name in by_depthwise:
            arrays = [_conv_kernel(arrays[0], by_depthwise[layer_name])]
        elif layer_name == "classifier_1":
            arrays = [arrays[0].T, arrays[1]]
        layer = model.get_layer(layer_name)
        expected = [tuple(w.shape) for w in layer.get_weights()]
        if [a.shape for a in arrays] != expected:
            raise WeightsError(f"layer {layer_name}: weight shapes {[a.shape for a in arrays]} "
                               f"do not fit {expected}")
        layer.set_weights(arrays)
        used.update(keys)
    unused = {k for k in state if not k.endswith("num_batches_tracked")} - used
    if not include_top:
        unused -= {"classifier.1.weight", "classifier.1.bias"}
    if unused:
        raise WeightsError(f"weights hold tensors the network does not use: {sorted(unused)[:5]}")
    return model
