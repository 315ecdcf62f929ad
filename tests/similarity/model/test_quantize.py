"""The int8 model: its own cache entry and key, refused when damaged or foreign, close to fp32."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from similarity.embedding.embedder import ImageEmbedder
from similarity.embedding.preprocess import get_policy
from similarity.embedding.runtime import LiteRTEmbedder
from similarity.errors import ModelCacheError
from similarity.evaluation.fashion_mnist import balanced_indices, load_split, to_photo
from similarity.model.cache import cached_model_path
from similarity.model.quantize import dye, random_colours
from similarity.model.spec import MODEL_VERSION, QUANT_VERSION, ModelIdentity
from similarity.model.weights import WEIGHTS_SHA256

INT8 = ModelIdentity(precision="int8")


def _copy_cache(model: Path, manifest: Path, cache: Path, identity: ModelIdentity) -> tuple[Path, Path]:
    """Copy a model and its manifest into ``cache`` under the file names of ``identity``."""
    cache.mkdir(exist_ok=True)
    target = cached_model_path(cache, identity)
    shutil.copy(model, target)
    shutil.copy(manifest, target.with_suffix(".json"))
    return target, target.with_suffix(".json")


@pytest.fixture(scope="module")
def reference_batches(skimage_photos) -> dict[str, np.ndarray]:
    """scikit-image's cat and coffee, and garments plain and dyed, under the reference policy."""
    policy = get_policy("torchvision")
    images, labels = load_split("test")
    garments = [to_photo(images[i]) for i in balanced_indices(labels, 2)]
    dyed = [dye(g, c) for g, c in zip(garments, random_colours(np.random.default_rng(7), 20), strict=True)]
    photos = [Image.fromarray(p) for p in skimage_photos.values()]
    sets = {"photos": photos, "garments": garments, "dyed": dyed}
    return {name: np.stack([policy.to_array(p) for p in photos]) for name, photos in sets.items()}


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_fp32_stays_the_default_with_its_old_key(model_path, data_dir):
    assert ModelIdentity().precision == "fp32"
    # The key fp32 vectors were stored under before int8 existed: they stay current.
    assert ModelIdentity().key == f"mobilenet_v2-{WEIGHTS_SHA256[:16]}-v{MODEL_VERSION}"
    assert ImageEmbedder(model_dir=data_dir / "models").model == ModelIdentity()


def test_int8_model_is_cached_under_its_own_key(int8_model_path, model_path):
    assert INT8.key == f"{ModelIdentity().key}-int8q{QUANT_VERSION}"
    assert int8_model_path == cached_model_path(model_path.parent, INT8) != model_path
    manifest = json.loads(int8_model_path.with_suffix(".json").read_text())
    assert manifest["precision"] == "int8" and manifest["quant_version"] == QUANT_VERSION
    assert manifest["weights_sha256"] == WEIGHTS_SHA256 and manifest["version"] == MODEL_VERSION
    assert json.loads(model_path.with_suffix(".json").read_text()).get("precision", "fp32") == "fp32"
    # A quantised model: float in and out, int8 inside, and a quarter of the fp32 size or so.
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(int8_model_path))
    assert interpreter.get_input_details()[0]["dtype"] == np.float32
    assert interpreter.get_output_details()[0]["dtype"] == np.float32
    assert sum(d["dtype"] == np.int8 for d in interpreter.get_tensor_details()) > 100
    assert int8_model_path.stat().st_size < model_path.stat().st_size / 3


def test_a_new_quantisation_makes_a_new_key():
    assert ModelIdentity(precision="int8", quant_version=QUANT_VERSION + 1).key != INT8.key
    assert ModelIdentity(quant_version=QUANT_VERSION + 1).key == ModelIdentity().key  # fp32 unaffected


def test_unknown_precision_is_refused(data_dir):
    with pytest.raises(ValueError, match="unknown precision 'fp16'"):
        ModelIdentity(precision="fp16")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown precision"):
        ImageEmbedder(model_dir=data_dir / "models", precision="bf16")  # type: ignore[arg-type]


@pytest.mark.parametrize("damage", ["model_bytes", "manifest_precision", "manifest_quant_version",
                                    "no_manifest"])
def test_damaged_or_stale_int8_cache_is_never_used(int8_model_path, tmp_path, damage):
    model, manifest = _copy_cache(int8_model_path, int8_model_path.with_suffix(".json"), tmp_path / "m", INT8)
    record = json.loads(manifest.read_text())
    if damage == "model_bytes":
        data = bytearray(model.read_bytes())
        data[len(data) // 2] ^= 0xFF
        model.write_bytes(bytes(data))
    elif damage == "manifest_precision":
        manifest.write_text(json.dumps({**record, "precision": "fp32"}))
    elif damage == "manifest_quant_version":
        manifest.write_text(json.dumps({**record, "quant_version": QUANT_VERSION - 1}))
    else:
        manifest.unlink()
    with pytest.raises(ModelCacheError, match="missing or stale"):
        LiteRTEmbedder(tmp_path / "m", precision="int8", convert_if_missing=False)


def test_a_model_of_the_other_precision_is_refused(int8_model_path, model_path, tmp_path):
    # The fp32 model and manifest under the int8 file names, and the other way round.
    _copy_cache(model_path, model_path.with_suffix(".json"), tmp_path / "a", INT8)
    with pytest.raises(ModelCacheError, match="missing or stale"):
        LiteRTEmbedder(tmp_path / "a", precision="int8", convert_if_missing=False)
    _copy_cache(int8_model_path, int8_model_path.with_suffix(".json"), tmp_path / "b", ModelIdentity())
    with pytest.raises(ModelCacheError, match="missing or stale"):
        LiteRTEmbedder(tmp_path / "b", convert_if_missing=False)


def test_an_fp32_manifest_from_before_int8_is_still_used(model_path, tmp_path):
    _, manifest = _copy_cache(model_path, model_path.with_suffix(".json"), tmp_path / "m", ModelIdentity())
    record = json.loads(manifest.read_text())
    record.pop("precision", None)
    manifest.write_text(json.dumps(record))
    embedder = LiteRTEmbedder(tmp_path / "m", convert_if_missing=False)
    vector = embedder.embed(np.zeros((1, 224, 224, 3), np.float32))
    assert vector.shape == (1, 1280)


def test_int8_vectors_track_fp32(int8_model_path, model_path, data_dir, reference_batches):
    """A guard against a broken quantisation: far below the 0.99 goal would be a bug."""
    fp32 = LiteRTEmbedder(data_dir / "models", convert_if_missing=False)
    int8 = LiteRTEmbedder(data_dir / "models", precision="int8", convert_if_missing=False)
    for name, batch in reference_batches.items():
        cos = _cosines(fp32.embed(batch), int8.embed(batch))
        assert cos.min() >= 0.9 and cos.mean() >= 0.95, f"{name}: cosine to fp32 {np.round(cos, 3)}"


@pytest.mark.xfail(strict=True, reason="the 0.99 criterion is not met by post-training int8 "
                   "(measured in bench/int8_bench.py); strict: passing would mean the default can move")
def test_int8_vectors_within_cosine_0_99_of_fp32(int8_model_path, model_path, data_dir, reference_batches):
    fp32 = LiteRTEmbedder(data_dir / "models", convert_if_missing=False)
    int8 = LiteRTEmbedder(data_dir / "models", precision="int8", convert_if_missing=False)
    worst = {name: float(_cosines(fp32.embed(batch), int8.embed(batch)).min())
             for name, batch in reference_batches.items()}
    assert min(worst.values()) >= 0.99, worst


def test_image_embedder_honours_precision(int8_model_path, model_path, data_dir, tmp_path, skimage_photos):
    photo = tmp_path / "cat.jpg"
    Image.fromarray(skimage_photos["chelsea"]).save(photo, quality=92)
    int8 = ImageEmbedder(model_dir=data_dir / "models", precision="int8")
    fp32 = ImageEmbedder(model_dir=data_dir / "models")
    assert int8.model == INT8 and int8.model.key != fp32.model.key
    a, b = fp32.embed(photo), int8.embed(photo)
    assert a.shape == b.shape == (1280,) and b.dtype == np.float32
    assert not np.allclose(a, b, atol=1e-4)  # really the other model
    assert _cosines(a[None], b[None])[0] > 0.9
    np.testing.assert_array_equal(int8.embed_many([photo, photo])[1], b)
