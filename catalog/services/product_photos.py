"""A product's further photos: add, change, remove. Each is checked like a main photo, then
embedded by the embed queue; the product's lists follow its vector of all its photos
(catalog.selectors.further_photos), rewritten by the index writer for exactly the lists that
change. The product stays as it is meanwhile: listed, searchable, its list shown."""

from __future__ import annotations

from collections.abc import Sequence

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files import File
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.utils import timezone

from catalog.models import Product, ProductPhoto
from catalog.selectors.further_photos import products_photo_counts
from catalog.services import queue
from catalog.services.product_embedding import product_touch
from catalog.services.products import CheckedImage, checked_image, delete_file_on_commit


def _too_many(product: Product, have: int, adding: int) -> ValidationError | None:
    """The ``too_many_photos`` refusal if ``adding`` more photos pass the limit, else None."""
    limit = settings.LOOKALIKE_MAX_PHOTOS
    if have + adding <= limit:
        return None
    return ValidationError(
        f"a product has at most {limit} photos (LOOKALIKE_MAX_PHOTOS); "
        f"{product.sku} has {have}", code="too_many_photos", params={"reason": "too_many_photos"},
    )


def _room_for(product: Product, adding: int) -> None:
    """Refuse (``too_many_photos``) unless ``adding`` more photos stay within the limit."""
    # The product's row locked: two requests adding photos to it count one after the other.
    Product.objects.select_for_update().filter(pk=product.pk).exists()
    error = _too_many(product, product.photos_counted(), adding)
    if error is not None:
        raise error


def _store(photo: ProductPhoto, checked: CheckedImage) -> None:
    photo.image.save(f"upload{checked.suffix}", ContentFile(checked.data), save=False)
    photo.image_sha256 = checked.sha256
    photo.status = ProductPhoto.Status.PENDING
    photo.error_message = ""
    photo.status_changed_at = timezone.now()


@transaction.atomic
def product_photo_add(*, product: Product, image: File | CheckedImage) -> ProductPhoto:
    """Check ``image`` fully and add it as a further photo of ``product``; its embedding is
    queued on commit. Raises ``ValidationError`` (code: the engine's reason, or
    ``too_many_photos``); nothing is saved then."""
    checked = checked_image(image)
    _room_for(product, 1)
    photo = ProductPhoto(product=product)
    _store(photo, checked)
    photo.save()
    queue.embed_enqueue(product_ids=[product.pk])
    return photo


@transaction.atomic
def product_photos_add_bulk(
    *, additions: Sequence[tuple[Product, Sequence[File | CheckedImage]]],
) -> tuple[list[ProductPhoto], dict[int, ValidationError]]:
    """``product_photo_add`` for many products at once (an import): the products' rows locked
    and their photos counted in one query each, the photos inserted in one INSERT, their
    embedding queued on commit. A product whose photos would pass the limit (or that no
    longer exists) gets none of them: it is returned by pk with its error (``too_many_photos``,
    ``product_gone``); the others go in. Raises ``ValidationError`` for an image that fails its
    check (nothing is saved then)."""
    checked = [(product, [checked_image(image) for image in images])
               for product, images in additions]
    ids = sorted({product.pk for product, _ in checked})
    list(Product.objects.select_for_update().filter(pk__in=ids).values_list("pk", flat=True))
    have = products_photo_counts(product_ids=ids)
    photos: list[ProductPhoto] = []
    refused: dict[int, ValidationError] = {}
    for product, images in checked:
        error = (_too_many(product, have[product.pk], len(images)) if product.pk in have else
                 ValidationError(f"product {product.sku} no longer exists", code="product_gone"))
        if error is not None:
            refused[product.pk] = error
            continue
        have[product.pk] += len(images)
        for image in images:
            photo = ProductPhoto(product=product)
            _store(photo, image)
            photos.append(photo)
    try:
        photos = ProductPhoto.objects.bulk_create(photos)
    except IntegrityError:  # re-raised: this function's savepoint is rolled back
        for photo in photos:
            photo.image.delete(save=False)
        raise
    queue.embed_enqueue(product_ids={photo.product_id for photo in photos})
    return photos, refused


@transaction.atomic
def product_photo_change(*, photo: ProductPhoto, image: File | CheckedImage) -> bool:
    """Replace a further photo's image; False (nothing queued) if the bytes are the same.
    Until it is re-embedded the photo counts with its previous vector."""
    checked = checked_image(image)
    if checked.sha256 == photo.image_sha256:
        return False
    old_name, storage = photo.image.name or "", photo.image.storage
    _store(photo, checked)
    photo.save(update_fields=["image", "image_sha256", "status", "error_message",
                              "status_changed_at"])
    if old_name != photo.image.name:
        delete_file_on_commit(storage, old_name)
    queue.embed_enqueue(product_ids=[photo.product_id])
    return True


@transaction.atomic
def product_photo_remove(*, photo: ProductPhoto) -> None:
    """Remove a further photo (its file on commit); the product is re-indexed without it."""
    storage, name, product_id = photo.image.storage, photo.image.name or "", photo.product_id
    photo.delete()
    product_touch(photo)
    delete_file_on_commit(storage, name)
    queue.index_enqueue(product_ids=[product_id])
