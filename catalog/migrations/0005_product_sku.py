"""Every product gets a SKU: existing rows take their slug (unique already) where it is a valid
SKU of at most 64 characters, else ``p-<id>``."""

import re

from django.db import migrations, models

import django.core.validators

import catalog.models

_VALID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def fill_skus(apps, schema_editor):
    product_model = apps.get_model("catalog", "Product")
    taken: set[str] = set()
    for product in product_model.objects.order_by("id").only("id", "slug").iterator():
        sku = product.slug if _VALID.match(product.slug or "") else f"p-{product.id}"
        if sku in taken:
            sku = f"p-{product.id}"
        taken.add(sku)
        product_model.objects.filter(pk=product.pk).update(sku=sku)


class Migration(migrations.Migration):

    dependencies = [
        ("catalog", "0004_product_colour"),
    ]

    operations = [
        migrations.AddField(
            model_name="product",
            name="sku",
            field=models.CharField(max_length=64, null=True, verbose_name="SKU"),
        ),
        migrations.RunPython(fill_skus, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="product",
            name="sku",
            field=models.CharField(
                default=catalog.models.sku_default,
                help_text="The shop's own product id, stable. Leave empty to derive it from the file name.",
                max_length=64,
                unique=True,
                validators=[django.core.validators.RegexValidator(
                    catalog.models.SKU_RE,
                    "letters, digits, '.', '_' and '-' only, starting with a letter or digit, at most 64",
                    code="bad_sku",
                )],
                verbose_name="SKU",
            ),
        ),
    ]
