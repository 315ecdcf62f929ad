"""Row blocks name their own rebuild input (one per category when lists stay inside
categories); the run's single input directory moves onto its blocks."""

from django.db import migrations, models
from django.db.models import OuterRef, Subquery


def copy_input_dir(apps, schema_editor):
    block = apps.get_model("catalog", "RebuildBlock")
    run = apps.get_model("catalog", "RebuildRun")
    block.objects.update(input_dir=Subquery(run.objects.filter(pk=OuterRef("run_id")).values("input_dir")[:1]))


class Migration(migrations.Migration):

    dependencies = [
        ("catalog", "0008_product_photos"),
    ]

    operations = [
        migrations.AddField(
            model_name="rebuildblock",
            name="input_dir",
            field=models.CharField(default="", max_length=500),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="rebuildblock",
            name="category",
            field=models.CharField(blank=True, max_length=64),
        ),
        migrations.RunPython(copy_input_dir, migrations.RunPython.noop),
        migrations.RemoveConstraint(
            model_name="rebuildblock",
            name="rebuild_block_unique_start",
        ),
        migrations.AddConstraint(
            model_name="rebuildblock",
            constraint=models.UniqueConstraint(fields=("run", "input_dir", "start"),
                                               name="rebuild_block_unique_rows"),
        ),
        migrations.AlterModelOptions(
            name="rebuildblock",
            options={"ordering": ("run", "category", "start")},
        ),
        migrations.RemoveField(
            model_name="rebuildrun",
            name="input_dir",
        ),
    ]
