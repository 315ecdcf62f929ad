"""A product's further photos on its admin page: the "More photos" inline, each row checked
like the main photo (``validate_product_image``) and saved through
catalog.services.product_photos; and the thumbnail and coloured status both screens show.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.widgets import AdminFileWidget
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest
from django.utils.html import format_html

from catalog.forms import validate_product_image
from catalog.models import EmbeddedImage, Product, ProductPhoto
from catalog.services.products import CheckedImage

STATUS_COLOURS = {
    Product.Status.PENDING: "#8a6d00",
    Product.Status.PROCESSING: "#1f5fa8",
    Product.Status.READY: "#1c7c3a",
    Product.Status.FAILED: "#b3261e",
}


def image_thumb(obj: EmbeddedImage, size: int) -> str:
    if not obj.image:
        return "—"
    return format_html(
        '<img src="{}" alt="" width="{}" height="{}" '
        'style="object-fit:contain;background:#fff;border:1px solid #ddd;border-radius:4px">',
        obj.image.url,
        size,
        size,
    )


def status_badge(obj: EmbeddedImage) -> str:
    colour = STATUS_COLOURS.get(Product.Status(obj.status), "#555")
    return format_html(
        '<span class="lookalike-status lookalike-status-{}" style="color:#fff;background:{};'
        'padding:2px 8px;border-radius:10px;font-size:11px;font-weight:600">{}</span>',
        obj.status,
        colour,
        obj.get_status_display(),
    )


class ProductPhotoForm(forms.ModelForm):
    # As ProductAdminForm's image: a plain FileField checked by image_check, naming the reason.
    image = forms.FileField(
        widget=AdminFileWidget,
        help_text="JPEG, PNG, WebP or GIF.",
        error_messages={"empty": "This image cannot be used: the file is empty (0 bytes) (reason: empty)."},
    )

    class Meta:
        model = ProductPhoto
        fields = ("image",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The uploaded image as clean_image checked it: the services store exactly that.
        self.checked_image: CheckedImage | None = None

    def clean_image(self) -> Any:
        image = self.cleaned_data.get("image")
        if isinstance(image, UploadedFile):
            self.checked_image = validate_product_image(image)
        return image


class ProductPhotoFormSet(BaseInlineFormSet):
    def clean(self) -> None:
        super().clean()
        if any(self.errors):
            return
        deleted = self.deleted_forms
        removed = len([form for form in deleted if form.instance.pk is not None])
        added = len([form for form in self.extra_forms
                     if form.has_changed() and form not in deleted])
        limit = settings.LOOKALIKE_MAX_PHOTOS
        have = self.instance.photos_counted()
        if added and have - removed + added > limit:
            raise ValidationError(
                "A product has at most %(limit)s photos, the main one included; it has "
                "%(have)s: remove one before adding another (reason: too_many_photos).",
                code="too_many_photos", params={"limit": limit, "have": have - removed},
            )


class ProductPhotoInline(admin.TabularInline):
    """The product's further photos, with what the embed worker made of each."""

    model = ProductPhoto
    form = ProductPhotoForm
    formset = ProductPhotoFormSet
    fields = ("thumbnail", "coloured_status", "error_message", "image")
    readonly_fields = ("thumbnail", "coloured_status", "error_message")
    extra = 1
    verbose_name = "photo"
    verbose_name_plural = "More photos"

    def get_max_num(self, request: HttpRequest, obj: Product | None = None, **kwargs: Any) -> int:
        return settings.LOOKALIKE_MAX_PHOTOS - 1  # the main photo is the product's own

    @admin.display(description="Photo")
    def thumbnail(self, obj: ProductPhoto) -> str:
        return image_thumb(obj, 96) if obj.pk else "—"

    @admin.display(description="Status")
    def coloured_status(self, obj: ProductPhoto) -> str:
        return status_badge(obj) if obj.pk else "—"


def photos_save_formset(request: HttpRequest, product: Product, formset: Any) -> None:
    """The inline's rows through the services: removals first (they make room), then changed
    images, then new photos. A refusal at save time (another request added photos meanwhile)
    is reported and the rest is kept."""
    from catalog.services.product_photos import (
        product_photo_add,
        product_photo_change,
        product_photo_remove,
    )

    # What the admin's change message reads of a saved formset (formset.save() is not called).
    formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
    current = product.photos.in_bulk()
    for form in formset.deleted_forms:
        photo = current.get(form.instance.pk)
        if photo is not None:
            product_photo_remove(photo=photo)
            formset.deleted_objects.append(photo)
    for form in formset.forms:
        if form in formset.deleted_forms or form.checked_image is None:
            continue
        photo = current.get(form.instance.pk)
        try:
            if photo is None:
                formset.new_objects.append(product_photo_add(product=product, image=form.checked_image))
            elif product_photo_change(photo=photo, image=form.checked_image):
                formset.changed_objects.append((photo, ["image"]))
        except ValidationError as exc:
            messages.error(request, f"Photo not saved: {' '.join(exc.messages)}")
