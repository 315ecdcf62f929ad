"""The converted LiteRT model: cached safely, matches the Keras reference, needs no TensorFlow."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from similarity.embedding.preprocess import get_policy
from similarity.embedding.runtime import LiteRTEmbedder
from similarity.errors import ModelCacheError
from similarity.evaluation.fashion_mnist import load_split, to_photo
from similarity.model.cache import cached_model_path
from similarity.model.spec import ModelIdentity


@pytest.fixture(scope="module")
def batch(skimage_photos) -> np.ndarray:
    policy = get_policy("torchvision")
    images, _ = load_split("test")
    photos = [Image.fromarray(p) for p in skimage_photos.values()] + [to_photo(i) for i in images[:8]]
    return np.stack([policy.to_array(p) for p in photos])


def test_litert_matches_keras_reference(model_path, data_dir, batch):
    from similarity.model.network import build_mobilenet_v2

    reference = build_mobilenet_v2().predict(batch, verbose=0)
    ours = LiteRTEmbedder(data_dir / "models", convert_if_missing=False).embed(batch)
    assert ours.shape == (len(batch), 1280) and ours.dtype == np.float32
    assert float(np.abs(ours - reference).max()) < 1e-4


def test_batches_split_and_keep_order(model_path, data_dir, batch):
    embedder = LiteRTEmbedder(data_dir / "models", batch_size=3)
    together = embedder.embed(batch)
    one_by_one = np.concatenate([embedder.embed(batch[i : i + 1]) for i in range(len(batch))])
    np.testing.assert_allclose(together, one_by_one, atol=1e-5)
    assert embedder.embed(batch[:0]).shape == (0, 1280)


def test_wrong_input_shape_is_named(model_path, data_dir):
    embedder = LiteRTEmbedder(data_dir / "models")
    with pytest.raises(ValueError, match=r"\(N, 224, 224, 3\), got \(2, 100, 100, 3\)"):
        embedder.embed(np.zeros((2, 100, 100, 3), np.float32))


def test_cache_is_keyed_by_weights_hash_and_version(model_path):
    identity = ModelIdentity()
    assert identity.weights_sha256[:16] in model_path.name
    assert f"-v{identity.version}" in model_path.name
    assert cached_model_path(model_path.parent, ModelIdentity(version=identity.version + 1)) != model_path


@pytest.mark.parametrize("damage", ["model_bytes", "manifest_weights", "manifest_version", "no_manifest"])
def test_stale_or_damaged_cache_is_never_used(model_path, tmp_path, damage):
    cache = tmp_path / "models"
    cache.mkdir()
    model = cache / model_path.name
    manifest = model.with_suffix(".json")
    shutil.copy(model_path, model)
    shutil.copy(model_path.with_suffix(".json"), manifest)
    record = json.loads(manifest.read_text())
    if damage == "model_bytes":
        data = bytearray(model.read_bytes())
        data[len(data) // 2] ^= 0xFF
        model.write_bytes(bytes(data))
    elif damage == "manifest_weights":
        manifest.write_text(json.dumps({**record, "weights_sha256": "0" * 64}))
    elif damage == "manifest_version":
        manifest.write_text(json.dumps({**record, "version": record["version"] - 1}))
    else:
        manifest.unlink()
    with pytest.raises(ModelCacheError, match="missing or stale"):
        LiteRTEmbedder(cache, convert_if_missing=False)


def test_intact_copy_of_cache_is_used(model_path, tmp_path):
    cache = tmp_path / "models"
    cache.mkdir()
    shutil.copy(model_path, cache / model_path.name)
    shutil.copy(model_path.with_suffix(".json"), cache / model_path.with_suffix(".json").name)
    vector = LiteRTEmbedder(cache, convert_if_missing=False).embed(np.zeros((1, 224, 224, 3), np.float32))
    assert vector.shape == (1, 1280)


def test_embedding_one_image_imports_no_tensorflow(model_path, data_dir, tmp_path, skimage_photos):
    photo = tmp_path / "cat.jpg"
    Image.fromarray(skimage_photos["chelsea"]).save(photo, quality=92)
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from similarity.embedding.embedder import ImageEmbedder\n"
        f"vector = ImageEmbedder(model_dir=Path({str(data_dir / 'models')!r})).embed({str(photo)!r})\n"
        "assert vector.shape == (1280,), vector.shape\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras'))\n"
        "print('LOADED', loaded)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "LOADED []" in result.stdout
