"""Updating many rows with different values in one statement.

UPDATE … FROM (VALUES …), one statement per few hundred rows, on PostgreSQL and
SQLite (3.33+) alike. Django's bulk_update builds a CASE per field whose cost
grows with the square of the rows (seconds per thousand rows on SQLite).
"""

from django.db import connection, models

# SQLite allows 32,766 parameters per statement; PostgreSQL 65,535.
_MAX_PARAMS = 30_000


def bulk_set(model: type[models.Model], rows: list[dict], fields: list[str]) -> None:
    """Set `fields` of each row's primary key (`rows`: dicts with "pk" and every field)."""
    if not rows:
        return
    meta = model._meta
    columns = [meta.get_field(name) for name in fields]
    quote = connection.ops.quote_name
    postgres = connection.vendor == "postgresql"
    # PostgreSQL needs each value's type (VALUES has no column types); SQLite has none.
    casts = [f"::{c.db_type(connection)}" if postgres else "" for c in [meta.pk, *columns]]
    row_sql = "(" + ", ".join(f"%s{cast}" for cast in casts) + ")"
    names = ["v_pk", *(f"v_{c.column}" for c in columns)]
    sets = ", ".join(
        f"{quote(c.column)} = v.{name}" for c, name in zip(columns, names[1:], strict=True)
    )
    table, pk_col = quote(meta.db_table), quote(meta.pk.column)
    per_statement = max(1, min(1000, _MAX_PARAMS // len(casts)))
    with connection.cursor() as cursor:
        for start in range(0, len(rows), per_statement):
            part = rows[start : start + per_statement]
            params: list = []
            for row in part:
                params.append(row["pk"])
                for column, name in zip(columns, fields, strict=True):
                    params.append(column.get_db_prep_save(row[name], connection))
            values = ", ".join([row_sql] * len(part))
            if postgres:
                source = f"(VALUES {values}) AS v({', '.join(names)})"
            else:  # SQLite names VALUES columns column1, column2, …: rename them in a subquery
                renamed = ", ".join(f"column{i + 1} AS {n}" for i, n in enumerate(names))
                source = f"(SELECT {renamed} FROM (VALUES {values})) AS v"  # noqa: S608
            cursor.execute(
                f"UPDATE {table} SET {sets} FROM {source} "  # noqa: S608 (names from the model)
                f"WHERE {table}.{pk_col} = v.v_pk",
                params,
            )
