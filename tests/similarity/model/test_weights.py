import io
import pickle
import shutil
import struct
import sys
import types
from collections import OrderedDict

import numpy as np
import pytest

from similarity.errors import WeightsError
from similarity.model.weights import (
    TENSOR_COUNT,
    WEIGHTS_SHA256,
    WEIGHTS_SIZE,
    default_weights_path,
    file_sha256,
    load_state_dict,
    parse_legacy_checkpoint,
    verify_weights,
)


def test_installed_file_is_torchvisions_release():
    path = default_weights_path()
    assert path.stat().st_size == WEIGHTS_SIZE
    assert file_sha256(path) == WEIGHTS_SHA256
    # torchvision names the file after the first 8 hex digits of its sha256.
    assert WEIGHTS_SHA256[:8] in path.name


def test_state_dict_has_every_tensor_with_torchvision_shapes():
    state = load_state_dict()
    assert len(state) == TENSOR_COUNT
    assert state["features.0.0.weight"].shape == (32, 3, 3, 3)
    assert state["features.1.conv.0.0.weight"].shape == (32, 1, 3, 3)
    assert state["features.18.0.weight"].shape == (1280, 320, 1, 1)
    assert state["classifier.1.weight"].shape == (1000, 1280)
    assert state["classifier.1.weight"].dtype == np.float32
    params = sum(v.size for k, v in state.items()
                 if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    assert params == 3_504_872
    assert np.isfinite(state["features.5.conv.1.1.running_var"]).all()


def test_missing_file_is_named(tmp_path):
    missing = tmp_path / "nowhere.pth"
    with pytest.raises(WeightsError, match=r"nowhere\.pth: weights file not found"):
        load_state_dict(missing)


def test_altered_file_is_refused_before_reading(tmp_path):
    copy = tmp_path / "mobilenet_v2-b0353104.pth"
    shutil.copy(default_weights_path(), copy)
    with copy.open("r+b") as handle:
        handle.seek(WEIGHTS_SIZE // 2)
        byte = handle.read(1)
        handle.seek(WEIGHTS_SIZE // 2)
        handle.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(WeightsError, match=r"mobilenet_v2-b0353104\.pth: sha256 is [0-9a-f]{64}, expected"):
        verify_weights(copy)


def _legacy_header() -> bytes:
    out = io.BytesIO()
    for obj in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True}):
        pickle.dump(obj, out, protocol=2)
    return out.getvalue()


class _Evil:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_checkpoint_asking_for_another_global_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"
    payload = _legacy_header() + pickle.dumps(OrderedDict(x=_Evil(str(marker))), protocol=2)
    with pytest.raises(WeightsError, match=r"evil\.pth: refused to load global (posix|os)\.system"):
        parse_legacy_checkpoint(payload, tmp_path / "evil.pth")
    assert not marker.exists()


def test_foreign_file_is_refused(tmp_path):
    with pytest.raises(WeightsError, match="not a torch legacy checkpoint"):
        parse_legacy_checkpoint(b"PK\x03\x04 this is a zip, not a legacy checkpoint", tmp_path / "x.pth")


def test_truncated_storage_is_refused(tmp_path):
    data = default_weights_path().read_bytes()
    with pytest.raises(WeightsError, match=r"truncated or has the wrong size|unpack"):
        parse_legacy_checkpoint(data[:-1000], tmp_path / "cut.pth")


class _Storage:
    def __init__(self, key: str, values: np.ndarray) -> None:
        self.key, self.values = key, values


class _Tensor:
    def __init__(self, storage: _Storage, offset: int, shape: tuple, stride: tuple) -> None:
        self.args = (storage, offset, shape, stride, False, OrderedDict())

    def __reduce__(self):
        return (sys.modules["torch._utils"]._rebuild_tensor_v2, self.args)


@pytest.fixture
def fake_torch(monkeypatch):
    """Modules named like torch's, so pickle writes the same globals torch.save does."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    class FloatStorage:
        pass

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called while pickling")

    FloatStorage.__module__ = "torch"
    FloatStorage.__qualname__ = "FloatStorage"
    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    torch.FloatStorage = FloatStorage
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)
    return torch


def _checkpoint(fake_torch, tensors: dict, storages: list, declared: dict | None = None) -> bytes:
    body = io.BytesIO()
    pickler = pickle.Pickler(body, protocol=2)

    def persistent_id(obj):
        if isinstance(obj, _Storage):
            numel = (declared or {}).get(obj.key, obj.values.size)
            return ("storage", fake_torch.FloatStorage, obj.key, "cpu", numel, None)
        return None

    pickler.persistent_id = persistent_id
    pickler.dump(OrderedDict(tensors))
    pickle.dump([s.key for s in storages], body, protocol=2)
    for storage in storages:
        body.write(struct.pack("<q", storage.values.size) + storage.values.astype("<f4").tobytes())
    return _legacy_header() + body.getvalue()


def test_synthetic_checkpoint_with_offsets_and_strides_is_read_exactly(fake_torch, tmp_path):
    values = np.arange(12, dtype=np.float32)
    storage = _Storage("7", values)
    tensors = {
        "plain": _Tensor(storage, 0, (3, 4), (4, 1)),
        "transposed": _Tensor(storage, 0, (4, 3), (1, 4)),
        "tail": _Tensor(storage, 8, (4,), (1,)),
    }
    state = parse_legacy_checkpoint(_checkpoint(fake_torch, tensors, [storage]), tmp_path / "ok.pth")
    np.testing.assert_array_equal(state["plain"], values.reshape(3, 4))
    np.testing.assert_array_equal(state["transposed"], values.reshape(3, 4).T)
    np.testing.assert_array_equal(state["tail"], values[8:])


def test_storage_shorter_than_declared_is_refused(fake_torch, tmp_path):
    storage = _Storage("0", np.arange(3, dtype=np.float32))
    data = _checkpoint(fake_torch, {"w": _Tensor(storage, 0, (3,), (1,))}, [storage], {"0": 4})
    with pytest.raises(WeightsError, match=r"short\.pth: storage '0' is truncated or has the wrong size"):
        parse_legacy_checkpoint(data, tmp_path / "short.pth")


def test_tensor_reaching_past_its_storage_is_refused(fake_torch, tmp_path):
    storage = _Storage("0", np.arange(3, dtype=np.float32))
    data = _checkpoint(fake_torch, {"w": _Tensor(storage, 1, (3,), (1,))}, [storage])
    with pytest.raises(WeightsError, match="reaches past its storage"):
        parse_legacy_checkpoint(data, tmp_path / "oob.pth")
