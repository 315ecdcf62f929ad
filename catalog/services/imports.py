"""Importing garments in bulk (``manage.py import_garments``): folders or Fashion-MNIST.

Every product is created through :func:`products_bulk_create_checked` (one transaction per
batch and category, each image checked once), so its embedding is queued on commit to the
real workers, in batches. Files the
engine rejects are reported with their reason and skipped; they never stop the import.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from itertools import groupby
from pathlib import Path

import numpy as np
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile

from catalog.selectors.work_progress import products_existing_sha256
from catalog.services.products import (
    CheckedImage,
    image_check,
    products_bulk_create_checked,
)
from catalog.vectors import image_limits, sha256_hex
from similarity import CLASS_NAMES, ImageRejected, balanced_indices, load_split, to_photo

logger = logging.getLogger(__name__)

DEFAULT_BATCH = 100
DIR_NAME_PATTERN = "{stem}"
FASHION_MNIST_NAME_PATTERN = "{category} {n}"


@dataclass(frozen=True)
class ImportSource:
    """One garment to import; its bytes are read only when its batch is processed.

    ``label`` names it in reports (a relative path, "train #123"); ``filename`` is the upload
    name (its stem fills ``{stem}`` in the name pattern, its suffix is ignored).
    """

    category: str
    label: str
    filename: str
    load: Callable[[], bytes]


@dataclass(frozen=True)
class Rejection:
    label: str
    reason: str
    message: str


@dataclass
class ImportResult:
    product_ids: list[int] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # already in the catalog (same sha256)
    rejected: list[Rejection] = field(default_factory=list)

    @property
    def handled(self) -> int:
        return len(self.product_ids) + len(self.skipped) + len(self.rejected)


# ------------------------------------------------------------------------------- sources


def _read_path(path: Path) -> bytes:
    """The file's bytes; a file over the upload limit is refused before it is read."""
    limit = image_limits().max_bytes
    size = path.stat().st_size
    if size > limit:
        raise ImageRejected("too_large", f"image is {size:,} bytes, over the {limit:,} bytes limit")
    return path.read_bytes()


def _visible(path: Path, root: Path) -> bool:
    return not any(part.startswith(".") for part in path.relative_to(root).parts)


def garment_dir_sources(*, directory: Path) -> tuple[list[ImportSource], list[Path]]:
    """Every file under each subfolder of ``directory``; the subfolder's name is the category.

    Returns the sources (sorted by category, then path) and the files lying directly in
    ``directory``, which belong to no category and are not imported. Hidden files and
    folders (".name") are ignored. Raises ``FileNotFoundError`` / ``NotADirectoryError``.
    """
    root = Path(directory)
    if not root.exists():
        raise FileNotFoundError(f"{root} does not exist")
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is not a directory")
    sources: list[ImportSource] = []
    loose: list[Path] = []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_file():
            loose.append(entry)
            continue
        if not entry.is_dir():
            continue
        category = entry.name.strip()
        for path in sorted(p for p in entry.rglob("*") if p.is_file() and _visible(p, root)):
            sources.append(
                ImportSource(
                    category=category,
                    label=str(path.relative_to(root)),
                    filename=path.name,
                    load=partial(_read_path, path),
                )
            )
    return sources, loose


def _fashion_png(image: np.ndarray, size: int) -> bytes:
    buf = io.BytesIO()
    to_photo(image, size).save(buf, format="PNG")
    return buf.getvalue()


def fashion_mnist_sources(
    *, split: str = "train", per_class: int = 200, offset: int = 0, size: int = 224,
    directory: Path | None = None,
) -> list[ImportSource]:
    """``per_class`` garments of each of the 10 classes as dark-on-white ``size`` px PNGs.

    Categories are the class names ("T-shirt/top", "Trouser", …); sources are ordered by
    class so that a batch holds one category. Raises ``FileNotFoundError`` if Debian's
    dataset-fashion-mnist is not installed, ``ValueError`` for a bad split or too few images.
    """
    if per_class < 1:
        raise ValueError(f"per_class must be at least 1, got {per_class}")
    if offset < 0:
        raise ValueError(f"offset must not be negative, got {offset}")
    images, labels = load_split(split, directory or Path(settings.LOOKALIKE_FASHION_MNIST_DIR))
    picks = balanced_indices(labels, per_class, offset=offset)
    order = sorted((int(labels[i]), int(i)) for i in picks)
    return [
        ImportSource(
            category=CLASS_NAMES[label],
            label=f"fashion-mnist {split} #{index}",
            filename=f"fashion-mnist-{split}-{index}.png",
            load=partial(_fashion_png, images[index], size),
        )
        for label, index in order
    ]


# ------------------------------------------------------------------------------- import


def name_pattern_check(name_pattern: str) -> None:
    """Raise ``ValueError`` unless the pattern only uses {category}, {n} and {stem}."""
    try:
        name = name_pattern.format(category="Category", n=1, stem="stem")
    except (KeyError, IndexError, ValueError, AttributeError) as exc:
        raise ValueError(
            f"name pattern {name_pattern!r} is invalid: use {{category}}, {{n}} and {{stem}}"
        ) from exc
    if not name.strip():
        raise ValueError(f"name pattern {name_pattern!r} gives empty names")


def _batches(items: Sequence[ImportSource], size: int) -> Iterator[Sequence[ImportSource]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _error_code(exc: ValidationError) -> str:
    return str(getattr(exc, "code", None) or "invalid")


@dataclass
class _Importer:
    """One import's state: the result so far and the hashes already taken in this import."""

    name_pattern: str
    skip_existing: bool
    result: ImportResult = field(default_factory=ImportResult)
    seen: set[str] = field(default_factory=set)

    def reject(self, source: ImportSource, reason: str, message: str) -> None:
        self.result.rejected.append(Rejection(source.label, reason, message))
        logger.info("import: %s rejected (%s): %s", source.label, reason, message)

    def load(self, batch: Sequence[ImportSource]) -> list[tuple[ImportSource, bytes, str]]:
        """(source, bytes, sha256) of every source that could be read."""
        loaded: list[tuple[ImportSource, bytes, str]] = []
        for source in batch:
            try:
                data = source.load()
            except ImageRejected as exc:
                self.reject(source, exc.reason, exc.message)
                continue
            except OSError as exc:
                self.reject(source, "unreadable", f"cannot read the file: {exc}")
                continue
            loaded.append((source, data, sha256_hex(data)))
        return loaded

    def validate(self, loaded: list[tuple[ImportSource, bytes, str]]
                 ) -> list[tuple[ImportSource, CheckedImage]]:
        """The images to create, each checked once (``image_check``): duplicates skipped (if
        asked), invalid images rejected."""
        shas = [sha for *_, sha in loaded]
        existing = products_existing_sha256(sha256s=shas) if self.skip_existing else set()
        good: list[tuple[ImportSource, CheckedImage]] = []
        for source, data, sha in loaded:
            if self.skip_existing and (sha in existing or sha in self.seen):
                self.result.skipped.append(source.label)
                continue
            try:
                checked = image_check(ContentFile(data, name=source.filename), sha256=sha)
            except ValidationError as exc:
                self.reject(source, _error_code(exc), exc.messages[0])
                continue
            self.seen.add(sha)
            good.append((source, checked))
        return good

    def create(self, good: list[tuple[ImportSource, CheckedImage]]) -> None:
        """One bulk create per category (embedding queued on commit)."""
        for category, group in groupby(good, key=lambda item: item[0].category):
            members = list(group)
            try:
                products = products_bulk_create_checked(
                    images=[checked for _, checked in members], category=category,
                    name_pattern=self.name_pattern,
                )
            except ValidationError as exc:  # validated above: only a race can get here
                for source, _ in members:
                    self.reject(source, _error_code(exc), "; ".join(exc.messages))
                continue
            self.result.product_ids.extend(p.pk for p in products)


def products_import(
    *,
    sources: Sequence[ImportSource],
    name_pattern: str = DIR_NAME_PATTERN,
    skip_existing: bool = False,
    batch_size: int = DEFAULT_BATCH,
    progress: Callable[[ImportResult], None] | None = None,
) -> ImportResult:
    """Create one pending product per usable source, ``batch_size`` sources at a time.

    Each batch is read, hashed and validated; rejected images are recorded with the
    engine's reason and skipped; with ``skip_existing`` an image whose sha256 is already in
    the catalog (or earlier in this import) is skipped. The rest are created per category
    with :func:`products_bulk_create` (embedding queued on commit). ``progress`` is called
    after every batch with the result so far.
    """
    name_pattern_check(name_pattern)
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    importer = _Importer(name_pattern=name_pattern, skip_existing=skip_existing)
    for batch in _batches(sources, batch_size):
        importer.create(importer.validate(importer.load(batch)))
        if progress is not None:
            progress(importer.result)
    return importer.result
