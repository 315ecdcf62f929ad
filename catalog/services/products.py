"""Creating, changing and deleting products; every image is fully decoded under limits first."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import PurePath

from django.core.exceptions import ValidationError
from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import Storage
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.text import slugify

from catalog.engine import lists_within_category
from catalog.models import Product
from catalog.services import queue
from catalog.services.skus import sku_free, sku_from_stem, sku_validate, skus_unique
from catalog.vectors import image_limits, sha256_hex
from similarity import ImageRejected, check_image

logger = logging.getLogger(__name__)

_SLUG_MAX = Product._meta.get_field("slug").max_length or 220
_NAME_MAX = Product._meta.get_field("name").max_length or 200
# Inserts tried while other requests take the derived SKU or slug first.
_INSERT_ATTEMPTS = 5
_SUFFIX_BY_FORMAT = {"JPEG": ".jpg", "MPO": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif"}


@dataclass(frozen=True)
class CheckedImage:
    """An image checked under the limits once (``image_check``): its bytes, hash and file
    suffix."""

    data: bytes
    sha256: str
    suffix: str
    stem: str = "image"


def _read_bounded(file: File) -> bytes:
    limits = image_limits()
    size = getattr(file, "size", None)
    if isinstance(size, int) and size > limits.max_bytes:
        # Refuse before reading anything.
        raise ValidationError(
            f"image is {size:,} bytes, over the {limits.max_bytes:,} bytes limit",
            code="too_large",
            params={"reason": "too_large"},
        )
    if hasattr(file, "seek"):
        file.seek(0)
    data = file.read(limits.max_bytes + 1)
    if hasattr(file, "seek"):
        file.seek(0)
    return data if isinstance(data, bytes) else bytes(data)


def image_check(file: File, *, sha256: str | None = None) -> CheckedImage:
    """Read ``file`` (bounded) and check it under the configured limits (``check_image``:
    headers, limits, the whole compressed stream); raise ``ValidationError`` (code = the
    engine's reason) if it is not a usable image. ``sha256``: the bytes' hash, if the caller
    has it already (an import hashes each file to skip duplicates before checking it)."""
    data = _read_bounded(file)
    try:
        fmt = check_image(data, limits=image_limits())
    except ImageRejected as exc:
        raise ValidationError(exc.message, code=exc.reason, params={"reason": exc.reason}) from exc
    return CheckedImage(data=data, sha256=sha256 or sha256_hex(data),
                        suffix=_SUFFIX_BY_FORMAT.get(fmt, ".img"), stem=_stem(file))


def checked_image(image: File | CheckedImage) -> CheckedImage:
    """``image`` as ``image_check`` returns it, checked now unless the caller checked it."""
    return image if isinstance(image, CheckedImage) else image_check(image)


def image_validate(file: File) -> None:
    """Raise ``ValidationError`` (code = the engine's reason) unless ``file`` is a usable image.

    The file is read at most up to the size limit plus one byte and left at position 0.
    """
    image_check(file)


def _stem(file: File) -> str:
    return PurePath(getattr(file, "name", "") or "image").stem or "image"


def _slug_base(name: str) -> str:
    return (slugify(name) or "product")[: _SLUG_MAX - 9].strip("-") or "product"


def _slug_unique(name: str, also_taken: Collection[str] = ()) -> str:
    base = _slug_base(name)
    taken = set(Product.objects.filter(slug__startswith=base).values_list("slug", flat=True))
    taken.update(also_taken)
    if base not in taken:
        return base
    for n in range(2, 10_000):
        candidate = f"{base}-{n}"
        if candidate not in taken:
            return candidate
    return f"{base}-{uuid.uuid4().hex[:8]}"


def _slugs_unique(names: Sequence[str]) -> list[str]:
    """A free slug per name: one query for the batch (profiled: a query per product was a
    quarter of an import's CPU); only names whose slug is taken look further."""
    bases = [_slug_base(name) for name in names]
    taken = set(Product.objects.filter(slug__in=set(bases)).values_list("slug", flat=True))
    slugs: list[str] = []
    for name, base in zip(names, bases, strict=True):
        slug = base if base not in taken else _slug_unique(name, also_taken=taken)
        taken.add(slug)
        slugs.append(slug)
    return slugs


def _product(*, name: str, category: str, checked: CheckedImage, slug: str, sku: str) -> Product:
    """An unsaved pending product with its image file stored, checked field by field."""
    product = Product(
        name=name[:_NAME_MAX],
        sku=sku,
        category=category,
        slug=slug,
        image_sha256=checked.sha256,
        status=Product.Status.PENDING,
        status_changed_at=timezone.now(),
    )
    product.image.save(f"upload{checked.suffix}", ContentFile(checked.data), save=False)
    # The slug is free (checked by the caller; the unique constraint settles a race).
    try:
        product.full_clean(exclude=["image"], validate_unique=False)
    except ValidationError:
        product.image.delete(save=False)
        raise
    return product


def _slug_free(slug: str) -> None:
    if Product.objects.filter(slug=slug).exists():
        raise ValidationError(f"the slug {slug!r} is already used", code="slug_taken")


def _insert(product: Product) -> IntegrityError | None:
    """Insert ``product`` in a savepoint. If its SKU or slug was taken by a transaction that
    committed after they were checked (PostgreSQL makes the second INSERT of a value wait for
    the first transaction, then fail if that one commits), delete its image file and return
    the error."""
    try:
        with transaction.atomic():
            product.save()
    except IntegrityError as exc:
        taken = Product.objects.filter(Q(sku=product.sku) | Q(slug=product.slug)).exists()
        if not taken:
            raise  # another constraint: not a race
        product.image.delete(save=False)
        return exc
    return None


def _new_product(*, name: str, category: str, checked: CheckedImage, slug: str | None,
                 sku: str | None) -> Product:
    """Insert a new product. A SKU or slug the caller gave that another request takes first
    raises ``sku_taken`` or ``slug_taken``, as if it had been taken before; derived ones are
    derived again."""
    if slug:
        _slug_free(slug)
    if sku:
        sku_free(sku_validate(sku))
    error: IntegrityError | None = None
    for _ in range(_INSERT_ATTEMPTS):
        product = _product(name=name, category=category, checked=checked,
                           slug=slug or _slug_unique(name),
                           sku=sku or skus_unique([sku_from_stem(checked.stem)])[0])
        error = _insert(product)
        if error is None:
            return product
        if sku:
            sku_free(sku)
        if slug:
            _slug_free(slug)
    assert error is not None
    raise error


def delete_file_on_commit(storage: Storage, name: str) -> None:
    def delete() -> None:
        if name and storage.exists(name):
            storage.delete(name)

    transaction.on_commit(delete, robust=True)


@transaction.atomic
def product_create(*, name: str, category: str, image: File | CheckedImage,
                   slug: str | None = None, sku: str | None = None) -> Product:
    """Validate the image fully (unless it was checked already, ``image_check``), save the
    product (pending) and queue its embedding on commit. Without a ``sku``, one is derived
    from the image's file name.

    A rejected image raises ``ValidationError`` whose code is the reason; nothing is saved.
    """
    checked = checked_image(image)
    product = _new_product(name=name, category=category, checked=checked, slug=slug, sku=sku)
    queue.embed_enqueue(product_ids=[product.pk])
    return product


def _set_name_category(product: Product, *, name: str | None, category: str | None) -> list[str]:
    """Set the name and category where given and different; return their names."""
    fields: list[str] = []
    if name is not None and name[:_NAME_MAX] != product.name:
        product.name = name[:_NAME_MAX]
        fields.append("name")
    if category is not None and category != product.category:
        product.category = category
        fields.append("category")
    return fields


@transaction.atomic
def _set_text_fields(product: Product, *, name: str | None, category: str | None,
                     slug: str | None) -> list[str]:
    """Set the given text fields that differ; return their names."""
    fields = _set_name_category(product, name=name, category=category)
    if slug and slug != product.slug:
        if Product.objects.filter(slug=slug).exclude(pk=product.pk).exists():
            raise ValidationError(f"the slug {slug!r} is already used", code="slug_taken")
        product.slug = slug
        fields.append("slug")
    return fields


def _set_image(product: Product, image: File | CheckedImage) -> bool:
    """Store new image bytes and make the product pending; False if the bytes are the same."""
    checked = checked_image(image)
    if checked.sha256 == product.image_sha256:
        return False
    old_name, storage = product.image.name, product.image.storage
    product.image.save(f"upload{checked.suffix}", ContentFile(checked.data), save=False)
    product.image_sha256 = checked.sha256
    product.status = Product.Status.PENDING
    product.error_message = ""
    product.status_changed_at = timezone.now()
    if old_name and old_name != product.image.name:
        delete_file_on_commit(storage, old_name)
    return True


def product_update(
    *,
    product: Product,
    name: str | None = None,
    category: str | None = None,
    image: File | CheckedImage | None = None,
    slug: str | None = None,
) -> Product:
    """Change fields; new image bytes (a file, or an image ``image_check`` checked) make the
    product pending again and queue it.

    Re-saving the same bytes changes nothing about the image and queues nothing.
    """
    fields = _set_text_fields(product, name=name, category=category, slug=slug)
    image_changed = image is not None and _set_image(product, image)
    if image_changed:
        fields += ["image", "image_sha256", "status", "error_message", "status_changed_at"]
    if fields:
        product.full_clean(exclude=["image"], validate_unique=False)
        product.save(update_fields=[*fields, "updated_at"])
    if image_changed:
        queue.embed_enqueue(product_ids=[product.pk])
    elif "category" in fields and lists_within_category():
        _category_moved(product)
    return product


def _category_moved(product: Product) -> None:
    """Lists stay inside categories: the product moves to its new category's partition, so its
    committed list no longer counts as current (``indexed_as``) and the index writer redoes it
    and every list it leaves or enters."""
    Product.objects.filter(pk=product.pk).update(indexed_as="")
    queue.index_enqueue(product_ids=[product.pk])


@transaction.atomic
def product_delete(*, product: Product) -> None:
    """Delete the product (its neighbour rows go with it); the matrix forgets it on commit."""
    products_delete(product_ids=[product.pk])


@transaction.atomic
def products_delete(*, product_ids: Sequence[int]) -> int:
    """Delete many products (admin bulk delete); returns how many existed."""
    doomed = list(Product.objects.filter(pk__in=list(product_ids)).prefetch_related("photos"))
    for product in doomed:
        files = [product.image, *(photo.image for photo in product.photos.all())]
        product.delete()
        for file in files:
            delete_file_on_commit(file.storage, file.name or "")
    queue.remove_enqueue(product_ids=[p for p in product_ids if p is not None])
    return len(doomed)


@transaction.atomic
def products_bulk_create(
    *, files: Sequence[File], category: str, name_pattern: str = "{category} {n}"
) -> list[Product]:
    """One product per file, all or nothing; embedding queued in batches on commit.

    ``name_pattern`` may use ``{category}``, ``{n}`` (numbering continues after the
    category's existing products) and ``{stem}`` (the file name without extension).
    Any rejected file raises one ``ValidationError`` listing every bad file and its reason.
    """
    errors: list[ValidationError] = []
    checked: list[CheckedImage] = []
    for file in files:
        try:
            checked.append(image_check(file))
        except ValidationError as exc:
            errors.append(
                ValidationError(
                    "%(file)s: %(message)s",
                    code=exc.code,
                    params={"file": getattr(file, "name", "?"), "message": exc.messages[0]},
                )
            )
    if errors:
        raise ValidationError(errors)
    return products_bulk_create_checked(images=checked, category=category,
                                        name_pattern=name_pattern)


@transaction.atomic
def products_bulk_create_checked(
    *, images: Sequence[CheckedImage], category: str, name_pattern: str = "{category} {n}"
) -> list[Product]:
    """``products_bulk_create`` for images already checked by ``image_check`` (an import
    checks each file once): one INSERT for the batch, embedding queued on commit. SKUs are
    derived from the file names."""
    try:
        name_pattern.format(category=category, n=1, stem="x")
    except (KeyError, IndexError, ValueError) as exc:
        raise ValidationError(
            f"name pattern {name_pattern!r} is invalid: use {{category}}, {{n}} and {{stem}}",
            code="bad_pattern",
        ) from exc
    start = Product.objects.filter(category=category).count()
    names = [name_pattern.format(category=category, n=n, stem=item.stem)
             for n, item in enumerate(images, start=start + 1)]
    skus = skus_unique([sku_from_stem(item.stem) for item in images])
    products = [_product(name=name, category=category, checked=item, slug=slug, sku=sku)
                for name, item, slug, sku in zip(names, images, _slugs_unique(names), skus,
                                                  strict=True)]
    products = Product.objects.bulk_create(products)
    queue.embed_enqueue(product_ids=[p.pk for p in products])
    return products


@dataclass(frozen=True)
class NewProduct:
    """A product to create under the shop's SKU, its photo checked (``image_check``)."""

    sku: str
    name: str
    category: str
    checked: CheckedImage


@transaction.atomic
def products_create_by_sku(
    *, items: Sequence[NewProduct]
) -> tuple[list[Product], dict[str, ValidationError]]:
    """Create one pending product per item, with the item's SKU, in one INSERT (slugs derived
    from the names in one query); embedding queued on commit. An item that fails its field
    check is left out and returned by SKU with its error; the others go in.

    Raises ``IntegrityError`` when another transaction took one of the SKUs or slugs after
    the caller looked: then none of the items is kept and their files are deleted."""
    slugs = _slugs_unique([item.name for item in items])
    products: list[Product] = []
    refused: dict[str, ValidationError] = {}
    for item, slug in zip(items, slugs, strict=True):
        try:
            products.append(_product(name=item.name, category=item.category,
                                     checked=item.checked, slug=slug, sku=item.sku))
        except ValidationError as exc:
            refused[item.sku] = exc
    try:
        Product.objects.bulk_create(products)
    except IntegrityError:  # re-raised: this function's savepoint is rolled back
        for product in products:
            product.image.delete(save=False)
        raise
    queue.embed_enqueue(product_ids=[p.pk for p in products])
    return products, refused


@dataclass(frozen=True)
class ProductChange:
    """New values for the product with ``sku``; ``checked`` None keeps its photo."""

    sku: str
    name: str
    category: str
    checked: CheckedImage | None = None


@dataclass
class ChangesApplied:
    changed: set[str] = field(default_factory=set)  # SKUs written
    unchanged: set[str] = field(default_factory=set)  # already as asked when locked
    missing: set[str] = field(default_factory=set)  # no such product (deleted meanwhile)
    refused: dict[str, ValidationError] = field(default_factory=dict)
    queued: list[int] = field(default_factory=list)  # new photos, embedding queued on commit


_CHANGE_FIELDS = ["name", "category", "image", "image_sha256", "status", "error_message",
                  "status_changed_at", "updated_at"]


def _apply_change(product: Product, change: ProductChange) -> bool:
    """Set the change on ``product`` (a new photo stored); False if it holds it already.
    Raises ``ValidationError`` before any file is written."""
    fields = _set_name_category(product, name=change.name, category=change.category)
    if fields:
        product.full_clean(exclude=["image"], validate_unique=False)
    image_changed = change.checked is not None and _set_image(product, change.checked)
    return bool(fields) or image_changed


@transaction.atomic
def products_change_by_sku(*, changes: Sequence[ProductChange]) -> ChangesApplied:
    """Change many existing products at once: one locked read (in SKU order, as every
    writer locks), one UPDATE statement; a new photo makes its product pending and queues it
    on commit. A change its field check refuses is left out, with its error."""
    applied = ChangesApplied()
    skus = [change.sku for change in changes]
    locked = {p.sku: p for p in Product.objects.select_for_update().filter(sku__in=skus)
              .order_by("sku")}
    written: list[Product] = []
    now = timezone.now()
    for change in changes:
        product = locked.get(change.sku)
        if product is None:
            applied.missing.add(change.sku)
            continue
        sha_before = product.image_sha256
        try:
            changed = _apply_change(product, change)
        except ValidationError as exc:
            applied.refused[change.sku] = exc
            continue
        if not changed:
            applied.unchanged.add(change.sku)
            continue
        product.updated_at = now
        written.append(product)
        applied.changed.add(change.sku)
        if product.image_sha256 != sha_before:
            applied.queued.append(product.pk)
    Product.objects.bulk_update(written, _CHANGE_FIELDS)
    queue.embed_enqueue(product_ids=applied.queued)
    return applied


def products_recompute(*, product_ids: Sequence[int]) -> None:
    """Admin action "recompute similarity": re-embed (if stale) and re-index on commit."""
    queue.embed_enqueue(product_ids=product_ids)
