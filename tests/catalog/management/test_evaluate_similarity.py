"""``evaluate_similarity``: the stored neighbour lists scored on a tiny hand-made catalog.

No worker and no embeddings: products and ProductNeighbour rows are written directly.
"""

from __future__ import annotations

import io
import json
from io import StringIO

import pytest
from django.core.files.base import ContentFile
from django.core.management import call_command
from PIL import Image

from catalog.models import Product, ProductNeighbour
from catalog.selectors.retrieval_quality import similarity_quality

pytestmark = pytest.mark.django_db


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (120, 40, 200)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


def product(slug: str, category: str, status: str = Product.Status.READY) -> Product:
    return Product.objects.create(name=slug, slug=slug, category=category, status=status,
                                  image=ContentFile(_png(), name=f"{slug}.png"))


def link(p: Product, neighbours: list[Product]) -> None:
    ProductNeighbour.objects.bulk_create(
        ProductNeighbour(product=p, neighbour=nb, rank=rank, distance=rank / 10)
        for rank, nb in enumerate(neighbours, start=1)
    )


@pytest.fixture
def catalog(media) -> dict[str, Product]:
    """7 READY products (3 Tops, 2 Shoes, 1 Bags, 1 unlabelled) and 1 pending Top.

    Every list can hold at most 6 others (7 ready products), so precision divides by 6.

    - t1: [t2, s1, t3, b1, u, s2]  relevant at 1, 3 -> P 2/6, AP (1/1 + 2/3) / 2 = 5/6
    - t2: [s1, t1]                 relevant at 2    -> P 1/6, AP (1/2) / 2      = 1/4
    - t3: [pending Top, t1, t2]    a not-ready neighbour is a wrong place:
                                   relevant at 2, 3 -> P 2/6, AP (1/2 + 2/3)/2 = 7/12
    - s1: [s2, t1]                 relevant at 1    -> P 1/6, AP 1/1           = 1
    - s2: no rows yet              nothing          -> P 0,   AP 0
    - b1 (alone in Bags) and u (no category) are not scored; the pending one neither.
    """
    p = {name: product(name, cat) for name, cat in [
        ("t1", "Tops"), ("t2", "Tops"), ("t3", "Tops"), ("s1", "Shoes"), ("s2", "Shoes"),
        ("b1", "Bags"), ("u", ""),
    ]}
    p["pending"] = product("pending", "Tops", status=Product.Status.PENDING)
    link(p["t1"], [p["t2"], p["s1"], p["t3"], p["b1"], p["u"], p["s2"]])
    link(p["t2"], [p["s1"], p["t1"]])
    link(p["t3"], [p["pending"], p["t1"], p["t2"]])
    link(p["s1"], [p["s2"], p["t1"]])
    link(p["pending"], [p["t1"], p["t2"]])  # a pending product's old list is not scored
    return p


def run(*args: str) -> str:
    out = StringIO()
    call_command("evaluate_similarity", *args, stdout=out)
    return out.getvalue()


TOPS_P, TOPS_MAP = (2 / 6 + 1 / 6 + 2 / 6) / 3, (5 / 6 + 1 / 4 + 7 / 12) / 3  # 5/18, 5/9
SHOES_P, SHOES_MAP = (1 / 6 + 0) / 2, (1 + 0) / 2  # 1/12, 1/2
ALL_P, ALL_MAP = (2 / 6 + 1 / 6 + 2 / 6 + 1 / 6 + 0) / 5, (5 / 6 + 1 / 4 + 7 / 12 + 1 + 0) / 5  # 1/5, 8/15


def in_sample(report: dict) -> dict:
    """The keys the command has always printed (the in-sample figure)."""
    assert report.pop("evaluation") == "in-sample"
    held = report.pop("held_out", None)
    assert held is None or (held["evaluation"] == "held-out k-fold" and held["folds"] >= 2)
    return report


def test_json_output(catalog):
    assert in_sample(json.loads(run("--json"))) == {
        "precision_at_10": round(ALL_P, 6),
        "map_at_10": round(ALL_MAP, 6),
        "per_category": {
            "Shoes": {"precision_at_10": round(SHOES_P, 6), "map_at_10": round(SHOES_MAP, 6), "n": 2},
            "Tops": {"precision_at_10": round(TOPS_P, 6), "map_at_10": round(TOPS_MAP, 6), "n": 3},
        },
        "n": 5,
    }
    assert (round(ALL_P, 6), round(ALL_MAP, 6)) == (0.2, 0.533333)


def test_table_output(catalog):
    lines = run().splitlines()
    assert lines[0].startswith("in-sample: the stored neighbour lists")
    assert lines[1:5] == [
        "category  n   P@10  mAP@10",
        "Shoes     2  0.083   0.500",
        "Tops      3  0.278   0.556",
        "overall   5  0.200   0.533",
    ]
    # These products have no vectors: the held-out figure has nothing to score.
    assert lines[6].startswith("held-out: 4-fold, the projection refitted without the fold")
    assert lines[7] == "nothing to score: no ready product shares its category with another"


def test_held_out_can_be_skipped(catalog):
    report = json.loads(run("--json", "--no-held-out"))
    assert "held_out" not in report and report["evaluation"] == "in-sample"
    assert "held-out" not in run("--no-held-out")


def test_selector_figures(catalog):
    report = similarity_quality()
    assert report.n == 5 and report.k == 10
    assert report.precision == pytest.approx(ALL_P) and report.map == pytest.approx(ALL_MAP)
    assert report.per_category["Tops"].map == pytest.approx(5 / 9)


def test_a_full_catalog_divides_by_ten(media):
    """With more than 10 other ready products a list is judged on 10 places."""
    tops = [product(f"top{i}", "Tops") for i in range(12)]
    link(tops[0], tops[1:11])  # 10 relevant neighbours
    link(tops[1], [tops[0], *tops[2:6]])  # only 5 rows: 5 of 10 places
    report = in_sample(json.loads(run("--json")))
    # top0: 10/10 places right, AP 10/10; top1: 5/10, AP 5/10; the 10 others have no list yet.
    assert report["per_category"]["Tops"]["n"] == 12
    assert report["precision_at_10"] == round((1.0 + 0.5) / 12, 6)
    assert report["map_at_10"] == round((1.0 + 0.5) / 12, 6)


def test_empty_catalog(media):
    assert in_sample(json.loads(run("--json"))) == {"precision_at_10": None, "map_at_10": None,
                                                    "per_category": {}, "n": 0}
    assert "nothing to score" in run()
