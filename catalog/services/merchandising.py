"""The shop's own rules on its lists: availability (listed or not), pins and exclusions.

Each write queues an index task for the products whose place in the matrix or whose own list
it changes; the index writer then refills or restores every affected list with the exact next
neighbours (catalog.services.indexing, catalog.services.ruled_lists). Nothing here rebuilds.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from catalog.models import MAX_NEIGHBOURS, ListRule, Product
from catalog.services import queue


@transaction.atomic
def products_set_listed(*, product_ids: Iterable[int], listed: bool) -> int:
    """Mark products listed or not listed (sold out, unpublished); returns how many changed.

    A product not listed leaves every list and search by photo, and keeps its own list."""
    changed = list(Product.objects.filter(pk__in=list(product_ids)).exclude(listed=listed)
                   .values_list("pk", flat=True))
    if changed:
        Product.objects.filter(pk__in=changed).update(listed=listed, updated_at=timezone.now())
        queue.index_enqueue(product_ids=changed)
    return len(changed)


def _check_pair(product: Product, target: Product) -> None:
    if product.pk == target.pk:
        raise ValidationError("a product cannot be in its own list", code="rule_self")


def _save(rule: ListRule) -> ListRule:
    try:
        with transaction.atomic():
            rule.save()
    except IntegrityError as exc:
        raise ValidationError("this rule conflicts with another one saved meanwhile; try again",
                              code="rule_conflict") from exc
    return rule


@transaction.atomic
def list_pin(*, product: Product, target: Product, rank: int, user: Any = None) -> ListRule:
    """Pin ``target`` at ``rank`` (1 to 10) of ``product``'s list. It replaces the pin that
    held that rank and any earlier rule of the same pair."""
    _check_pair(product, target)
    if not 1 <= rank <= MAX_NEIGHBOURS:
        raise ValidationError(f"rank must be 1 to {MAX_NEIGHBOURS}, got {rank}", code="rule_rank")
    ListRule.objects.filter(product=product, kind=ListRule.Kind.PIN, rank=rank).delete()
    ListRule.objects.filter(product=product, target=target).delete()
    rule = _save(ListRule(kind=ListRule.Kind.PIN, product=product, target=target, rank=rank,
                          created_by=_staff(user)))
    _list_queue(product.pk)
    return rule


@transaction.atomic
def list_exclude(*, product: Product, target: Product, user: Any = None) -> ListRule:
    """Keep ``target`` out of ``product``'s list (replacing a pin of the pair)."""
    _check_pair(product, target)
    ListRule.objects.filter(product=product, target=target).delete()
    rule = _save(ListRule(kind=ListRule.Kind.EXCLUDE, product=product, target=target,
                          created_by=_staff(user)))
    _list_queue(product.pk)
    return rule


@transaction.atomic
def list_exclude_everywhere(*, target: Product, user: Any = None) -> ListRule:
    """Keep ``target`` out of every list (it keeps its own list); idempotent."""
    existing = ListRule.objects.filter(kind=ListRule.Kind.EXCLUDE_EVERYWHERE, target=target).first()
    if existing is not None:
        return existing
    rule = _save(ListRule(kind=ListRule.Kind.EXCLUDE_EVERYWHERE, target=target,
                          created_by=_staff(user)))
    queue.index_enqueue(product_ids=[target.pk])
    return rule


@transaction.atomic
def list_rule_delete(*, rule: ListRule) -> None:
    """Lift a rule: the lists it shaped are restored to the exact nearest products."""
    product_id, target_id = rule.product_id, rule.target_id
    rule.delete()
    if product_id is None:  # excluded everywhere: the target returns to the matrix
        queue.index_enqueue(product_ids=[target_id])
    else:
        _list_queue(product_id)


def _list_queue(product_id: int) -> None:
    """Queue the product's list to be made again under its changed rules (its committed list
    no longer counts as current: ``indexed_as``, catalog.selectors.index_membership)."""
    Product.objects.filter(pk=product_id).update(indexed_as="")
    queue.index_enqueue(product_ids=[product_id])


def _staff(user: Any) -> Any:
    """The user to record, if it is a saved one (an API key has none)."""
    return user if getattr(user, "pk", None) is not None else None
