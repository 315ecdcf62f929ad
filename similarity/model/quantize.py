"""Post-training int8 quantisation of the embedding network for LiteRT (needs TensorFlow).

Activations are quantised per tensor with ranges from a representative data set: the
project's own garment images (Fashion-MNIST train garments as shop photos, half of them
dyed a seeded random colour, under every registered preprocessing policy in turn), fixed
seed, so a conversion is reproducible.

Garment photos are hard on int8: most of the picture is one flat white, so each layer's
rounding error is the same at every background position and survives the final average
pooling instead of averaging out. Measured on reference garments (bench/int8_bench.py
--recipes; cosine to fp32, worst of 100 plain / 100 dyed garments):

- ``minmax`` (min/max calibration): 0.69 / 0.60, 2.5x fp32's speed;
- ``ranged``: each activation range narrowed to its least-MSE one on calibration images:
  0.86 / 0.71, 2.6x;
- ``ranged-float-head`` (shipped): the same, with the first convolution and the first
  depthwise convolution left float (most of the garments' error is made there): 0.976 /
  0.936, 1.9x;
- ``dynamic`` (int8 weights, float activations): 0.995 / 0.977, but XNNPACK does not run
  it: 0.6x.

Tried and dropped: cross-layer range equalisation computed on garment photos (boosts
channels that are quiet on garments; natural photos then clip: cosine 0.89), and empirical
bias correction (worse on natural photos). Changing anything here changes int8 vectors:
bump ``QUANT_VERSION`` in similarity/model/spec.py.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from typing import TYPE_CHECKING, Literal, get_args

import numpy as np

from similarity.model.spec import INPUT_SHAPE

if TYPE_CHECKING:
    import keras
    from PIL import Image

Int8Recipe = Literal["minmax", "ranged", "ranged-float-head", "dynamic"]
RECIPES: tuple[Int8Recipe, ...] = get_args(Int8Recipe)
# The shipped int8 model; bench/int8_bench.py --recipes measures the others.
INT8_RECIPE: Int8Recipe = "ranged-float-head"
CALIBRATION_IMAGES = 320
CALIBRATION_SEED = 12
RANGE_SEARCH_IMAGES = 16
RANGE_SEARCH_SAMPLES = 400_000
RANGE_ALPHAS = tuple(float(a) for a in np.linspace(0.25, 1.0, 16))
# "ranged-float-head": the first convolution and the first depthwise convolution stay float.
FLOAT_HEAD_LAYERS = ("features_0_1_relu6", "features_1_conv_0_1_relu6")


def dye(photo: Image.Image, colour: tuple[int, int, int]) -> Image.Image:
    """A dark-on-white garment photo recoloured: white stays white, black becomes ``colour``."""
    from PIL import Image

    dark = 1.0 - np.asarray(photo.convert("L"), dtype=np.float32)[..., None] / 255.0
    rgb = 255.0 - dark * (255.0 - np.asarray(colour, dtype=np.float32))
    return Image.fromarray(np.clip(np.round(rgb), 0, 255).astype(np.uint8), mode="RGB")


def random_colours(rng: np.random.Generator, count: int) -> list[tuple[int, int, int]]:
    """``count`` RGB colours drawn from ``rng``."""
    return [(int(r), int(g), int(b)) for r, g, b in rng.integers(0, 256, size=(count, 3))]


def calibration_images(count: int = CALIBRATION_IMAGES, *, seed: int = CALIBRATION_SEED) -> np.ndarray:
    """Preprocessed garment photos (count, 224, 224, 3), every class equally, fixed order.

    Drawn (seeded) from Fashion-MNIST's train split beyond the first 200 garments per class
    that the quality benchmarks use as their catalog, so calibration never sees a benchmark
    image; every other one dyed a random colour; through ``to_photo`` and each registered
    preprocessing policy in turn, as an embedder under any policy sees them.
    """
    from similarity.embedding.preprocess import POLICIES
    from similarity.evaluation.fashion_mnist import CLASS_NAMES, balanced_indices, load_split, to_photo

    policies = [POLICIES[name] for name in sorted(POLICIES)]
    images, labels = load_split("train")
    per_class = -(-count // len(CLASS_NAMES))
    rng = np.random.default_rng(seed)
    picks = rng.choice(balanced_indices(labels, 4 * per_class, offset=200), size=count, replace=False)
    colours = random_colours(rng, count)
    out = np.empty((count, *INPUT_SHAPE), dtype=np.float32)
    for row, index in enumerate(picks):
        photo = to_photo(images[index])
        if row % 2:
            photo = dye(photo, colours[row])
        out[row] = policies[row % len(policies)].to_array(photo)
    return out


def _one_by_one(images: np.ndarray) -> Iterator[list[np.ndarray]]:
    for image in images:  # the calibrator runs one image at a time
        yield [image[None]]


def _quantisation_mse(values: np.ndarray, low: float, high: float) -> float:
    step = (high - low) / 255.0
    restored = np.clip(np.round((values - low) / step), 0, 255) * step + low
    return float(np.mean((restored - values) ** 2))


def tighten_ranges(calibrated: bytes, images: np.ndarray) -> bytes:
    """Narrow each calibrated activation range to its least-MSE one (the ``ranged`` recipe).

    ``calibrated`` is the converter's float model with min/max statistics (calibrate only);
    the statistics are rewritten in place in a copy of the flatbuffer.
    """
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    buffer = bytearray(calibrated)
    graph = schema.Model.GetRootAs(buffer, 0).Subgraphs(0)
    interpreter = Interpreter(
        model_content=bytes(buffer), num_threads=2, experimental_preserve_all_tensors=True,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    first = interpreter.get_input_details()[0]["index"]
    interpreter.resize_tensor_input(first, list(images.shape))
    interpreter.allocate_tensors()
    interpreter.set_tensor(first, images)
    interpreter.invoke()
    rng = np.random.default_rng(0)
    for index in range(graph.TensorsLength()):
        params = graph.Tensors(index).Quantization()
        if index == first or params is None or params.MinLength() != 1:
            continue  # the input keeps its range: images never exceed it
        values = interpreter.get_tensor(index).reshape(-1)
        if values.size > RANGE_SEARCH_SAMPLES:
            values = rng.choice(values, RANGE_SEARCH_SAMPLES, replace=False)
        low_view, high_view = params.MinAsNumpy(), params.MaxAsNumpy()  # views into ``buffer``
        low, high = min(float(low_view[0]), 0.0), max(float(high_view[0]), 0.0)
        alpha = min(RANGE_ALPHAS, key=lambda a: _quantisation_mse(values, low * a, high * a))
        low_view[0], high_view[0] = low * alpha, high * alpha
    return bytes(buffer)


def quantize_int8(model: keras.Model, recipe: Int8Recipe = INT8_RECIPE) -> bytes:
    """The network as an int8 LiteRT model with float input and output.

    ``minmax``: every op int8, ranges from min/max calibration; ``ranged``: least-MSE ranges;
    ``ranged-float-head`` (shipped): the same with the first two convolutions left float;
    ``dynamic``: int8 weights, float activations (no calibration).
    """
    import tensorflow as tf
    from tensorflow.lite.python.convert import mlir_quantize

    from similarity.model.saved_model import saved_model_converter

    if recipe not in RECIPES:
        raise ValueError(f"unknown int8 recipe {recipe!r}; use one of {', '.join(RECIPES)}")
    with tempfile.TemporaryDirectory(prefix="lookalike-savedmodel-") as tmp:
        converter = saved_model_converter(model, tmp)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if recipe == "dynamic":
            return bytes(converter.convert())
        images = calibration_images()
        converter.representative_dataset = lambda: _one_by_one(images)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.float32  # callers pass the same arrays as to fp32
        converter.inference_output_type = tf.float32
        if recipe == "minmax":
            return bytes(converter.convert())
        # Calibrate only: a float model carrying min/max statistics, quantised below.
        converter._experimental_calibrate_only = True
        calibrated = tighten_ranges(bytes(converter.convert()), images[:RANGE_SEARCH_IMAGES])
    denylist = _tensor_names(calibrated, FLOAT_HEAD_LAYERS) if recipe == "ranged-float-head" else None
    return bytes(mlir_quantize(calibrated, input_data_type=tf.float32, output_data_type=tf.float32,
                               denylisted_nodes=denylist))


def _tensor_names(model: bytes, fragments: tuple[str, ...]) -> list[str]:
    from ai_edge_litert import schema_py_generated as schema

    graph = schema.Model.GetRootAs(model, 0).Subgraphs(0)
    names = [graph.Tensors(i).Name().decode() for i in range(graph.TensorsLength())]
    return [n for n in names if any(f in n.split(";")[0] for f in fragments)]
