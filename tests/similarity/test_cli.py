"""End to end through `python -m similarity`, real files, real weights, real LiteRT."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from similarity.evaluation.fashion_mnist import CLASS_NAMES, balanced_indices, load_split, to_photo

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args: str, data_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "similarity", "--model-dir", str(data_dir / "models"), *args],
        capture_output=True, text=True, cwd=REPO, check=False,
    )


@pytest.fixture(scope="module")
def garment_files(tmp_path_factory) -> tuple[list[Path], np.ndarray]:
    """Ten garments of every class as JPEG and PNG files, in shuffled order."""
    folder = tmp_path_factory.mktemp("garments")
    images, labels = load_split("test")
    picks = np.random.default_rng(3).permutation(balanced_indices(labels, 10))
    paths = []
    for n, index in enumerate(picks):
        path = folder / f"{n:03d}.{'jpg' if n % 2 else 'png'}"
        to_photo(images[index]).save(path)
        paths.append(path)
    return paths, labels[picks]


def test_embed_writes_vectors_in_input_order(model_path, data_dir, tmp_path, garment_files):
    paths, labels = garment_files
    out = tmp_path / "vectors.npy"
    result = run_cli("embed", *map(str, paths), "--out", str(out), "--quiet", data_dir=data_dir)
    assert result.returncode == 0, result.stderr
    vectors = np.load(out, allow_pickle=False)
    assert vectors.shape == (len(paths), 1280) and vectors.dtype == np.float32

    # Input order: embedding the files reversed gives the rows reversed.
    reversed_out = tmp_path / "reversed.npy"
    assert run_cli("embed", *map(str, paths[::-1]), "--out", str(reversed_out), "--quiet",
                   data_dir=data_dir).returncode == 0
    np.testing.assert_allclose(np.load(reversed_out)[::-1], vectors, atol=1e-5)

    # Real embeddings of real garments: most nearest neighbours share the class.
    d = ((vectors[:, None] - vectors[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    same = (labels[d.argmin(axis=1)] == labels).mean()
    assert same >= 0.6, f"only {same:.2f} of nearest neighbours share the class of {CLASS_NAMES}"


def test_embed_with_another_policy_changes_vectors(model_path, data_dir, tmp_path, garment_files):
    paths, _ = garment_files
    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    assert run_cli("embed", str(paths[0]), "--out", str(a), "--quiet", data_dir=data_dir).returncode == 0
    result = run_cli("embed", str(paths[0]), "--out", str(b), "--preprocess", "pad-square",
                     "--quiet", data_dir=data_dir)
    assert result.returncode == 0, result.stderr
    assert "pad-square@1" in result.stdout
    assert not np.allclose(np.load(a), np.load(b))


def test_embed_names_the_bad_file_and_writes_nothing(model_path, data_dir, tmp_path, garment_files):
    paths, _ = garment_files
    bad = tmp_path / "notes.jpg"
    bad.write_text("this is not a picture")
    out = tmp_path / "vectors.npy"
    result = run_cli("embed", str(paths[0]), str(bad), "--out", str(out), "--quiet", data_dir=data_dir)
    assert result.returncode == 2
    assert "notes.jpg" in result.stderr
    assert not out.exists()


def test_embed_unknown_policy_is_refused(model_path, data_dir, tmp_path, garment_files):
    paths, _ = garment_files
    result = run_cli("embed", str(paths[0]), "--out", str(tmp_path / "v.npy"), "--preprocess",
                     "sepia", data_dir=data_dir)
    assert result.returncode == 2
    assert "sepia" in result.stderr and "torchvision" in result.stderr


def test_exif_rotated_photo_embeds_like_upright(model_path, data_dir, tmp_path, skimage_photos):
    upright = Image.fromarray(skimage_photos["chelsea"])
    rotated = upright.transpose(Image.Transpose.ROTATE_90)  # stored sideways...
    exif = Image.Exif()
    exif[0x0112] = 6  # ...and tagged "rotate 90° clockwise to display"
    a, b = tmp_path / "upright.jpg", tmp_path / "rotated.jpg"
    upright.save(a, quality=95)
    rotated.save(b, quality=95, exif=exif)
    out = tmp_path / "v.npy"
    assert run_cli("embed", str(a), str(b), "--out", str(out), "--quiet", data_dir=data_dir).returncode == 0
    v = np.load(out)
    cosine = float(v[0] @ v[1] / np.linalg.norm(v[0]) / np.linalg.norm(v[1]))
    assert cosine > 0.98


def _store_with_three(directory: Path, policy: str) -> None:
    from similarity.index.store import MatrixMeta, MatrixStore
    from similarity.model.weights import WEIGHTS_SHA256

    store = MatrixStore(directory, meta=MatrixMeta(weights_sha256=WEIGHTS_SHA256, policy=policy,
                                                   metric="euclidean"))
    matrix = store.load()
    vectors = np.random.default_rng(0).random((3, 1280), dtype=np.float32)
    store.upsert(matrix, [1, 2, 3], vectors)


def test_info_reports_size_model_policy_metric(tmp_path, data_dir):
    _store_with_three(tmp_path / "matrix", "torchvision@1")
    result = run_cli("info", str(tmp_path / "matrix"), data_dir=data_dir)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "3 products" in out and "torchvision@1" in out and "euclidean" in out
    assert "MobileNetV2" in out and "stale: no" in out


def test_info_detects_a_stale_matrix(tmp_path, data_dir):
    _store_with_three(tmp_path / "matrix", "pad-square@1")
    result = run_cli("info", str(tmp_path / "matrix"), "--json", data_dir=data_dir)
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["stale"] is True
    assert info["stale_because"] == ["policy is 'pad-square@1', current code uses 'torchvision@1'"]
    other_metric = run_cli("info", str(tmp_path / "matrix"), "--preprocess", "pad-square",
                           "--metric", "cosine", data_dir=data_dir)
    assert "stale: yes: metric is 'euclidean', current code uses 'cosine'" in other_metric.stdout


def test_info_on_a_missing_directory_is_a_clear_error(tmp_path, data_dir):
    result = run_cli("info", str(tmp_path / "nope"), data_dir=data_dir)
    assert result.returncode == 2
    assert "nope is not a directory" in result.stderr


def test_info_separates_a_projected_space_from_the_policy(tmp_path, data_dir):
    _store_with_three(tmp_path / "matrix", "pad-margin@1+lda-blend:blend-0123abcd")
    result = run_cli("info", str(tmp_path / "matrix"), "--preprocess", "pad-margin", data_dir=data_dir)
    assert result.returncode == 0, result.stderr
    assert "policy: pad-margin@1" in result.stdout
    assert "space: lda-blend:blend-0123abcd" in result.stdout
    assert "stale: no" in result.stdout
    reference = run_cli("info", str(tmp_path / "matrix"), data_dir=data_dir)
    assert "stale: yes: policy is 'pad-margin@1', current code uses 'torchvision@1'" in reference.stdout


def test_prepare_and_embed_take_a_precision(int8_model_path, model_path, data_dir, tmp_path, garment_files):
    result = run_cli("prepare", "--precision", "int8", data_dir=data_dir)
    assert result.returncode == 0, result.stderr
    assert int8_model_path.name in result.stdout
    paths, _ = garment_files
    out = {}
    for precision in ("fp32", "int8"):
        out[precision] = tmp_path / f"{precision}.npy"
        result = run_cli("embed", *map(str, paths[:4]), "--out", str(out[precision]), "--quiet",
                         "--precision", precision, data_dir=data_dir)
        assert result.returncode == 0, result.stderr
        assert ("-int8q" in result.stdout) == (precision == "int8")
    fp32, int8 = np.load(out["fp32"]), np.load(out["int8"])
    assert fp32.shape == int8.shape == (4, 1280) and not np.allclose(fp32, int8, atol=1e-4)
    assert run_cli("embed", str(paths[0]), "--out", str(tmp_path / "x.npy"), "--precision", "fp16",
                   data_dir=data_dir).returncode == 2
