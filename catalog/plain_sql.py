"""Plain-SQL pieces shared by the index's hot paths (where the ORM's per-row work was profiled
as most of a task's time): quoted table names and the "vector current for its image" test."""

from __future__ import annotations

from django.db import connection, models


def quoted_table(model: type[models.Model]) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def vector_current_sql() -> tuple[str, str]:
    """(SQL condition: the product's vector is current for its image, given the current vector
    key as its one parameter; SQL of its ``indexed_as`` marker for that vector)."""
    quote = connection.ops.quote_name
    marker = f"{quote('vector_key')} || ':' || {quote('embedded_image_sha256')}"
    return (f"{quote('vector_key')} = %s AND "
            f"{quote('embedded_image_sha256')} = {quote('image_sha256')}", marker)
