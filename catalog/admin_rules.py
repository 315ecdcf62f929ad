"""Staff screens for the shop's rules: a product's pins and exclusions (an inline beside its
similar-items preview), every rule in one list with who set it and when, and the actions
that take products out of lists or put them back.

Every write goes through catalog.services.merchandising.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest

from catalog.models import MAX_NEIGHBOURS, ListRule, Product


class ListRuleForm(forms.ModelForm):
    kind = forms.ChoiceField(choices=[(ListRule.Kind.PIN, "Pin at rank"),
                                      (ListRule.Kind.EXCLUDE, "Exclude from this list")])

    class Meta:
        model = ListRule
        fields = ("kind", "target", "rank")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        rank = data.get("rank")
        if data.get("kind") == ListRule.Kind.PIN and not rank:
            self.add_error("rank", f"A pin needs a rank, 1 to {MAX_NEIGHBOURS}.")
        if data.get("kind") == ListRule.Kind.EXCLUDE:
            data["rank"] = None
        return data

    def validate_constraints(self, exclude: Any = None) -> None:
        pass  # a new pin replaces the old one of its rank or pair: the service decides


class ListRuleInline(admin.TabularInline):
    """Y's own rules: pin X at a rank of Y's list, or keep X out of it."""

    model = ListRule
    fk_name = "product"
    form = ListRuleForm
    fields = ("kind", "target", "rank", "created_by", "created_at")
    readonly_fields = ("created_by", "created_at")
    raw_id_fields = ("target",)
    extra = 0
    verbose_name = "rule of this product's similar items"
    verbose_name_plural = "Pins and exclusions of this product's similar items"


def rules_save_formset(request: HttpRequest, product: Product, formset: Any) -> None:
    """The inline's changes, each through the services (new pins replace old ones)."""
    from catalog.services.merchandising import list_exclude, list_pin, list_rule_delete

    # What the admin's change message reads of a saved formset (formset.save() is not called).
    formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
    for form in formset.deleted_forms:
        if form.instance.pk is not None:
            list_rule_delete(rule=form.instance)
    for form in formset.forms:
        if form in formset.deleted_forms or not form.has_changed() or not form.cleaned_data:
            continue
        data = form.cleaned_data
        try:
            if data["kind"] == ListRule.Kind.PIN:
                list_pin(product=product, target=data["target"], rank=data["rank"], user=request.user)
            else:
                list_exclude(product=product, target=data["target"], user=request.user)
        except ValidationError as exc:
            messages.error(request, f"{data['target']}: {' '.join(exc.messages)}")


def pins_of(product: Product) -> dict[int, ListRule]:
    """The product's pins by rank (for the preview's labels)."""
    rules = ListRule.objects.filter(product=product, kind=ListRule.Kind.PIN).select_related("created_by")
    return {rule.rank: rule for rule in rules if rule.rank is not None}


@admin.action(description="Mark as not listed (sold out, unpublished)", permissions=["change"])
def mark_not_listed(modeladmin: admin.ModelAdmin, request: HttpRequest,
                    queryset: QuerySet[Product]) -> None:
    from catalog.services.merchandising import products_set_listed

    n = products_set_listed(product_ids=list(queryset.values_list("pk", flat=True)), listed=False)
    modeladmin.message_user(request, f"{n} product(s) taken out of every list; their lists are "
                            "being refilled.", messages.SUCCESS)


@admin.action(description="Mark as listed", permissions=["change"])
def mark_listed(modeladmin: admin.ModelAdmin, request: HttpRequest,
                queryset: QuerySet[Product]) -> None:
    from catalog.services.merchandising import products_set_listed

    n = products_set_listed(product_ids=list(queryset.values_list("pk", flat=True)), listed=True)
    modeladmin.message_user(request, f"{n} product(s) listed again; the lists they belong in are "
                            "being restored.", messages.SUCCESS)


@admin.action(description="Exclude from every list", permissions=["change"])
def exclude_everywhere(modeladmin: admin.ModelAdmin, request: HttpRequest,
                       queryset: QuerySet[Product]) -> None:
    from catalog.services.merchandising import list_exclude_everywhere

    for product in queryset:
        list_exclude_everywhere(target=product, user=request.user)
    modeladmin.message_user(request, f"{queryset.count()} product(s) excluded from every list.",
                            messages.SUCCESS)


@admin.register(ListRule)
class ListRuleAdmin(admin.ModelAdmin):
    """Every pin and exclusion, who set it and when; lifting one restores the exact list."""

    list_display = ("kind", "product", "target", "rank", "created_by", "created_at")
    list_filter = ("kind",)
    search_fields = ("product__name", "product__sku", "target__name", "target__sku")
    readonly_fields = ("kind", "product", "target", "rank", "created_by", "created_at")
    fields = readonly_fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # pins and exclusions are made on the product's page or by its actions

    def has_change_permission(self, request: HttpRequest, obj: ListRule | None = None) -> bool:
        return False

    def delete_model(self, request: HttpRequest, obj: ListRule) -> None:
        from catalog.services.merchandising import list_rule_delete

        list_rule_delete(rule=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ListRule]) -> None:
        from catalog.services.merchandising import list_rule_delete

        for rule in queryset:
            list_rule_delete(rule=rule)
