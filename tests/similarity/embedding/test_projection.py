import numpy as np
import pytest

from similarity.embedding.projection import fit_blend, load_blend, save_blend


def test_saved_blend_loads_without_pickle_and_projects_identically(tmp_path):
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 3, (3, 40))
    labels = np.repeat(["a", "b", "c"], 20)
    x = np.concatenate([c + rng.normal(0, 1, (20, 40)) for c in centres])
    projection = fit_blend(x, labels, weight=1.0, pca_dim=16, shrinkage=0.05)
    path = tmp_path / "projection.npz"
    save_blend(path, projection, "model-v1/policy@1")
    with np.load(path, allow_pickle=False) as z:  # plain arrays only
        assert "vector_key" in z.files
    loaded, vector_key = load_blend(path)
    assert vector_key == "model-v1/policy@1"
    assert loaded.key == projection.key
    np.testing.assert_allclose(loaded.transform(x), projection.transform(x))
    assert not list(tmp_path.glob("*.tmp"))


def test_a_failed_save_keeps_the_previous_file(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(30, 12))
    labels = np.repeat(["a", "b", "c"], 10)
    first = fit_blend(x, labels, weight=1.0, pca_dim=8)
    path = tmp_path / "projection.npz"
    save_blend(path, first, "k1")

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OSError, match="disk full"):
        save_blend(path, fit_blend(x, labels, weight=0.5, pca_dim=8), "k2")
    monkeypatch.undo()
    assert load_blend(path)[1] == "k1"
    assert not list(tmp_path.glob("*.tmp"))
