"""Storefront pages: the catalog, a product with its similar items, and search by photo."""

from __future__ import annotations

from dataclasses import replace

from django.conf import settings
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_http_methods

from catalog.api.throttles import SearchThrottle, rate_describe
from catalog.forms import SearchAgainForm, SearchByPhotoForm, human_bytes, rejection_error, search_token
from catalog.selectors import category_prediction, health, storefront
from similarity import ImageRejected

PAGE_SIZE = 24
SEARCH_RESULTS = 10
# Room for the multipart framing and the other fields around the image itself.
BODY_OVERHEAD = 64 * 1024


@require_http_methods(["GET", "HEAD"])
def product_list(request: HttpRequest) -> HttpResponse:
    category = request.GET.get("category") or None
    paginator = Paginator(storefront.product_list(category=category), PAGE_SIZE)
    page = paginator.get_page(request.GET.get("page"))
    return render(
        request,
        "catalog/product_list.html",
        {
            "page_obj": page,
            "products": page.object_list,
            "categories": storefront.product_categories(),
            "category": category,
        },
    )


@require_http_methods(["GET", "HEAD"])
def product_detail(request: HttpRequest, slug: str) -> HttpResponse:
    product = storefront.product_get_by_slug(slug=slug)
    if product is None:
        raise Http404("No such product")
    return render(request, "catalog/product_detail.html",
                  {"product": product, "photos": storefront.product_photos(product=product)})


def search_status(form: SearchByPhotoForm) -> int:
    """413 for a too large upload, 400 for any other refused upload."""
    return 413 if form.rejection_reason == "too_large" else 400


def body_too_large(request: HttpRequest) -> ImageRejected | None:
    """Refuse by the declared Content-Length, before Django reads (and spools) the body.

    The form checks the image's own size too; this only stops a huge request early.
    """
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    limit = settings.LOOKALIKE_MAX_UPLOAD_BYTES
    if length <= limit + BODY_OVERHEAD:
        return None
    return ImageRejected(
        "too_large", f"the upload is {human_bytes(length)}, over the {human_bytes(limit)} limit"
    )


# CSRF is checked by hand (csrf_protect below) after the cheap refusals: the middleware's
# check would read the whole multipart body first, however large it is.
@csrf_exempt
@require_http_methods(["GET", "HEAD", "POST"])
def search_by_photo(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return _search_page(request)

    throttle = SearchThrottle()  # the API's search limit: one bucket per client for both
    if not throttle.allow_request(request, None):
        retry_after = int(throttle.wait() or 1)
        context = {
            "results": None,
            "form": SearchByPhotoForm(),
            "rate_limited": True,
            "retry_after": retry_after,
            "rate": rate_describe(settings.LOOKALIKE_SEARCH_RATE),
        }
        response = render(request, "catalog/search.html", context, status=429)
        response["Retry-After"] = str(retry_after)
        return response

    too_large = body_too_large(request)
    if too_large is not None:
        context = {"results": None, "rate_limited": False, "form": SearchByPhotoForm.refused(too_large)}
        return render(request, "catalog/search.html", context, status=413)
    return _search_page(request)


@csrf_protect
def _search_page(request: HttpRequest) -> HttpResponse:
    context: dict = {"results": None, "rate_limited": False,
                     "categories": storefront.product_categories()}
    if request.method != "POST":
        context["form"] = SearchByPhotoForm()
        return render(request, "catalog/search.html", context)
    if "query" in request.POST:  # the same photo, in another category
        return _search_again(request, context)

    form = SearchByPhotoForm(request.POST, request.FILES)
    context["form"] = form
    status = 200
    if form.is_valid():
        try:
            found = category_prediction.products_search_by_photo(
                image_bytes=form.image_bytes or b"", k=SEARCH_RESULTS,
                category=form.cleaned_data.get("category") or None,
            )
            context.update(_found(found, form.thumbnail_url))
        except ImageRejected as exc:
            form.add_error("image", rejection_error(exc))
    if form.errors:
        status = search_status(form)
    return render(request, "catalog/search.html", context, status=status)


def _search_again(request: HttpRequest, context: dict) -> HttpResponse:
    again = SearchAgainForm(request.POST)
    if not again.is_valid():
        return render(request, "catalog/search.html", {**context, "form": SearchByPhotoForm.asking_again()},
                      status=400)
    vector, colour = again.cleaned_data["query"]
    found = category_prediction.products_search_with_category(
        vector=vector, colour=colour, k=SEARCH_RESULTS, category=again.chosen_category)
    context.update(_found(replace(found, vector=vector, colour=colour), again.cleaned_data["thumbnail"]))
    return render(request, "catalog/search.html", {**context, "form": SearchByPhotoForm()})


def _found(found: category_prediction.PhotoSearch, thumbnail: str | None) -> dict:
    """The results page's part of the context: results, the category facet and what it takes
    to search the same photo again in another category."""
    return {"results": found.results, "category": found.category,
            "predicted_category": found.predicted_category, "query_thumbnail": thumbnail,
            "query_token": search_token(found.vector, found.colour) if found.vector is not None else None}


@require_http_methods(["GET", "HEAD"])
def health_check(request: HttpRequest) -> JsonResponse:
    """200 when the database and Redis answer, 503 naming which does not."""
    report = health.deployment_health()
    checks = {name: "ok" if ok else "unavailable" for name, ok in report.checks.items()}
    status = "ok" if report.healthy else "unavailable"
    return JsonResponse({"status": status, "checks": checks}, status=200 if report.healthy else 503)
