"""`docker compose up` gives a working shop: the whole stack, checked through HTTP only.

Runs with LOOKALIKE_DEPLOY_TEST=1 (`make deploy-test`) where a Docker engine answers; builds
the images (base images from scripts/build-base-images.sh when none can be pulled), brings
the stack up under its own project name on a free port, and takes it down with its volumes.
The stack first serves plain HTTP (the compose defaults); the last tests move it behind a
TLS-terminating proxy, which the test plays.
"""

from __future__ import annotations

import io
import os
import re
import secrets
import time

import pytest

from similarity import CLASS_NAMES, balanced_indices, load_split, to_photo
from tests.deploy.compose_stack import Stack, base_images, docker_answers, free_port
from tests.deploy.shop_client import ProxiedShopClient, ShopClient, multipart

pytestmark = pytest.mark.skipif(
    os.environ.get("LOOKALIKE_DEPLOY_TEST") != "1",
    reason="the deployment test runs with LOOKALIKE_DEPLOY_TEST=1 (make deploy-test)",
)
STAFF = "deploy-admin"
# The shop's public address behind a TLS-terminating proxy (the test plays the proxy): its port
# is not 443, so the Host the proxy passes on (without the port) differs from the browser's
# Origin, and only CSRF_TRUSTED_ORIGINS lets the form through.
PUBLIC_HOST = "shop.example.test"
PUBLIC_ORIGIN = f"https://{PUBLIC_HOST}:8443"
BEHIND_PROXY_ENV = {  # the .env lines docs/deploy.md gives for HTTPS behind a proxy
    "ALLOWED_HOSTS": f"localhost,127.0.0.1,{PUBLIC_HOST}",
    "CSRF_TRUSTED_ORIGINS": PUBLIC_ORIGIN,
    "SESSION_COOKIE_SECURE": "true",
    "CSRF_COOKIE_SECURE": "true",
    "SECURE_SSL_REDIRECT": "true",
    "LOOKALIKE_TRUSTED_PROXIES": "2",
}


def garment_files(per_class: int, offset: int, classes: int = 10) -> dict[str, list[tuple[str, str, bytes]]]:
    """Fashion-MNIST garments as PNG photos, per category: {category: [(field, name, bytes)]}."""
    images, labels = load_split("train")
    files: dict[str, list[tuple[str, str, bytes]]] = {}
    for index in balanced_indices(labels, per_class, offset=offset):
        category = CLASS_NAMES[int(labels[index])]
        if len(files) < classes or category in files:
            buffer = io.BytesIO()
            to_photo(images[index]).save(buffer, format="PNG")
            files.setdefault(category, []).append(("files", f"g{index}.png", buffer.getvalue()))
    return files


def one_garment(offset: int) -> list[tuple[str, str, bytes]]:
    return next(iter(garment_files(per_class=1, offset=offset, classes=1).values()))


def bulk_import(shop: ShopClient, marker: str, files: dict[str, list[tuple[str, str, bytes]]]) -> list[int]:
    """Upload every category through the admin's bulk form; the new products' ids."""
    for category, photos in files.items():
        fields = {"category": category, "name_pattern": f"{{category}} {marker} {{n}}"}
        answer = shop.post_form("/admin/catalog/product/bulk-upload/", fields, photos)
        assert answer.status == 200 and f"Created {len(photos)} product" in answer.text, answer.text[-2000:]
    ids = shop.product_ids(marker)
    assert len(ids) == sum(len(photos) for photos in files.values())
    return ids


@pytest.fixture(scope="module")
def stack():
    reason = docker_answers()
    if reason:
        pytest.skip(f"deployment test skipped: {reason}")
    env = {**os.environ, **base_images(), "SECRET_KEY": secrets.token_urlsafe(50),
           "POSTGRES_PASSWORD": secrets.token_hex(16), "COMPOSE_HTTP_TIMEOUT": "600",
           "EMBED_CONCURRENCY": "1", "EMBED_THREADS": "1", "LOOKALIKE_EMBED_BATCH": "16"}
    stack = Stack(project=f"lookalike-deploy-{secrets.token_hex(3)}", port=free_port(), env=env)
    stack.env["LOOKALIKE_HTTP_PORT"] = str(stack.port)
    try:
        # One build of the app image serves every app service (they share its tag).
        stack.compose("build", "migrate", "nginx", timeout=3600)
        stack.compose("up", "-d", timeout=1800)
        stack.wait_healthy("web", 1)
        ShopClient(stack.url).wait_answering("/healthz/")
        yield stack
    finally:
        stack.down()


@pytest.fixture(scope="module")
def shop(stack):
    password = secrets.token_urlsafe(16)
    stack.compose("exec", "-T", "-e", f"DJANGO_SUPERUSER_PASSWORD={password}", "web",
                  "python", "manage.py", "createsuperuser", "--noinput",
                  "--username", STAFF, "--email", "staff@example.com")
    client = ShopClient(stack.url)
    answer = client.login(STAFF, password)
    assert answer.status == 200 and answer.url.endswith("/admin/"), answer.text[-1000:]
    client.password = password  # type: ignore[attr-defined]
    return client


def test_storefront_and_admin_css_are_served(stack):
    anonymous = ShopClient(stack.url)
    for page in ("/", "/admin/login/"):
        answer = anonymous.get(page)
        assert answer.status == 200
        stylesheets = re.findall(r'href="(/static/[^"]+\.css)"', answer.text)
        assert stylesheets, page
        for href in stylesheets:
            css = anonymous.get(href)
            assert (css.status, css.content_type.split(";")[0]) == (200, "text/css"), href


def test_health_endpoint_through_nginx(stack):
    answer = ShopClient(stack.url).get("/healthz/")
    assert (answer.status, answer.json()["status"]) == (200, "ok")


def test_staff_logs_in_over_http(shop):
    answer = shop.get("/admin/")
    assert answer.status == 200 and "Site administration" in answer.text
    assert {cookie.name for cookie in shop.cookies} >= {"sessionid", "csrftoken"}
    assert not any(cookie.secure for cookie in shop.cookies)


def test_imported_garments_reach_ready_with_their_photos(shop):
    ids = bulk_import(shop, "wave1", garment_files(per_class=20, offset=0))
    assert len(ids) == 200
    answers = shop.wait_ready(ids)
    product = answers[ids[0]]["product"]
    assert product["url"].startswith(shop.base_url + "/p/")  # nginx passes the Host on
    page = shop.get(product["url"])
    assert page.status == 200
    photos = re.findall(r'<img src="(/media/[^"]+)"', page.text)
    assert photos and product["image"] == shop.base_url + photos[0]
    for src in photos:
        photo = shop.get(src)
        assert photo.status == 200 and photo.content_type.startswith("image/"), src


def test_photo_uploaded_in_the_admin_form_reaches_ready(shop):
    [(_, name, data)] = one_garment(offset=30)
    answer = shop.post_form("/admin/catalog/product/add/",
                            {"name": "Admin upload", "slug": "", "category": "T-shirt/top"},
                            [("image", name, data)])
    assert answer.status == 200 and "added successfully" in answer.text, answer.text[-2000:]
    [product_id] = shop.product_ids("Admin upload")
    shop.wait_ready([product_id])


def test_search_by_photo_answers(stack):
    [(_, name, data)] = one_garment(offset=40)
    client = ShopClient(stack.url)
    body, content_type = multipart({}, [("image", name, data)])
    answer = client.request("/api/search/", body, content_type)
    assert answer.status == 200, answer.text[-1000:]
    assert len(answer.json()["results"]) == 10


def test_second_embed_worker_shares_an_import(stack, shop):
    stack.compose("up", "-d", "--no-deps", "--no-recreate", "--scale", "worker-embed=2", "worker-embed",
                  timeout=1800)
    workers = stack.wait_healthy("worker-embed", 2)
    ids = bulk_import(shop, "wave2", garment_files(per_class=10, offset=20))
    shop.wait_ready(ids)
    for container in workers:
        assert re.search(r"Task \S*embed\S*\[[^\]]+\] succeeded", stack.logs(container)), container


def test_killed_index_worker_and_restarted_redis_lose_nothing(stack, shop):
    ids_before = shop.product_ids("wave")
    files = garment_files(per_class=10, offset=60)
    for category, photos in files.items():
        shop.post_form("/admin/catalog/product/bulk-upload/",
                       {"category": category, "name_pattern": "{category} wave3 {n}"}, photos)
        if category == CLASS_NAMES[2]:
            [index] = stack.containers("worker-index")
            stack.compose("kill", "worker-index")  # docker kill: SIGKILL, mid-import
        if category == CLASS_NAMES[5]:
            stack.compose("restart", "redis")
    stack.compose("up", "-d", "--no-deps", "--no-recreate", "worker-index")
    assert stack.wait_healthy("worker-index", 1) == [index]
    ids = shop.product_ids("wave3")
    assert len(ids) == 100
    shop.wait_ready(ids + ids_before)


@pytest.fixture(scope="module")
def behind_proxy(stack, shop):
    """The stack moved behind a TLS-terminating proxy: web recreated with BEHIND_PROXY_ENV, as
    `docker compose up -d` does after those lines go into .env. The plain-HTTP logins of the
    tests above stop working (their cookies become Secure), so the tests using it come last."""
    stack.env.update(BEHIND_PROXY_ENV)
    stack.compose("up", "-d", "--no-deps", "web", timeout=900)
    stack.wait_healthy("web", 1)
    ShopClient(stack.url).wait_answering("/healthz/")  # through nginx, exempt from the redirect
    return stack


def test_plain_http_is_redirected_and_the_proxy_scheme_reaches_django(behind_proxy):
    plain = ShopClient(behind_proxy.url, follow_redirects=False)
    plain.headers = {"Host": PUBLIC_HOST}
    answer = plain.get("/admin/login/")
    assert (answer.status, answer.headers["Location"]) == (301, f"https://{PUBLIC_HOST}/admin/login/")
    # Sent on by nginx, X-Forwarded-Proto: https makes the request secure to Django: no
    # redirect, and HSTS (which Django adds to secure requests only).
    proxied = ProxiedShopClient(behind_proxy.url, PUBLIC_ORIGIN).get("/admin/login/")
    assert proxied.status == 200
    assert proxied.headers["Strict-Transport-Security"].startswith("max-age=")


def test_staff_logs_in_over_https_behind_a_proxy(behind_proxy, shop):
    forged = ProxiedShopClient(behind_proxy.url, "https://evil.example.test", host=PUBLIC_HOST)
    refused = forged.login(STAFF, shop.password)
    assert refused.status == 403 and "CSRF verification failed" in refused.text
    assert "sessionid" not in forged.cookie_flags()
    browser = ProxiedShopClient(behind_proxy.url, PUBLIC_ORIGIN)
    answer = browser.login(STAFF, shop.password)
    assert answer.status == 200 and answer.url.endswith("/admin/"), answer.text[-1000:]
    flags = browser.cookie_flags()
    assert flags["sessionid"] == {"Secure", "HttpOnly"}
    assert flags["csrftoken"] == {"Secure"}  # readable by the admin's scripts, as Django sets it
    index = browser.get("/admin/")
    assert index.status == 200 and "Site administration" in index.text


def test_down_leaves_no_container_volume_or_network(stack):
    stack.down()
    deadline = time.monotonic() + 60
    while stack.leftovers() and time.monotonic() < deadline:
        time.sleep(2)
    assert stack.leftovers() == {}
