"""Updating many rows with different values in one statement.

PostgreSQL: UPDATE … FROM (VALUES …), one statement per 1,000 rows. Django's
bulk_update builds a CASE per field whose cost grows with the square of the
rows; it is kept for SQLite (the embedded mode, small batches).
"""

from django.db import connection, models

_ROWS_PER_STATEMENT = 1000


def bulk_set(model: type[models.Model], rows: list[dict], fields: list[str]) -> None:
    """Set `fields` of each row's primary key (`rows`: dicts with "pk" and every field)."""
    if not rows:
        return
    if connection.vendor != "postgresql":
        objects = []
        for row in rows:
            obj = model(pk=row["pk"])
            for name in fields:
                setattr(obj, model._meta.get_field(name).attname, row[name])
            objects.append(obj)
        model.objects.bulk_update(objects, fields, batch_size=200)
        return
    meta = model._meta
    columns = [meta.get_field(name) for name in fields]
    pk = meta.pk
    casts = [f"%s::{pk.db_type(connection)}"] + [
        f"%s::{column.db_type(connection)}" for column in columns
    ]
    row_sql = "(" + ", ".join(casts) + ")"
    names = ", ".join(connection.ops.quote_name(c.column) for c in columns)
    sets = ", ".join(
        f"{connection.ops.quote_name(c.column)} = v.{connection.ops.quote_name(c.column)}"
        for c in columns
    )
    table = connection.ops.quote_name(meta.db_table)
    pk_col = connection.ops.quote_name(pk.column)
    with connection.cursor() as cursor:
        for start in range(0, len(rows), _ROWS_PER_STATEMENT):
            part = rows[start : start + _ROWS_PER_STATEMENT]
            params: list = []
            for row in part:
                params.append(row["pk"])
                for column, name in zip(columns, fields, strict=True):
                    params.append(column.get_db_prep_save(row[name], connection))
            values = ", ".join([row_sql] * len(part))
            cursor.execute(
                f"UPDATE {table} AS t SET {sets} FROM (VALUES {values}) "  # noqa: S608
                f"AS v({pk_col}, {names}) WHERE t.{pk_col} = v.{pk_col}",
                params,
            )
