"""Model instances from rows read with plain SQL (hot paths where building the ORM query costs
more than the database takes to answer it)."""

from __future__ import annotations

from django.db import connection, models


def model_from_row(model: type[models.Model], fields: list, values) -> models.Model:
    """An instance of `model` from the values of `fields` as a cursor returns them, converted as
    the ORM would (JSON columns come back as text)."""
    converted = [
        field.from_db_value(value, None, connection) if value is not None and hasattr(field, "from_db_value") else value
        for field, value in zip(fields, values, strict=True)
    ]
    return model.from_db(connection.alias, [field.attname for field in fields], converted)
