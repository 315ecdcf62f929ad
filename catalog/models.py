"""Products, their stored vectors and their 10 nearest neighbours."""

from __future__ import annotations

import re
import secrets
import uuid
from pathlib import PurePath

import numpy as np
from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.urls import reverse
from django.utils import timezone

from catalog.vectors import vector_from_bytes

MAX_NEIGHBOURS = 10
SKU_MAX = 64
# A shop's own product id: letters, digits, ".", "_" and "-", starting with a letter or digit
# (it is a URL path segment of the API).
SKU_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
SKU_RE = re.compile(rf"^{SKU_PATTERN}$")


def sku_default() -> str:
    """A placeholder SKU for a product made without the services (which derive one from the
    file name): unique and valid."""
    return f"p-{secrets.token_hex(8)}"


def product_image_path(instance: Product, filename: str) -> str:
    """A fresh name under products/: the uploaded name only lends its extension."""
    suffix = PurePath(filename).suffix.lower()
    if suffix not in {".jpg", ".jpeg", ".png", ".webp", ".gif"}:
        suffix = ".img"
    return f"products/{uuid.uuid4().hex}{suffix}"


class EmbeddedImage(models.Model):
    """An uploaded photo and what the embed worker made of it: the product's main photo
    (``Product``) and its further photos (``ProductPhoto``) share these fields and the embed
    step (catalog.services.product_embedding)."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        PROCESSING = "processing", "Processing"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    image = models.ImageField(upload_to=product_image_path, max_length=255)
    image_sha256 = models.CharField(max_length=64, blank=True, db_index=True)
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True
    )
    error_message = models.TextField(blank=True)
    # float32 little-endian bytes of the 1280-d embedding, and what made it
    # ("<model key>/<policy key>+<colour key>"): a vector made by another model or policy, or
    # before the colour descriptor of this version was stored with it, is stale.
    vector = models.BinaryField(null=True, blank=True, editable=False)
    vector_key = models.CharField(max_length=128, blank=True, db_index=True)
    # float32 little-endian bytes of the garment's colour descriptor (similarity/embedding/colour.py),
    # computed from the same decoded picture as the vector, and its key (name@version).
    colour = models.BinaryField(null=True, blank=True, editable=False)
    colour_key = models.CharField(max_length=32, blank=True)
    embedded_image_sha256 = models.CharField(max_length=64, blank=True)
    status_changed_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        abstract = True

    def vector_array(self) -> np.ndarray | None:
        if self.vector is None:
            return None
        return vector_from_bytes(self.vector)


class Product(EmbeddedImage):
    name = models.CharField(max_length=200)
    sku = models.CharField(
        "SKU", max_length=SKU_MAX, unique=True, default=sku_default,
        validators=[RegexValidator(SKU_RE, "letters, digits, '.', '_' and '-' only, "
                                   "starting with a letter or digit, at most 64", code="bad_sku")],
        help_text="The shop's own product id, stable. Leave empty to derive it from the file name.",
    )
    slug = models.SlugField(max_length=220, unique=True)
    category = models.CharField(max_length=64, db_index=True)
    # Not listed (sold out, unpublished): in no list and no search, but keeps its own list.
    listed = models.BooleanField(
        default=True, db_index=True,
        help_text="Shown in other products' lists and in search by photo. Untick when sold out "
                  "or unpublished: the product keeps its own list of listed products.",
    )
    # "<vector_key>:<embedded_image_sha256>" of the vector whose neighbour lists the index
    # writer last committed: an index task finding it current has nothing left to write.
    indexed_as = models.CharField(max_length=200, blank=True, default="", editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("-created_at", "-id")
        indexes = (models.Index(fields=["status", "status_changed_at"]),)

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("catalog:product-detail", kwargs={"slug": self.slug})

    def photos_counted(self) -> int:
        """How many photos the product has: its main photo and its further ones."""
        return 1 + self.photos.count()


class ProductPhoto(EmbeddedImage):
    """One of a product's further photos (its main photo is ``Product.image``), up to
    ``LOOKALIKE_MAX_PHOTOS`` photos in all. Embedded like the main photo; the product's vector
    is the mean of its photos' (catalog.selectors.further_photos)."""

    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="photos")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("product", "id")

    def __str__(self) -> str:
        return f"photo {self.pk} of {self.product_id}"


class ProductNeighbour(models.Model):
    """One entry of a product's top-10 list (an explicit through table, as django-oscar does)."""

    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="neighbour_links")
    neighbour = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="+")
    rank = models.PositiveSmallIntegerField()
    distance = models.FloatField()

    class Meta:
        ordering = ("product", "rank")
        constraints = (
            models.UniqueConstraint(fields=["product", "rank"], name="neighbour_unique_rank"),
            models.UniqueConstraint(fields=["product", "neighbour"], name="neighbour_unique_pair"),
            models.CheckConstraint(
                condition=models.Q(rank__gte=1, rank__lte=MAX_NEIGHBOURS), name="neighbour_rank_1_10"
            ),
            models.CheckConstraint(
                condition=~models.Q(product=models.F("neighbour")), name="neighbour_not_self"
            ),
        )

    def __str__(self) -> str:
        return f"{self.product_id} #{self.rank} → {self.neighbour_id}"


class ListRule(models.Model):
    """A merchandiser's rule: pin ``target`` at ``rank`` of ``product``'s list, exclude
    ``target`` from it, or (no ``product``) exclude ``target`` from every list."""

    class Kind(models.TextChoices):
        PIN = "pin", "Pinned"
        EXCLUDE = "exclude", "Excluded from this list"
        EXCLUDE_EVERYWHERE = "exclude_everywhere", "Excluded from every list"

    kind = models.CharField(max_length=20, choices=Kind.choices)
    product = models.ForeignKey(Product, null=True, blank=True, on_delete=models.CASCADE,
                                related_name="list_rules")
    target = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="rules_naming")
    rank = models.PositiveSmallIntegerField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                   on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ("product", "rank", "created_at")
        constraints = (
            models.UniqueConstraint(fields=["product", "target"], name="list_rule_one_per_pair",
                                    condition=models.Q(product__isnull=False)),
            models.UniqueConstraint(fields=["target"], name="list_rule_one_everywhere",
                                    condition=models.Q(product__isnull=True)),
            models.UniqueConstraint(fields=["product", "rank"], name="list_rule_one_pin_per_rank",
                                    condition=models.Q(kind="pin")),
            models.CheckConstraint(
                name="list_rule_shape",
                condition=(
                    models.Q(kind="pin", product__isnull=False, rank__gte=1,
                             rank__lte=MAX_NEIGHBOURS)
                    | models.Q(kind="exclude", product__isnull=False, rank__isnull=True)
                    | models.Q(kind="exclude_everywhere", product__isnull=True, rank__isnull=True)
                ),
            ),
            models.CheckConstraint(condition=~models.Q(product=models.F("target")),
                                   name="list_rule_not_self"),
        )

    def __str__(self) -> str:
        if self.kind == self.Kind.PIN:
            return f"{self.target} pinned at #{self.rank} of {self.product}"
        if self.kind == self.Kind.EXCLUDE:
            return f"{self.target} excluded from {self.product}"
        return f"{self.target} excluded from every list"


class RebuildRun(models.Model):
    """Progress of a full rebuild, shown to staff in the admin."""

    class State(models.TextChoices):
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    state = models.CharField(max_length=16, choices=State.choices, default=State.RUNNING)
    trigger = models.CharField(max_length=32, default="beat")
    step = models.CharField(max_length=64, blank=True)
    done = models.PositiveIntegerField(default=0)
    total = models.PositiveIntegerField(default=0)
    message = models.TextField(blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-started_at",)

    def __str__(self) -> str:
        return f"rebuild {self.started_at:%Y-%m-%d %H:%M} ({self.state})"

    @property
    def percent(self) -> int:
        return int(100 * self.done / self.total) if self.total else 0


class RebuildBlock(models.Model):
    """One row block of a distributed rebuild (top-k layout): rows [start, stop) of one
    rebuild input (the catalog's, or one category's when lists stay inside categories),
    computed by a worker of the "rebuild" queue."""

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        DONE = "done", "Done"

    run = models.ForeignKey(RebuildRun, on_delete=models.CASCADE, related_name="blocks")
    input_dir = models.CharField(max_length=500)
    # The partition's category when lists stay inside categories; blank across the catalog.
    category = models.CharField(max_length=64, blank=True)
    start = models.PositiveIntegerField()
    stop = models.PositiveIntegerField()
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    worker = models.CharField(max_length=200, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("run", "category", "start")
        constraints = (
            models.UniqueConstraint(fields=["run", "input_dir", "start"],
                                    name="rebuild_block_unique_rows"),
        )

    def __str__(self) -> str:
        where = f"{self.category}: " if self.category else ""
        return f"{where}rows {self.start}-{self.stop} ({self.state})"


class ApiKey(models.Model):
    """A key of the REST API. Only its SHA-256 is stored (the key is 32 random bytes, so a
    fast hash is enough); the key itself is shown once, when it is made."""

    class Scope(models.TextChoices):
        READ = "read", "Read"
        WRITE = "write", "Read and write"

    name = models.CharField(max_length=100, help_text="Who uses it, e.g. “nightly ERP sync”.")
    scope = models.CharField(max_length=8, choices=Scope.choices, default=Scope.READ)
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    key_sha256 = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ("-created_at",)
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…, {self.scope})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None
