"""A product's further photos: add, change, remove. Each is checked like a main photo, then
embedded by the embed queue; the product's lists follow its vector of all its photos
(catalog.selectors.further_photos), rewritten by the index writer for exactly the lists that
change. The product stays as it is meanwhile: listed, searchable, its list shown."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files import File
from django.core.files.base import ContentFile
from django.db import transaction
from django.utils import timezone

from catalog.models import Product, ProductPhoto
from catalog.services import queue
from catalog.services.product_embedding import product_touch
from catalog.services.products import CheckedImage, checked_image, delete_file_on_commit


def _room_for(product: Product, adding: int) -> None:
    """Refuse (``too_many_photos``) unless ``adding`` more photos stay within the limit."""
    limit = settings.LOOKALIKE_MAX_PHOTOS
    # The product's row locked: two requests adding photos to it count one after the other.
    Product.objects.select_for_update().filter(pk=product.pk).exists()
    have = product.photos_counted()
    if have + adding > limit:
        raise ValidationError(
            f"a product has at most {limit} photos (LOOKALIKE_MAX_PHOTOS); "
            f"{product.sku} has {have}", code="too_many_photos", params={"reason": "too_many_photos"},
        )


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
