"""Forms: search by photo (storefront) and the admin's product and bulk-upload forms.

Images are checked by the engine's decoder under the configured limits (search) or by the
write side's ``image_check`` (admin: once, the product is then created from the checked image),
so every refusal names its reason.
"""

from __future__ import annotations

import base64
import io
import re
from typing import Any

import numpy as np
from django import forms
from django.conf import settings
from django.contrib.admin.widgets import AdminFileWidget
from django.core import signing
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile
from PIL import Image

from catalog.models import Product
from catalog.services.products import CheckedImage, image_check
from catalog.vectors import image_limits, vector_key_current
from similarity import COLOUR_DIM, EMBEDDING_DIM, ImageRejected, load_image

THUMBNAIL_SIDE = 320


def human_bytes(n: int) -> str:
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.1f} MB"
    if n >= 1024:
        return f"{n / 1024:.1f} KB"
    return f"{n} bytes"


def rejection_error(exc: ImageRejected) -> ValidationError:
    """An engine refusal as a form error that names its reason."""
    return ValidationError(
        "This image cannot be used: %(message)s (reason: %(reason)s).",
        code=exc.reason,
        params={"message": exc.message, "reason": exc.reason},
    )


def read_upload(upload: UploadedFile, *, max_bytes: int) -> bytes:
    """The upload's bytes, refusing empty and oversized files before reading them all."""
    size = upload.size or 0
    if size == 0:
        raise rejection_error(ImageRejected("empty", "the file is empty (0 bytes)"))
    if size > max_bytes:
        raise rejection_error(
            ImageRejected(
                "too_large",
                f"the file is {human_bytes(size)}, over the {human_bytes(max_bytes)} limit",
            )
        )
    upload.seek(0)
    data = upload.read(max_bytes + 1)
    upload.seek(0)
    return data


def thumbnail_data_url(image: Image.Image, side: int = THUMBNAIL_SIDE) -> str:
    """A small JPEG of ``image`` as a data: URL (the upload itself is never stored)."""
    thumb = image.copy()
    thumb.thumbnail((side, side))
    buf = io.BytesIO()
    thumb.convert("RGB").save(buf, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


class SearchByPhotoForm(forms.Form):
    category = forms.CharField(required=False, max_length=64)  # "": predicted; "all": every one
    image = forms.FileField(
        label="Photo of a garment",
        help_text="JPEG, PNG, WebP or GIF.",
        widget=forms.ClearableFileInput(attrs={"accept": "image/jpeg,image/png,image/webp,image/gif"}),
        error_messages={
            "required": "Choose a photo to search with (reason: missing).",
            "empty": "The file is empty (0 bytes) (reason: empty).",
            "invalid": "No file was uploaded; check the form's encoding (reason: missing).",
        },
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.image_bytes: bytes | None = None
        self.thumbnail_url: str | None = None

    def clean_image(self) -> UploadedFile:
        upload = self.cleaned_data["image"]
        limits = image_limits()
        data = read_upload(upload, max_bytes=limits.max_bytes)
        try:
            decoded = load_image(data, limits=limits)
        except ImageRejected as exc:
            raise rejection_error(exc) from exc
        self.image_bytes = data
        self.thumbnail_url = thumbnail_data_url(decoded)
        return upload

    @classmethod
    def asking_again(cls) -> SearchByPhotoForm:
        """An empty form saying the search to repeat cannot be (its photo must come again)."""
        form = cls(data={}, files={})
        form.errors.pop("image", None)
        form.add_error(None, ValidationError(SEARCH_EXPIRED, code="expired"))
        return form

    @classmethod
    def refused(cls, exc: ImageRejected) -> SearchByPhotoForm:
        """A form whose only error is ``exc`` on the image; no upload is looked at."""
        form = cls(data={}, files={})
        form.errors.pop("image", None)  # "missing": replaced by the real reason
        form.add_error("image", rejection_error(exc))
        return form

    @property
    def rejection_reason(self) -> str | None:
        """The machine-readable reason of the image error, if any."""
        for error in self.errors.as_data().get("image", []):
            code = error.code or "invalid"
            return {"required": "missing", "invalid": "missing"}.get(code, code)
        return None


SEARCH_TOKEN_SALT = "catalog.search-again"  # noqa: S105 - a signing namespace, not a secret
SEARCH_TOKEN_MAX_AGE = 24 * 3600
SEARCH_EXPIRED = "This search has expired: upload your photo again (reason: expired)."
_THUMBNAIL_URL = re.compile(r"data:image/jpeg;base64,[A-Za-z0-9+/]+={0,2}")
_THUMBNAIL_MAX = 200_000


def search_token(vector: np.ndarray, colour: np.ndarray | None) -> str:
    """The embedded query, signed, for searching it again in another category without the
    photo (which is never stored)."""
    def b64(a: np.ndarray | None) -> str | None:
        return None if a is None else base64.b64encode(np.asarray(a, "<f4").tobytes()).decode("ascii")

    return signing.dumps({"v": b64(vector), "c": b64(colour), "k": vector_key_current()},
                         salt=SEARCH_TOKEN_SALT, compress=True)


def _floats(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text, validate=True), dtype="<f4")


class SearchAgainForm(forms.Form):
    """The same photo searched again: its signed query, the category chosen (or "show all")
    and the thumbnail to show again."""

    query = forms.CharField(max_length=64_000)
    category = forms.CharField(required=False, max_length=64)
    show_all = forms.BooleanField(required=False)
    thumbnail = forms.CharField(required=False, max_length=_THUMBNAIL_MAX)

    def clean_query(self) -> tuple[np.ndarray, np.ndarray | None]:
        try:
            data = signing.loads(self.cleaned_data["query"], salt=SEARCH_TOKEN_SALT,
                                 max_age=SEARCH_TOKEN_MAX_AGE)
            vector = _floats(data["v"])
            colour = None if data.get("c") is None else _floats(data["c"])
            current = (data["k"] == vector_key_current() and vector.size == EMBEDDING_DIM
                       and (colour is None or colour.size == COLOUR_DIM))
        except (signing.BadSignature, KeyError, TypeError, ValueError):
            current = False
        if not current:  # forged, too old, or made by another model or policy
            raise ValidationError(SEARCH_EXPIRED, code="expired")
        return vector, colour

    def clean_thumbnail(self) -> str | None:
        url = self.cleaned_data["thumbnail"]
        return url if _THUMBNAIL_URL.fullmatch(url or "") else None

    @property
    def chosen_category(self) -> str | None:
        """The category asked for: "all" for "show all categories", None to predict it."""
        if self.cleaned_data.get("show_all"):
            return "all"
        return self.cleaned_data.get("category") or None


# ---------------------------------------------------------------------------------------------
# Admin


def validate_product_image(upload: UploadedFile) -> CheckedImage:
    """The write side's check under limits (``image_check``), whose result the product is
    created from; raises ValidationError with a reason."""
    try:
        checked = image_check(upload)
    except ValidationError as exc:
        reason = exc.code or "invalid"
        raise ValidationError(
            "This image cannot be used: %(message)s (reason: %(reason)s).",
            code=reason,
            params={"message": " ".join(exc.messages), "reason": reason},
        ) from exc
    upload.seek(0)
    return checked


class ProductAdminForm(forms.ModelForm):
    # A plain FileField: Django's ImageField only runs Pillow's verify() and says nothing of the
    # reason; image_check reads the whole file and names it.
    image = forms.FileField(
        widget=AdminFileWidget,
        help_text="JPEG, PNG, WebP or GIF.",
        error_messages={"empty": "This image cannot be used: the file is empty (0 bytes) (reason: empty)."},
    )

    class Meta:
        model = Product
        fields = ("name", "sku", "slug", "category", "image", "listed")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "sku" in self.fields:  # read-only once the product exists
            self.fields["sku"].required = False
            self.fields["sku"].initial = None  # not the model's placeholder: derived on save
        self.fields["slug"].required = False
        self.fields["slug"].help_text = "Leave empty to derive it from the name."
        # The uploaded image as clean_image checked it: saving creates the product from it.
        self.checked_image: CheckedImage | None = None

    def clean_image(self) -> Any:
        image = self.cleaned_data.get("image")
        if isinstance(image, UploadedFile):
            self.checked_image = validate_product_image(image)
        return image


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    """Django 5.2's documented pattern for several files in one field."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("widget", MultipleFileInput(attrs={"accept": "image/*"}))
        super().__init__(*args, **kwargs)

    def clean(self, data: Any, initial: Any = None) -> list[UploadedFile]:
        single = super().clean
        if isinstance(data, list | tuple):
            if not data and self.required:
                raise ValidationError(self.error_messages["required"], code="required")
            return [single(d, initial) for d in data]
        return [single(data, initial)]


class BulkUploadForm(forms.Form):
    # Empty files pass here so that the service lists them by name with every other refusal.
    # The metaclass moves declared fields into base_fields, so at run time this does not
    # shadow BaseForm.files (the uploaded files); mypy sees only the class attribute.
    files = MultipleFileField(  # type: ignore[assignment]
        label="Images", help_text="Select many files at once: one product each.", allow_empty_file=True
    )
    category = forms.CharField(max_length=64)
    name_pattern = forms.CharField(
        max_length=200,
        initial="{category} {n}",
        help_text="Placeholders: {category}, {n} (numbering continues the category), {stem} (file name).",
    )

    def clean_files(self) -> list[UploadedFile]:
        files = self.cleaned_data["files"]
        limit = settings.LOOKALIKE_BULK_MAX_FILES
        if len(files) > limit:
            raise ValidationError(f"At most {limit} files per upload; you sent {len(files)}.")
        return files

    def clean_name_pattern(self) -> str:
        pattern = self.cleaned_data["name_pattern"]
        try:
            pattern.format(category="x", n=1, stem="x")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValidationError(
                "Unknown placeholder or bad braces in the pattern; use {category}, {n} and {stem}."
            ) from exc
        return pattern
