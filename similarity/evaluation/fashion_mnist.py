"""Read Debian's Fashion-MNIST (package dataset-fashion-mnist) as shop-style garment photos."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
from PIL import Image

# Where Debian's package installs it; callers with another copy pass its directory.
DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
CLASS_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def _read_idx(path: Path, expected_magic: int) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: install Debian's dataset-fashion-mnist package "
            "(scripts/install-system-deps.sh does)"
        )
    with gzip.open(path, "rb") as handle:
        data = handle.read()
    magic, count = struct.unpack(">II", data[:8])
    if magic != expected_magic:
        raise ValueError(f"{path}: bad IDX magic {magic:#x}, expected {expected_magic:#x}")
    if magic == 0x803:
        rows, cols = struct.unpack(">II", data[8:16])
        return np.frombuffer(data, np.uint8, offset=16).reshape(count, rows, cols)
    return np.frombuffer(data, np.uint8, offset=8).reshape(count)


def load_split(split: str = "train", directory: Path = DEFAULT_DIR) -> tuple[np.ndarray, np.ndarray]:
    """Return (images (N, 28, 28) uint8, labels (N,) uint8) for 'train' or 'test'."""
    if split not in _FILES:
        raise ValueError(f"unknown split {split!r}; use 'train' or 'test'")
    images_name, labels_name = _FILES[split]
    images = _read_idx(Path(directory) / images_name, 0x803)
    labels = _read_idx(Path(directory) / labels_name, 0x801)
    return images, labels


def balanced_indices(labels: np.ndarray, per_class: int, *, offset: int = 0) -> np.ndarray:
    """The first ``per_class`` indices of every class (after skipping ``offset`` per class)."""
    picks = []
    for cls in range(len(CLASS_NAMES)):
        where = np.flatnonzero(labels == cls)[offset : offset + per_class]
        if len(where) < per_class:
            raise ValueError(f"class {CLASS_NAMES[cls]!r} has only {len(where)} images left")
        picks.append(where)
    return np.sort(np.concatenate(picks))


def to_photo(image: np.ndarray, size: int = 224) -> Image.Image:
    """Light-on-black 28x28 → a dark garment on white, upscaled (bicubic), RGB."""
    inverted = Image.fromarray(255 - image, mode="L")
    return inverted.resize((size, size), Image.Resampling.BICUBIC).convert("RGB")
