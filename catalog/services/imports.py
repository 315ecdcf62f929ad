"""Importing garments in bulk (``manage.py import_garments``): folders or Fashion-MNIST.

Every product is created through :func:`products_bulk_create_checked` and the further photos
of a product folder through :func:`product_photos_add_bulk` (one transaction per batch, each
image checked once), so their embedding is queued on commit to the real workers, in batches.
Files the engine rejects are reported with their reason and skipped; they never stop the
import.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from itertools import groupby
from pathlib import Path, PurePath

import numpy as np
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.db import transaction

from catalog.models import Product
from catalog.selectors.further_photos import products_photo_counts
from catalog.selectors.work_progress import photos_existing_sha256
from catalog.services import queue
from catalog.services.product_photos import product_photos_add_bulk
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
    name (its stem fills ``{stem}`` in the name pattern, its suffix is ignored). ``folder``
    names the product folder it is a photo of (its photos follow one another in photo order;
    the folder's name fills ``{stem}``); "" for a file that is a product of its own.
    """

    category: str
    label: str
    filename: str
    load: Callable[[], bytes]
    folder: str = ""


@dataclass(frozen=True)
class Rejection:
    label: str
    reason: str
    message: str


@dataclass
class ImportResult:
    product_ids: list[int] = field(default_factory=list)
    photo_ids: list[int] = field(default_factory=list)  # further photos (product folders)
    skipped: list[str] = field(default_factory=list)  # already in the catalog (same sha256)
    rejected: list[Rejection] = field(default_factory=list)

    @property
    def handled(self) -> int:
        """Files handled (and empty product folders, each rejected)."""
        return len(self.product_ids) + len(self.photo_ids) + len(self.skipped) + len(self.rejected)


@dataclass(frozen=True)
class DirSources:
    """What a folder import will read (``garment_dir_sources``)."""

    sources: list[ImportSource]
    loose: list[Path]  # files directly in the folder: no category, not imported
    empty_folders: list[str]  # product folders without a photo, rejected by the import

    @property
    def product_folders(self) -> int:
        return len({s.folder for s in self.sources if s.folder}) + len(self.empty_folders)


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


def _file_source(path: Path, root: Path, category: str, folder: str = "") -> ImportSource:
    return ImportSource(category=category, label=str(path.relative_to(root)), filename=path.name,
                        load=partial(_read_path, path), folder=folder)


def garment_dir_sources(*, directory: Path) -> DirSources:
    """The garments in ``directory``: each subfolder is a category; each file in a category
    folder is a product, and so is each folder in it (a product folder): the files under it,
    in file-name order, are its photos, the first its main photo.

    Sources are sorted by category, then path. Files lying directly in ``directory`` belong
    to no category and are not imported. Hidden files and folders (".name") are ignored.
    Raises ``FileNotFoundError`` / ``NotADirectoryError``.
    """
    root = Path(directory)
    if not root.exists():
        raise FileNotFoundError(f"{root} does not exist")
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is not a directory")
    found = DirSources(sources=[], loose=[], empty_folders=[])
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_file():
            found.loose.append(entry)
        elif entry.is_dir():
            _category_sources(entry, root, found)
    return found


def _category_sources(folder: Path, root: Path, found: DirSources) -> None:
    category = folder.name.strip()
    for entry in sorted(p for p in folder.iterdir() if not p.name.startswith(".")):
        if entry.is_file():
            found.sources.append(_file_source(entry, root, category))
        elif entry.is_dir():
            label = str(entry.relative_to(root))
            photos = sorted(p for p in entry.rglob("*") if p.is_file() and _visible(p, root))
            found.sources.extend(_file_source(p, root, category, label) for p in photos)
            if not photos:
                found.empty_folders.append(label)


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


def _units(items: Sequence[ImportSource]) -> Iterator[list[ImportSource]]:
    """A product folder's photos together; every other source alone."""
    for folder, group in groupby(items, key=lambda source: source.folder):
        if folder:
            yield list(group)
        else:
            yield from ([source] for source in group)


def _batches(items: Sequence[ImportSource], size: int) -> Iterator[list[ImportSource]]:
    """About ``size`` sources a batch; a product folder is never split (a larger folder is a
    batch of its own)."""
    batch: list[ImportSource] = []
    for unit in _units(items):
        if batch and len(batch) + len(unit) > size:
            yield batch
            batch = []
        batch.extend(unit)
    if batch:
        yield batch


def _error_code(exc: ValidationError) -> str:
    return str(getattr(exc, "code", None) or "invalid")


Checked = tuple[ImportSource, CheckedImage]


@dataclass
class _Importer:
    """One import's state: the result so far and the hashes already taken in this import."""

    name_pattern: str
    skip_existing: bool
    result: ImportResult = field(default_factory=ImportResult)
    seen: set[str] = field(default_factory=set)
    # Product folder → the catalog product that already holds some of its photos (with
    # skip_existing): the folder's new photos join that product.
    owners: dict[str, int] = field(default_factory=dict)

    def reject(self, source: ImportSource, reason: str, message: str) -> None:
        self.reject_label(source.label, reason, message)

    def reject_label(self, label: str, reason: str, message: str) -> None:
        self.result.rejected.append(Rejection(label, reason, message))
        logger.info("import: %s rejected (%s): %s", label, reason, message)

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

    def validate(self, loaded: list[tuple[ImportSource, bytes, str]]) -> list[Checked]:
        """The images to create, each checked once (``image_check``): duplicates skipped (if
        asked), invalid images rejected."""
        shas = [sha for *_, sha in loaded]
        existing = photos_existing_sha256(sha256s=shas) if self.skip_existing else {}
        good: list[Checked] = []
        for source, data, sha in loaded:
            if self.skip_existing and (sha in existing or sha in self.seen):
                self.result.skipped.append(source.label)
                if source.folder and sha in existing:
                    self.owners.setdefault(source.folder, existing[sha])
                continue
            try:
                checked = image_check(ContentFile(data, name=source.filename), sha256=sha)
            except ValidationError as exc:
                self.reject(source, _error_code(exc), exc.messages[0])
                continue
            self.seen.add(sha)
            good.append((source, checked))
        return good

    def create(self, good: list[Checked]) -> None:
        """The batch's products and further photos in one transaction; their embedding queued
        on commit in batches."""
        with transaction.atomic():
            with queue.embeds_held() as held:
                self.create_products([item for item in good if not item[0].folder])
                self.create_folders([item for item in good if item[0].folder])
            queue.embed_enqueue(product_ids=held)

    def create_products(self, good: list[Checked]) -> list[tuple[ImportSource, Product]]:
        """One product per image: one bulk create per category."""
        created: list[tuple[ImportSource, Product]] = []
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
            created.extend((source, p) for (source, _), p in zip(members, products, strict=True))
        return created

    def create_folders(self, good: list[Checked]) -> None:
        """A product per new product folder (its first good photo the main one, named after
        the folder), then every folder's further photos, within the photo limit."""
        folders = [list(group) for _, group in groupby(good, key=lambda item: item[0].folder)]
        owners, have = self.owners_of(folders)
        additions: list[tuple[Product, list[Checked]]] = []
        mains: list[Checked] = []
        rest_of: dict[str, list[Checked]] = {}
        for photos in folders:
            folder = photos[0][0].folder
            owner = owners.get(folder)
            photos = self.within_limit(photos, have[owner.pk] if owner else 0)
            if owner is not None:
                additions.append((owner, photos))
                continue
            mains.append((photos[0][0], replace(photos[0][1], stem=PurePath(folder).name)))
            rest_of[folder] = photos[1:]
        for source, product in self.create_products(mains):
            additions.append((product, rest_of.pop(source.folder)))
        for rest in rest_of.values():  # the folder's product was refused (a race)
            for source, _ in rest:
                self.reject(source, "no_product", "its product folder's product was not created")
        self.add_photos([(product, photos) for product, photos in additions if photos])

    def owners_of(self, folders: list[list[Checked]]
                  ) -> tuple[dict[str, Product], dict[int, int]]:
        """The catalog products that hold some of these folders' photos already, by folder,
        and how many photos each has."""
        wanted = {f[0][0].folder: self.owners[f[0][0].folder] for f in folders
                  if f[0][0].folder in self.owners}
        have = products_photo_counts(product_ids=set(wanted.values()))
        products = Product.objects.in_bulk(list(have))
        return {folder: products[pk] for folder, pk in wanted.items() if pk in products}, have

    def within_limit(self, photos: list[Checked], have: int) -> list[Checked]:
        """The folder's first photos that fit in a product's ``LOOKALIKE_MAX_PHOTOS`` (it has
        ``have`` already); the rest rejected."""
        limit = settings.LOOKALIKE_MAX_PHOTOS
        room = max(0, limit - have)
        folder = photos[0][0].folder
        kept = f"the product of {folder} has {have} already" if have else (
            f"the first {limit} usable photos of {folder} are imported")
        for source, _ in photos[room:]:
            self.reject(source, "too_many_photos",
                        f"a product has at most {limit} photos (LOOKALIKE_MAX_PHOTOS): {kept}")
        return photos[:room]

    def add_photos(self, additions: list[tuple[Product, list[Checked]]]) -> None:
        photos, refused = product_photos_add_bulk(
            additions=[(product, [checked for _, checked in items]) for product, items in additions])
        self.result.photo_ids.extend(photo.pk for photo in photos)
        for product, items in additions:
            if product.pk in refused:
                for source, _ in items:
                    self.reject(source, _error_code(refused[product.pk]),
                                refused[product.pk].messages[0])


def products_import(
    *,
    sources: Sequence[ImportSource],
    empty_folders: Sequence[str] = (),
    name_pattern: str = DIR_NAME_PATTERN,
    skip_existing: bool = False,
    batch_size: int = DEFAULT_BATCH,
    progress: Callable[[ImportResult], None] | None = None,
) -> ImportResult:
    """Create one pending product per usable source or product folder, about ``batch_size``
    sources at a time (a product folder is never split).

    Each batch is read, hashed and validated; rejected images are recorded with the
    engine's reason and skipped; with ``skip_existing`` an image whose sha256 is already a
    photo in the catalog (or earlier in this import) is skipped, and a product folder some of
    whose photos are already a product's adds its other photos to that product. The rest are
    created in one transaction per batch: products per category with
    :func:`products_bulk_create_checked`, a product folder's further photos with
    :func:`product_photos_add_bulk`, the first ``LOOKALIKE_MAX_PHOTOS`` good photos of a
    folder kept and the others rejected. Each of ``empty_folders`` is rejected.
    ``progress`` is called after every batch with the result so far.
    """
    name_pattern_check(name_pattern)
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    importer = _Importer(name_pattern=name_pattern, skip_existing=skip_existing)
    for folder in empty_folders:
        importer.reject_label(folder, "empty_folder", "the product folder holds no photo file")
    for batch in _batches(sources, batch_size):
        importer.create(importer.validate(importer.load(batch)))
        if progress is not None:
            progress(importer.result)
    return importer.result
