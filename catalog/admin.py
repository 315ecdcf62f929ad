"""Staff screens: products (single and bulk upload, similar-items preview, actions) and rebuilds.

Every write goes through catalog.services (imported inside the functions that use them), so
queueing after commit, idempotency and validation live in one place.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.views.decorators.http import require_POST

from catalog.admin_photos import (
    ProductPhotoInline,
    image_thumb,
    photos_save_formset,
    status_badge,
)
from catalog.admin_rules import (
    ListRuleInline,
    exclude_everywhere,
    mark_listed,
    mark_not_listed,
    pins_of,
    rules_save_formset,
)
from catalog.forms import BulkUploadForm, ProductAdminForm
from catalog.models import ApiKey, ListRule, Product, ProductPhoto, RebuildBlock, RebuildRun
from catalog.selectors.storefront import product_neighbours, product_neighbours_state


def _pin_label(pins: dict[int, ListRule], rank: int, neighbour_id: int) -> str:
    """"pinned by … on …" under a preview entry that a pin placed."""
    rule = pins.get(rank)
    if rule is None or rule.target_id != neighbour_id:
        return ""
    who = rule.created_by.get_username() if rule.created_by else "the API"
    return format_html('<br><span class="lookalike-pin" style="color:#1f5fa8">pinned by {} on {}'
                       "</span>", who, f"{rule.created_at:%Y-%m-%d %H:%M}")


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    form = ProductAdminForm
    list_display = ("thumbnail", "name", "sku", "category", "photo_count", "listed",
                    "coloured_status", "short_error", "created_at")
    list_display_links = ("thumbnail", "name")
    list_filter = ("status", "listed", "category")
    search_fields = ("name", "sku", "category", "slug")
    list_per_page = 50
    readonly_fields = (
        "current_image",
        "coloured_status",
        "error_message",
        "image_sha256",
        "vector_key",
        "created_at",
        "updated_at",
        "similar_preview",
    )
    actions = ("recompute_similarity", "rebuild_everything", mark_not_listed, mark_listed,
               exclude_everywhere)
    change_list_template = "admin/catalog/product/change_list.html"

    def get_fieldsets(self, request: HttpRequest, obj: Product | None = None) -> list:
        main = (None, {"fields": ["name", "sku", "slug", "category", "image"]})
        if obj is None:
            return [main]
        return [
            (None, {"fields": ["current_image", "name", "sku", "slug", "category", "image",
                               "listed"]}),
            (
                "Similarity",
                {"fields": ["coloured_status", "error_message", "similar_preview"]},
            ),
            (
                "Details",
                {
                    "classes": ["collapse"],
                    "fields": ["image_sha256", "vector_key", "created_at", "updated_at"],
                },
            ),
        ]

    def get_inlines(self, request: HttpRequest, obj: Product | None = None) -> Any:
        return [ProductPhotoInline, ListRuleInline] if obj is not None else []

    def get_queryset(self, request: HttpRequest) -> QuerySet[Product]:
        return super().get_queryset(request).annotate(further_photos=Count("photos"))

    def get_readonly_fields(self, request: HttpRequest, obj: Product | None = None) -> Any:
        # A SKU is the shop's stable id: set once, when the product is made.
        return (*self.readonly_fields, "sku") if obj is not None else self.readonly_fields

    # -- list columns -------------------------------------------------------------------------

    @admin.display(description="Image")
    def thumbnail(self, obj: Product) -> str:
        return image_thumb(obj, 56)

    @admin.display(description="Current image")
    def current_image(self, obj: Product) -> str:
        return image_thumb(obj, 200)

    @admin.display(description="Photos", ordering="further_photos")
    def photo_count(self, obj: Product) -> str:
        n = 1 + getattr(obj, "further_photos", 0)
        return f"{n} photo" if n == 1 else f"{n} photos"

    @admin.display(description="Status", ordering="status")
    def coloured_status(self, obj: Product) -> str:
        return status_badge(obj)

    @admin.display(description="Error")
    def short_error(self, obj: Product) -> str:
        if not obj.error_message:
            return ""
        text = obj.error_message if len(obj.error_message) <= 120 else obj.error_message[:117] + "…"
        return format_html('<span style="color:#b3261e" title="{}">{}</span>', obj.error_message, text)

    @admin.display(description="Similar items")
    def similar_preview(self, obj: Product) -> str:
        if obj is None or obj.pk is None:
            return "—"
        neighbours = product_neighbours(product=obj)
        state = product_neighbours_state(product=obj, neighbours=neighbours)
        if state == "failed":
            return format_html(
                '<span style="color:#b3261e">Embedding failed: {}</span>',
                obj.error_message or "unknown error",
            )
        if not neighbours:
            return "Similar items are still being computed." if state == "computing" else "No similar items."
        note = (
            format_html('<p style="color:#8a6d00">Being recomputed; showing the last stored list.</p>')
            if state == "computing"
            else ""
        )
        pins = pins_of(obj)
        cells = format_html_join(
            "",
            '<li style="list-style:none;width:110px;text-align:center;font-size:11px">'
            '<a href="{}">{}</a><br><b>#{}</b> {}<br>distance {}{}</li>',
            (
                (
                    reverse("admin:catalog_product_change", args=[link.neighbour_id]),
                    image_thumb(link.neighbour, 96),
                    link.rank,
                    link.neighbour.name,
                    f"{link.distance:.4f}",
                    _pin_label(pins, link.rank, link.neighbour_id),
                )
                for link in neighbours
            ),
        )
        return format_html(
            '{}<ol class="lookalike-similar" style="display:flex;flex-wrap:wrap;gap:10px;padding:0;margin:0">'
            "{}</ol>",
            note,
            cells,
        )

    # -- writes through the services ------------------------------------------------------------

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        if formset.model is ListRule:
            rules_save_formset(request, form.instance, formset)
        elif formset.model is ProductPhoto:
            photos_save_formset(request, form.instance, formset)
        else:
            super().save_formset(request, form, formset, change)

    def save_model(self, request: HttpRequest, obj: Product, form: ProductAdminForm, change: bool) -> None:
        from catalog.services.products import product_create, product_update

        data = form.cleaned_data
        # An uploaded image was checked once, by the form: the product is made from that check.
        if not change:
            saved = product_create(
                name=data["name"],
                category=data["category"],
                image=form.checked_image or data["image"],
                slug=data.get("slug") or None,
                sku=data.get("sku") or None,
            )
        else:
            current = Product.objects.get(pk=obj.pk)
            changes: dict[str, Any] = {
                field: data[field]
                for field in ("name", "category", "slug")
                if field in form.changed_data and data.get(field)
            }
            if "image" in form.changed_data and data.get("image"):
                changes["image"] = form.checked_image or data["image"]
            saved = product_update(product=current, **changes)
        if saved.listed != data.get("listed", True):
            from catalog.services.merchandising import products_set_listed

            products_set_listed(product_ids=[saved.pk], listed=data.get("listed", True))
        obj.pk = saved.pk
        obj.refresh_from_db()

    def delete_model(self, request: HttpRequest, obj: Product) -> None:
        from catalog.services.products import product_delete

        product_delete(product=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Product]) -> None:
        from catalog.services.products import products_delete

        products_delete(product_ids=list(queryset.values_list("pk", flat=True)))

    # -- actions -------------------------------------------------------------------------------

    # Both actions queue work for every selected (or every) product: change permission only.
    @admin.action(description="Recompute similarity of the selected products", permissions=["change"])
    def recompute_similarity(self, request: HttpRequest, queryset: QuerySet[Product]) -> None:
        from catalog.services.products import products_recompute

        ids = list(queryset.values_list("pk", flat=True))
        products_recompute(product_ids=ids)
        self.message_user(
            request, f"Queued {len(ids)} product(s) to be embedded and indexed again.", messages.SUCCESS
        )

    @admin.action(description="Rebuild everything (all products, full matrix)", permissions=["change"])
    def rebuild_everything(self, request: HttpRequest, queryset: QuerySet[Product] | None = None) -> None:
        from catalog.services.rebuild import similarity_rebuild_enqueue

        similarity_rebuild_enqueue(trigger="admin")
        self.message_user(
            request,
            "A full rebuild has been queued; follow its progress under Rebuild runs.",
            messages.SUCCESS,
        )

    # -- bulk upload and the rebuild button ---------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        custom = [
            path(
                "bulk-upload/",
                self.admin_site.admin_view(self.bulk_upload_view),
                name="catalog_product_bulk_upload",
            ),
            path(
                "rebuild/",
                self.admin_site.admin_view(require_POST(self.rebuild_view)),
                name="catalog_product_rebuild",
            ),
        ]
        return custom + super().get_urls()

    def bulk_upload_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = BulkUploadForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            from catalog.services.products import products_bulk_create

            try:
                result = products_bulk_create(
                    files=form.cleaned_data["files"],
                    category=form.cleaned_data["category"],
                    name_pattern=form.cleaned_data["name_pattern"],
                )
            except ValidationError as exc:
                # All or nothing: every refused file is listed with its reason, nothing is saved.
                form.add_error(None, "Nothing was uploaded: fix or remove these files and try again.")
                for error in exc.error_list:
                    text = " ".join(error.messages)
                    form.add_error("files", f"{text} (reason: {error.code})" if error.code else text)
            else:
                self.message_user(
                    request,
                    f"Created {len(result)} product(s) in {form.cleaned_data['category']!r}; "
                    "they are being embedded and indexed in the background.",
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(reverse("admin:catalog_product_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Bulk upload products",
            "form": form,
            "has_view_permission": self.has_view_permission(request),
        }
        return TemplateResponse(request, "admin/catalog/product/bulk_upload.html", context)

    def rebuild_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_change_permission(request):
            raise PermissionDenied
        self.rebuild_everything(request, None)
        return HttpResponseRedirect(reverse("admin:catalog_product_changelist"))


class RebuildBlockInline(admin.TabularInline):
    """A distributed rebuild's row blocks: which worker computes which rows, and when."""

    model = RebuildBlock
    fields = ("category", "start", "stop", "state", "worker", "attempts", "started_at", "finished_at")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: RebuildRun | None = None) -> bool:
        return False


@admin.register(RebuildRun)
class RebuildRunAdmin(admin.ModelAdmin):
    inlines = (RebuildBlockInline,)
    list_display = ("started_at", "trigger", "coloured_state", "step", "progress", "finished_at", "message")
    list_filter = ("state", "trigger")
    readonly_fields = (
        "state", "trigger", "step", "done", "total", "progress", "message", "started_at", "finished_at",
    )
    fields = readonly_fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: RebuildRun | None = None) -> bool:
        return False

    @admin.display(description="State", ordering="state")
    def coloured_state(self, obj: RebuildRun) -> str:
        colour = {"running": "#1f5fa8", "done": "#1c7c3a", "failed": "#b3261e"}.get(obj.state, "#555")
        return format_html(
            '<span style="color:#fff;background:{};padding:2px 8px;border-radius:10px;'
            'font-size:11px">{}</span>',
            colour,
            obj.get_state_display(),
        )

    @admin.display(description="Progress")
    def progress(self, obj: RebuildRun) -> str:
        return format_html(
            '<progress max="100" value="{}" style="width:120px"></progress> {}% ({} / {})',
            obj.percent,
            obj.percent,
            obj.done,
            obj.total,
        )


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """REST API keys: the secret is shown once, when the key is made; only its hash is kept."""

    list_display = ("name", "prefix", "scope", "created_at", "revoked_at")
    list_filter = ("scope",)
    fields = ("name", "scope")
    actions = ("revoke",)

    def has_change_permission(self, request: HttpRequest, obj: ApiKey | None = None) -> bool:
        return obj is None and super().has_change_permission(request, obj)  # the list's actions

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        from catalog.services.api_keys import api_key_create

        key, raw = api_key_create(name=obj.name, scope=obj.scope)
        obj.pk = key.pk
        obj.refresh_from_db()
        self.message_user(
            request,
            format_html("The API key {} ({} scope) is <code class=\"lookalike-new-key\">{}</code>. "
                        "Copy it now: it is not stored and will not be shown again.",
                        key.name, key.scope, raw),
            messages.WARNING,
        )

    @admin.action(description="Revoke the selected API keys")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        from catalog.services.api_keys import api_keys_revoke

        count = api_keys_revoke(key_ids=list(queryset.values_list("pk", flat=True)))
        self.message_user(request, f"Revoked {count} API key(s).", messages.SUCCESS)
