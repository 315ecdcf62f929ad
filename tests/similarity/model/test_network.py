"""The Keras port of torchvision's MobileNetV2 gives ImageNet's known answers."""

import numpy as np
import pytest
from PIL import Image

from similarity.embedding.preprocess import get_policy


@pytest.fixture(scope="module")
def classifier():
    from similarity.model.network import build_mobilenet_v2

    return build_mobilenet_v2(include_top=True)


@pytest.fixture(scope="module")
def embedder_model():
    from similarity.model.network import build_mobilenet_v2

    return build_mobilenet_v2(include_top=False)


def _probabilities(model, photos: list[np.ndarray]) -> np.ndarray:
    policy = get_policy("torchvision")
    batch = np.stack([policy.to_array(Image.fromarray(p)) for p in photos])
    logits = model.predict(batch, verbose=0)
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def test_known_imagenet_answers(classifier, skimage_photos):
    probs = _probabilities(classifier, [skimage_photos["chelsea"], skimage_photos["coffee"]])
    assert probs.argmax(axis=1).tolist() == [285, 967]  # Egyptian cat, espresso
    assert probs[0, 285] == pytest.approx(0.71, abs=0.02)
    assert probs[1, 967] == pytest.approx(0.99, abs=0.01)


def test_parameter_counts(classifier, embedder_model):
    trainable_with_head = sum(int(np.prod(w.shape)) for w in classifier.trainable_weights)
    assert trainable_with_head == 3_504_872  # torchvision's parameter count
    assert embedder_model.count_params() == 2_257_984  # keras' no-top MobileNetV2 count
    # The two differ only by the head and the batch-norm running statistics.
    assert classifier.count_params() - embedder_model.count_params() == 1280 * 1000 + 1000


def test_embedding_is_1280_dimensional_and_pooled(embedder_model, skimage_photos):
    policy = get_policy("torchvision")
    batch = policy.to_array(Image.fromarray(skimage_photos["chelsea"]))[None]
    vector = embedder_model.predict(batch, verbose=0)
    assert embedder_model.output_shape == (None, 1280)
    assert vector.shape == (1, 1280)
    assert (vector >= 0).all() and (vector <= 6).all()  # mean of ReLU6 activations


def test_torchvision_layout_matters(embedder_model, skimage_photos):
    """Symmetric stride-2 padding and eps 1e-5: the stock keras layout gives other vectors."""
    import keras

    from similarity.model.network import _conv_kernel
    from similarity.model.weights import load_state_dict

    state = load_state_dict()
    policy = get_policy("torchvision")
    x = policy.to_array(Image.fromarray(skimage_photos["coffee"]))[None]
    weight = _conv_kernel(state["features.0.0.weight"], depthwise=False)
    ours = embedder_model.get_layer("features_0_0")(embedder_model.get_layer("features_0_0_pad")(x))
    keras_style = keras.layers.Conv2D(32, 3, 2, padding="same", use_bias=False)
    keras_style.build((None, 224, 224, 3))
    keras_style.set_weights([weight])
    theirs = keras_style(x)
    assert ours.shape == theirs.shape == (1, 112, 112, 32)
    # Same weights, shifted sampling grid: the first convolution already disagrees.
    assert float(np.abs(np.asarray(ours) - np.asarray(theirs)).max()) > 0.1
    # Ours equals a direct computation of torchvision's conv at one output position.
    padded = np.pad(x[0], ((1, 1), (1, 1), (0, 0)))
    expected = np.einsum("hwc,hwco->o", padded[0:3, 0:3], weight)
    np.testing.assert_allclose(np.asarray(ours)[0, 0, 0], expected, atol=1e-5)
