"""Guarantee 6: secure defaults.

Production settings refuse to start without SECRET_KEY, force DEBUG off and take
ALLOWED_HOSTS from the environment; ``check --deploy`` is clean; only staff with the
permissions can create or change products; search by photo is size-capped and rate-limited
per client; no pickle is loaded from any file the project writes or reads; uploaded file
names never escape MEDIA_ROOT.
"""

from __future__ import annotations

import ast
import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from django.contrib.auth.models import Permission
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from catalog.api.throttles import SearchThrottle
from catalog.models import Product
from tests.reliability import upload_cases
from tests.reliability.upload_cases import add_via_admin, encode, garment, raw_multipart, stored_product

REPO = Path(__file__).resolve().parents[2]
STORED_NAME = re.compile(r"^products/[0-9a-f]{32}\.(jpg|png|gif|webp)$")

fresh_state = upload_cases.fresh_state
matrix_dir = upload_cases.matrix_dir
media_root = upload_cases.media_root
superuser_client = upload_cases.superuser_client


# ------------------------------------------------------------------- production settings


def _production(tmp_path: Path, code: str, **env: str) -> subprocess.CompletedProcess:
    """Run ``code`` after ``django.setup()`` under the production settings, in a clean environment."""
    clean = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "PYTHONPATH": str(REPO),
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "LOOKALIKE_DATA_DIR": str(tmp_path / "data"),
        **env,
    }
    return subprocess.run(
        [sys.executable, "-c", f"import django; django.setup()\n{code}"],
        cwd=REPO, env=clean, capture_output=True, text=True, timeout=120,
    )


def _strong_key() -> str:
    return secrets.token_urlsafe(64)


PRINT_SETTINGS = (
    "import json; from django.conf import settings as s; "
    "print(json.dumps({'DEBUG': s.DEBUG, 'ALLOWED_HOSTS': s.ALLOWED_HOSTS}))"
)


@pytest.mark.parametrize("secret", [None, ""], ids=["unset", "empty"])
def test_production_refuses_to_start_without_secret_key(tmp_path, secret):
    env = {"ALLOWED_HOSTS": "shop.example.com"}
    if secret is not None:
        env["SECRET_KEY"] = secret
    result = _production(tmp_path, PRINT_SETTINGS, **env)
    assert result.returncode != 0, result.stdout
    assert "ImproperlyConfigured" in result.stderr
    assert "SECRET_KEY" in result.stderr.strip().splitlines()[-1], result.stderr[-2000:]


def test_production_refuses_the_development_key(tmp_path):
    result = _production(
        tmp_path, PRINT_SETTINGS, ALLOWED_HOSTS="shop.example.com",
        SECRET_KEY="dev-only-insecure-key-do-not-use-in-production",
    )
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr.strip().splitlines()[-1]


def test_production_debug_is_off_even_when_the_environment_asks_for_it(tmp_path):
    result = _production(
        tmp_path, PRINT_SETTINGS, SECRET_KEY=_strong_key(), ALLOWED_HOSTS="shop.example.com",
        DJANGO_DEBUG="1",
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["DEBUG"] is False


def test_production_allowed_hosts_come_from_the_environment(tmp_path):
    result = _production(
        tmp_path, PRINT_SETTINGS, SECRET_KEY=_strong_key(),
        ALLOWED_HOSTS="shop.example.com, www.example.com",
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["ALLOWED_HOSTS"] == ["shop.example.com", "www.example.com"]

    missing = _production(tmp_path, PRINT_SETTINGS, SECRET_KEY=_strong_key())
    assert missing.returncode != 0
    assert "ALLOWED_HOSTS" in missing.stderr.strip().splitlines()[-1]


def test_check_deploy_is_clean_with_production_settings(tmp_path):
    clean = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "PYTHONPATH": str(REPO),
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "LOOKALIKE_DATA_DIR": str(tmp_path / "data"),
        "SECRET_KEY": _strong_key(),
        "ALLOWED_HOSTS": "shop.example.com",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=REPO, env=clean, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout, result.stdout + result.stderr


def test_production_security_settings(tmp_path):
    code = (
        "import json; from django.conf import settings as s; print(json.dumps({k: getattr(s, k) for k in "
        "['SECURE_SSL_REDIRECT', 'SECURE_HSTS_SECONDS', 'SESSION_COOKIE_SECURE', 'CSRF_COOKIE_SECURE', "
        "'SESSION_COOKIE_HTTPONLY', 'SECURE_CONTENT_TYPE_NOSNIFF', 'X_FRAME_OPTIONS', "
        "'CELERY_ACCEPT_CONTENT', 'CELERY_TASK_SERIALIZER']}))"
    )
    result = _production(tmp_path, code, SECRET_KEY=_strong_key(), ALLOWED_HOSTS="shop.example.com")
    assert result.returncode == 0, result.stderr
    got = json.loads(result.stdout)
    assert got["SECURE_SSL_REDIRECT"] is True
    assert got["SECURE_HSTS_SECONDS"] >= 31_536_000
    assert got["SESSION_COOKIE_SECURE"] and got["CSRF_COOKIE_SECURE"] and got["SESSION_COOKIE_HTTPONLY"]
    assert got["SECURE_CONTENT_TYPE_NOSNIFF"] and got["X_FRAME_OPTIONS"] == "DENY"
    # The broker never carries pickles either.
    assert got["CELERY_ACCEPT_CONTENT"] == ["json"] and got["CELERY_TASK_SERIALIZER"] == "json"


# --------------------------------------------------------------- only staff write products

def _png(seed: int = 1) -> bytes:
    return encode(garment(seed, size=48), "PNG")


def _write_urls(product: Product) -> list[tuple[str, str, dict]]:
    """(what, url, POST data) of every way the admin creates or changes products."""
    png = _png(9)
    return [
        ("add", reverse("admin:catalog_product_add"),
         {"name": "Intruder", "slug": "", "category": "X", "_save": "Save",
          "image": SimpleUploadedFile("x.png", png)}),
        ("change", reverse("admin:catalog_product_change", args=[product.pk]),
         {"name": "Defaced", "slug": product.slug, "category": "X", "_save": "Save",
          "image": SimpleUploadedFile("x.png", png)}),
        ("delete", reverse("admin:catalog_product_delete", args=[product.pk]), {"post": "yes"}),
        ("bulk-upload", reverse("admin:catalog_product_bulk_upload"),
         {"files": [SimpleUploadedFile("x.png", png)], "category": "X", "name_pattern": "{category} {n}"}),
        ("rebuild", reverse("admin:catalog_product_rebuild"), {}),
        ("action", reverse("admin:catalog_product_changelist"),
         {"action": "recompute_similarity", "_selected_action": [str(product.pk)], "index": "0"}),
    ]


def _unchanged(product: Product, before: dict) -> None:
    assert Product.objects.count() == 1
    product.refresh_from_db()
    assert {"name": product.name, "image": product.image.name, "status": product.status} == before


@pytest.fixture
def victim(media_root):
    product = stored_product(name="Original", data=_png(3))
    return product, {"name": product.name, "image": product.image.name, "status": product.status}


@pytest.mark.django_db
@pytest.mark.parametrize("who", ["anonymous", "customer"])
def test_anonymous_and_non_staff_are_sent_to_the_login_page(
    who, client, django_user_model, victim, no_broker, django_capture_on_commit_callbacks
):
    product, before = victim
    if who == "customer":
        user = django_user_model.objects.create_user("customer", "c@example.com", "pw")
        assert not user.is_staff
        client.force_login(user)
    login = reverse("admin:login")
    with django_capture_on_commit_callbacks(execute=True):
        for what, url, data in _write_urls(product):
            for response in (client.get(url), client.post(url, data)):
                assert response.status_code == 302, (what, response.status_code)
                assert response["Location"].startswith(login + "?next="), (what, response["Location"])
    _unchanged(product, before)
    assert no_broker == []
    assert client.get(reverse("admin:catalog_product_changelist")).status_code == 302


@pytest.mark.django_db
def test_staff_without_product_permissions_cannot_write(
    client, django_user_model, victim, no_broker, django_capture_on_commit_callbacks
):
    """A staff member who may only look at products changes nothing and queues nothing."""
    product, before = victim
    clerk = django_user_model.objects.create_user("clerk", "k@example.com", "pw", is_staff=True)
    clerk.user_permissions.add(Permission.objects.get(codename="view_product"))
    client.force_login(clerk)
    assert client.get(reverse("admin:catalog_product_changelist")).status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        for what, url, data in _write_urls(product):
            response = client.post(url, data)
            if what == "action":  # the actions are not offered: the list comes back, nothing done
                assert response.status_code in (200, 302), response.status_code
            else:
                assert response.status_code == 403, (what, response.status_code)
    _unchanged(product, before)
    assert no_broker == [], [s.task for s in no_broker]
    listing = client.get(reverse("admin:catalog_product_changelist")).content.decode()
    assert "recompute_similarity" not in listing and "rebuild_everything" not in listing


@pytest.mark.django_db
def test_staff_with_permissions_can_write(
    superuser_client, victim, no_broker, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = add_via_admin(superuser_client, SimpleUploadedFile("ok.png", _png(4)), name="Allowed")
    assert response.status_code == 302
    assert Product.objects.filter(name="Allowed").exists()
    assert len(no_broker) == 1


@pytest.mark.django_db
def test_the_search_page_keeps_its_csrf_check(media_root, fresh_state):
    client = Client(enforce_csrf_checks=True)
    response = client.post(reverse("catalog:search"), {"image": SimpleUploadedFile("x.png", _png())})
    assert response.status_code == 403


# ------------------------------------------------------------- search: size cap, rate limit


def _search_upload(data: bytes) -> dict:
    return {"image": SimpleUploadedFile("q.png", data, content_type="image/png")}


@pytest.mark.django_db
def test_search_refuses_an_image_over_the_size_limit(client, settings, media_root, fresh_state):
    settings.LOOKALIKE_SEARCH_RATE = "0/m"
    data = upload_cases.noisy_png()
    settings.LOOKALIKE_MAX_UPLOAD_BYTES = len(data) - 1
    page = client.post(reverse("catalog:search"), _search_upload(data))
    assert page.status_code == 413
    assert "(reason: too_large)" in page.content.decode()
    api = client.post(reverse("catalog:api-search"), _search_upload(data))
    assert api.status_code == 413
    assert api.json()["reason"] == "too_large"

    settings.LOOKALIKE_MAX_UPLOAD_BYTES = len(data)  # exactly at the limit is allowed in
    at_limit = client.post(reverse("catalog:api-search"), _search_upload(data))
    assert at_limit.json().get("reason") != "too_large"


@pytest.mark.django_db
def test_search_refuses_a_huge_body_before_reading_it(client, settings, media_root, fresh_state, monkeypatch):
    from django.http.multipartparser import MultiPartParser

    settings.LOOKALIKE_SEARCH_RATE = "0/m"
    settings.LOOKALIKE_MAX_UPLOAD_BYTES = 10_000

    def never(*args, **kwargs):
        raise AssertionError("the body of an oversized request was parsed")

    monkeypatch.setattr(MultiPartParser, "parse", never)
    body, content_type = raw_multipart({}, [("image", b"huge.png", b"\0" * 200_000)])
    for name in ("catalog:search", "catalog:api-search"):
        response = client.post(reverse(name), data=body, content_type=content_type)
        assert response.status_code == 413, name
        text = response.content.decode()
        assert "too_large" in text and "over the" in text, text[:500]


@pytest.mark.django_db
def test_search_is_rate_limited_per_client(client, settings, media_root, fresh_state, monkeypatch):
    settings.LOOKALIKE_SEARCH_RATE = "3/m"
    now = [1_000_020.0]  # the middle of a one-minute window
    monkeypatch.setattr(SearchThrottle, "timer", staticmethod(lambda: now[0]))
    a = {"REMOTE_ADDR": "203.0.113.7"}
    empty = {"image": SimpleUploadedFile("e.png", b"")}

    # Three searches (page and JSON count together) are answered; bad uploads count too.
    assert client.post(reverse("catalog:search"), dict(empty), **a).status_code == 400
    assert client.post(reverse("catalog:api-search"), dict(empty), **a).status_code == 400
    assert client.post(reverse("catalog:api-search"), dict(empty), **a).status_code == 400

    # The fourth is refused before the upload is even looked at.
    import catalog.forms

    monkeypatch.setattr(catalog.forms, "load_image", lambda *a, **k: pytest.fail("decoded while limited"))
    page = client.post(reverse("catalog:search"), _search_upload(_png()), **a)
    assert page.status_code == 429
    assert int(page["Retry-After"]) >= 1
    assert "Too many searches" in page.content.decode()
    api = client.post(reverse("catalog:api-search"), _search_upload(_png()), **a)
    assert api.status_code == 429 and api.json()["reason"] == "rate_limited"
    # A forged X-Forwarded-For does not make the same client someone else.
    forged = client.post(reverse("catalog:api-search"), dict(empty), HTTP_X_FORWARDED_FOR="198.51.100.1", **a)
    assert forged.status_code == 429

    # Another client is not affected.
    other = client.post(reverse("catalog:api-search"), dict(empty), REMOTE_ADDR="203.0.113.8")
    assert other.status_code == 400 and other.json()["reason"] == "empty"

    # The next window lets the first client in again.
    now[0] += 60
    assert client.post(reverse("catalog:api-search"), dict(empty), **a).status_code == 400


# ----------------------------------------------------------------------------- no pickles

SOURCE_DIRS = ("catalog", "config", "similarity", "workers", "scripts", "bench")
UNPICKLER_HOME = ("similarity/model/weights.py", "_RestrictedUnpickler")


def _project_sources() -> list[Path]:
    files = [REPO / "manage.py"]
    for name in SOURCE_DIRS:
        files += sorted((REPO / name).rglob("*.py"))
    return [f for f in files if f.is_file()]


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return "?"


def _pickle_findings(path: Path, text: str | None = None) -> list[str]:
    """Every way ``path`` could unpickle something, as 'file:line what'."""
    rel = path.relative_to(REPO).as_posix() if path.is_absolute() else path.as_posix()
    tree = ast.parse(path.read_text() if text is None else text, filename=rel)
    found = []
    unsafe_modules = {"pickle", "_pickle", "cPickle", "dill", "cloudpickle", "joblib", "shelve",
                      "marshal", "torch", "pandas"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for name in names:
                if name.split(".")[0] in unsafe_modules:
                    found.append(f"{rel}:{node.lineno} import {name}")
        elif isinstance(node, ast.ClassDef):
            for base in node.bases:
                if _dotted(base).endswith("Unpickler"):
                    found.append(f"{rel}:{node.lineno} class {node.name}({_dotted(base)})")
        elif isinstance(node, ast.Call):
            name = _dotted(node.func)
            keywords = {k.arg: k.value for k in node.keywords}
            pickle_kw = keywords.get("allow_pickle")
            if pickle_kw is not None and not (
                isinstance(pickle_kw, ast.Constant) and pickle_kw.value is False
            ):
                found.append(f"{rel}:{node.lineno} {name}(allow_pickle=<not False>)")
            loader = re.search(r"(^|\.)(pickle|_pickle|dill|cloudpickle)\.loads?$", name) or name in (
                "torch.load", "joblib.load", "pd.read_pickle", "pandas.read_pickle", "shelve.open",
                "marshal.load", "marshal.loads",
            )
            if loader or name.endswith(("Unpickler", "Unpickler.load")):
                found.append(f"{rel}:{node.lineno} {name}()")
            numpy_reader = re.search(r"(^|\.)(np|numpy)\.load$", name) or name.endswith(
                "lib.format.read_array"
            )
            if numpy_reader and not (isinstance(pickle_kw, ast.Constant) and pickle_kw.value is False):
                found.append(f"{rel}:{node.lineno} {name}() without allow_pickle=False")
    return found


def test_the_scanner_sees_every_kind_of_unpickling():
    sample = (
        "import pickle, joblib\nimport numpy as np\nimport torch\n"
        "a = pickle.load(f)\nb = np.load(p)\nc = np.load(p, allow_pickle=True)\n"
        "d = np.load(p, allow_pickle=False)\ne = torch.load(p)\n"
        "class U(pickle.Unpickler):\n    pass\n"
    )
    found = _pickle_findings(Path("sample.py"), sample)
    text = "\n".join(found)
    for what in ("import pickle", "import joblib", "import torch", "pickle.load()",
                 "np.load() without allow_pickle=False", "allow_pickle=<not False>",
                 "torch.load()", "class U(pickle.Unpickler)"):
        assert what in text, (what, text)
    assert ":7 " not in text, "np.load(..., allow_pickle=False) is fine"


def test_the_only_unpickling_is_the_restricted_unpickler_of_the_weights():
    sources = _project_sources()
    assert len(sources) > 20
    found = [f for path in sources for f in _pickle_findings(path)]
    weights, unpickler = UNPICKLER_HOME
    outside = [f for f in found if not f.startswith(f"{weights}:")]
    assert outside == [], "unpickling outside the restricted unpickler:\n" + "\n".join(outside)
    inside = [f for f in found if f.startswith(f"{weights}:")]
    assert any(f"class {unpickler}(pickle.Unpickler)" in f for f in inside), inside
    # In weights.py: the import, the class, and calls of that class only.
    for f in inside:
        what = f.split(" ", 1)[1]
        assert what in ("import pickle", f"class {unpickler}(pickle.Unpickler)") or \
            what.startswith(f"{unpickler}("), f
    # The restricted unpickler refuses every global outside its allow-list.
    from similarity.model import weights

    assert weights._RestrictedUnpickler.find_class is not __import__("pickle").Unpickler.find_class


@pytest.mark.django_db
def test_every_matrix_file_the_project_writes_loads_without_pickle(matrix_dir, settings):
    from catalog.engine import matrix_store

    rng = np.random.default_rng(0)
    store = matrix_store().store
    assert Path(store.directory) == matrix_dir

    def vectors(n: int) -> np.ndarray:
        return rng.standard_normal((n, 1280)).astype(np.float32)

    matrix = store.rebuild([1, 2, 3, 4], vectors(4))
    store.upsert(matrix, [5, 6], vectors(2))
    store.remove(matrix, [2])
    store.upsert(matrix, [7], vectors(1))
    files = sorted(matrix_dir.glob("*.npz"))
    store.compact(matrix)
    files += sorted(set(matrix_dir.glob("*.npz")) - set(files))
    assert any(f.name.startswith("base-") for f in files)
    assert any(f.name.startswith("delta-") for f in files) or len(files) >= 2
    for path in sorted(matrix_dir.glob("*.npz")):
        with np.load(path, allow_pickle=False) as z:
            for key in z.files:
                assert z[key].dtype != object, (path.name, key)
    assert sorted(store.load().ids.tolist()) == [1, 3, 4, 5, 6, 7]


# -------------------------------------------------------------- upload names and MEDIA_ROOT

HOSTILE_NAMES = [
    pytest.param(b"../../etc/passwd.png", id="dot-dot-slash"),
    pytest.param(b"..\\..\\x.png", id="dot-dot-backslash"),
    pytest.param(b"/etc/passwd.png", id="absolute"),
    pytest.param(b"C:\\Windows\\win.png", id="windows-absolute"),
    pytest.param(b"evil\x00.png", id="nul-byte"),
    pytest.param(b"evil.png\x00.php", id="nul-then-extension"),
    pytest.param(b"%2e%2e%2f%2e%2e%2fx.png", id="url-encoded"),
    pytest.param(b"." * 3 + b"/" + b"a" * 200 + b".png", id="long-name"),
    pytest.param(b"shell.php", id="no-image-extension"),
]


def _assert_inside(product: Product, media_root: Path) -> None:
    assert STORED_NAME.match(product.image.name), product.image.name
    path = Path(product.image.path).resolve()
    assert path.is_relative_to((media_root / "products").resolve()), path
    assert path.is_file()


def _everything_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


@pytest.mark.django_db
@pytest.mark.parametrize("filename", HOSTILE_NAMES)
def test_admin_upload_names_cannot_escape_media_root(
    filename, superuser_client, media_root, no_broker, django_capture_on_commit_callbacks
):
    site = media_root.parent.parent  # tmp_path: anything written outside MEDIA_ROOT shows here
    before = _everything_under(site)
    body, content_type = raw_multipart(
        {"name": "Hostile name", "slug": "", "category": "Odd", "_save": "Save"},
        [("image", filename, _png(11))],
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = superuser_client.post(reverse("admin:catalog_product_add"), data=body,
                                         content_type=content_type)
    assert response.status_code == 302, response.content[:2000]
    product = Product.objects.get()
    _assert_inside(product, media_root)
    assert _everything_under(site) - before == {Path(product.image.path)}


@pytest.mark.django_db
def test_bulk_upload_names_cannot_escape_media_root(
    superuser_client, media_root, no_broker, django_capture_on_commit_callbacks
):
    site = media_root.parent.parent
    before = _everything_under(site)
    names = [p.values[0] for p in HOSTILE_NAMES]
    body, content_type = raw_multipart(
        {"category": "Odd", "name_pattern": "{category} {n} {stem}"},
        [("files", name, _png(20 + i)) for i, name in enumerate(names)],
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = superuser_client.post(reverse("admin:catalog_product_bulk_upload"), data=body,
                                         content_type=content_type)
    assert response.status_code == 302, response.content[:2000]
    products = list(Product.objects.all())
    assert len(products) == len(names)
    for product in products:
        _assert_inside(product, media_root)
    assert _everything_under(site) - before == {Path(p.image.path) for p in products}


@pytest.mark.django_db
@pytest.mark.parametrize("filename", [p.values[0].decode("latin-1") for p in HOSTILE_NAMES]
                         + ["/" + "x" * 1000 + ".png"])
def test_the_services_generate_the_name_whatever_the_file_is_called(
    filename, media_root, no_broker, django_capture_on_commit_callbacks
):
    """Below Django's multipart parser (which strips directories): the service itself."""
    from catalog.services.products import product_create, product_update

    site = media_root.parent.parent
    before = _everything_under(site)
    with django_capture_on_commit_callbacks(execute=True):
        product = product_create(name="Direct", category="Odd", image=ContentFile(_png(30), name=filename))
    _assert_inside(product, media_root)
    with django_capture_on_commit_callbacks(execute=True):
        product = product_update(product=product, image=ContentFile(_png(31), name=filename))
    _assert_inside(product, media_root)
    assert _everything_under(site) - before == {Path(product.image.path)}


@pytest.mark.django_db
def test_a_name_too_long_for_the_multipart_headers_saves_nothing(
    superuser_client, media_root, no_broker, django_capture_on_commit_callbacks
):
    body, content_type = raw_multipart(
        {"name": "Very long", "slug": "", "category": "Odd", "_save": "Save"},
        [("image", b"a" * 5000 + b".png", _png(12))],
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = superuser_client.post(reverse("admin:catalog_product_add"), data=body,
                                         content_type=content_type)
    assert response.status_code in (200, 400)
    assert not Product.objects.exists()
    assert _everything_under(media_root) == set()
    assert no_broker == []
