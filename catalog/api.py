"""JSON endpoints: a product's neighbours, and search by photo."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from catalog import ratelimit
from catalog.forms import SearchByPhotoForm, rejection_error
from catalog.models import Product
from catalog.selectors.photo_search import products_search_by_image
from catalog.selectors.storefront import product_get, product_neighbours, product_neighbours_state
from catalog.views import SEARCH_RESULTS, body_too_large, search_status
from similarity import ImageRejected


def _image_url(request: HttpRequest, product: Product) -> str | None:
    return request.build_absolute_uri(product.image.url) if product.image else None


def product_json(request: HttpRequest, product: Product) -> dict:
    return {
        "id": product.pk,
        "name": product.name,
        "category": product.category,
        "url": request.build_absolute_uri(product.get_absolute_url()),
        "image": _image_url(request, product),
    }


def error_json(message: str, reason: str, status: int) -> JsonResponse:
    return JsonResponse({"error": message, "reason": reason}, status=status)


@require_GET
def product_similar(request: HttpRequest, product_id: int) -> JsonResponse:
    product = product_get(product_id=product_id)
    if product is None:
        return error_json(f"no product with id {product_id}", "not_found", 404)
    neighbours = product_neighbours(product=product)
    state = product_neighbours_state(product=product, neighbours=neighbours)
    return JsonResponse(
        {
            "product": {**product_json(request, product), "status": product.status},
            "state": state,
            "neighbours": [
                {**product_json(request, link.neighbour), "rank": link.rank, "distance": link.distance}
                for link in neighbours
            ]
            if state == "ready"
            else [],
        }
    )


@csrf_exempt  # changes nothing; lets non-browser clients post images
@require_POST
def search(request: HttpRequest) -> JsonResponse:
    allowed, retry_after = ratelimit.hit(request, scope="search", rate=settings.LOOKALIKE_SEARCH_RATE)
    if not allowed:
        rate = ratelimit.parse_rate(settings.LOOKALIKE_SEARCH_RATE).describe()
        response = error_json(
            f"too many searches: the limit is {rate}; retry in {retry_after} s", "rate_limited", 429
        )
        response["Retry-After"] = str(retry_after)
        return response
    too_large = body_too_large(request)  # before the body is read
    if too_large is not None:
        form = SearchByPhotoForm.refused(too_large)
        return error_json(" ".join(str(e) for e in form.errors["image"]), "too_large", 413)
    form = SearchByPhotoForm(request.POST, request.FILES)
    if form.is_valid():
        try:
            hits = products_search_by_image(
                image_bytes=form.image_bytes or b"", k=SEARCH_RESULTS
            )
        except ImageRejected as exc:
            form.add_error("image", rejection_error(exc))
        else:
            return JsonResponse(
                {
                    "results": [
                        {**product_json(request, product), "distance": distance}
                        for product, distance in hits
                    ]
                }
            )
    error = form.errors.as_data()["image"][0]
    message = " ".join(error.messages)
    return error_json(message, form.rejection_reason or "invalid", search_status(form))
