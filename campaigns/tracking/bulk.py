"""Writing many rows in one statement, cheaply.

PostgreSQL: each column goes as one array parameter and the rows come from
unnest(), so the statement text is the same whatever the row count (psycopg
parses it once; a VALUES list of 15,000 placeholders costs it ~0.1 s to
parse, every time). SQLite: UPDATE … FROM (VALUES …), a few hundred rows per
statement. Django's bulk_update builds a CASE per field whose cost grows with
the square of the rows (seconds per thousand rows on SQLite).
"""

import json

from django.db import connection, models

# SQLite allows 32,766 parameters per statement.
_MAX_PARAMS = 30_000


def _array_type(field: models.Field) -> str:
    if isinstance(field, models.JSONField):
        return "text[]"  # JSON as text, cast per row (psycopg has no jsonb[] from dicts)
    return f"{field.db_type(connection)}[]"


def _column_value(field: models.Field, value):
    if isinstance(field, models.JSONField):
        return json.dumps(value)
    return value


def _select(field: models.Field, name: str) -> str:
    return f"{name}::jsonb" if isinstance(field, models.JSONField) else name


def bulk_set(model: type[models.Model], rows: list[dict], fields: list[str]) -> None:
    """Set `fields` of each row's primary key (`rows`: dicts with "pk" and every field)."""
    if not rows:
        return
    meta = model._meta
    columns = [meta.get_field(name) for name in fields]
    quote = connection.ops.quote_name
    table, pk_col = quote(meta.db_table), quote(meta.pk.column)
    names = ["v_pk", *(f"v_{c.column}" for c in columns)]
    sets = ", ".join(
        f"{quote(c.column)} = {_select(c, 'v.' + n)}"
        for c, n in zip(columns, names[1:], strict=True)
    )
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            arrays = [[row["pk"] for row in rows]] + [
                [_column_value(c, row[name]) for row in rows]
                for c, name in zip(columns, fields, strict=True)
            ]
            types = [_array_type(meta.pk), *(_array_type(c) for c in columns)]
            unnest = ", ".join(f"%s::{t}" for t in types)
            cursor.execute(
                f"UPDATE {table} SET {sets} FROM unnest({unnest}) "  # noqa: S608 (model names)
                f"AS v({', '.join(names)}) WHERE {table}.{pk_col} = v.v_pk",
                arrays,
            )
            return
        row_sql = "(" + ", ".join(["%s"] * len(names)) + ")"
        per_statement = max(1, min(500, _MAX_PARAMS // len(names)))
        renamed = ", ".join(f"column{i + 1} AS {n}" for i, n in enumerate(names))
        for start in range(0, len(rows), per_statement):
            part = rows[start : start + per_statement]
            params: list = []
            for row in part:
                params.append(row["pk"])
                for column, name in zip(columns, fields, strict=True):
                    params.append(column.get_db_prep_save(row[name], connection))
            values = ", ".join([row_sql] * len(part))
            cursor.execute(
                f"UPDATE {table} SET {sets} FROM "  # noqa: S608 (model names)
                f"(SELECT {renamed} FROM (VALUES {values})) AS v "
                f"WHERE {table}.{pk_col} = v.v_pk",
                params,
            )


def bulk_insert(model: type[models.Model], objects: list, *, conflict: str = "") -> None:
    """INSERT `objects` (ids not read back); with `conflict`, skip any whose value in that
    unique column is already stored (ON CONFLICT DO NOTHING)."""
    if not objects:
        return
    if connection.vendor != "postgresql":
        model.objects.bulk_create(objects, batch_size=2000, ignore_conflicts=bool(conflict))
        return
    meta = model._meta
    fields = [f for f in meta.concrete_fields if not f.primary_key]
    quote = connection.ops.quote_name
    on_conflict = f" ON CONFLICT ({quote(conflict)}) DO NOTHING" if conflict else ""
    if len(objects) <= _FEW_ROWS:
        _insert_values(model, fields, objects, on_conflict)
        return
    names = [f"v{i}" for i in range(len(fields))]
    arrays = [
        [
            _column_value(f, v)
            if isinstance(f, models.JSONField)
            else f.get_db_prep_save(v, connection)
            for v in (getattr(obj, f.attname) for obj in objects)
        ]
        for f in fields
    ]
    unnest = ", ".join(f"%s::{_array_type(f)}" for f in fields)
    selected = ", ".join(_select(f, n) for f, n in zip(fields, names, strict=True))
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {quote(meta.db_table)} ({', '.join(quote(f.column) for f in fields)}) "  # noqa: S608
            f"SELECT {selected} FROM unnest({unnest}) AS v({', '.join(names)})" + on_conflict,
            arrays,
        )


# Up to this many rows, a plain VALUES list: dumping a few scalars costs psycopg far less
# than building one array per column (a one-event webhook: a third of its request's CPU).
_FEW_ROWS = 8


def _insert_values(model, fields: list, objects: list, on_conflict: str) -> None:
    quote = connection.ops.quote_name
    row = (
        "("
        + ", ".join("%s::jsonb" if isinstance(f, models.JSONField) else "%s" for f in fields)
        + ")"
    )
    params = [
        _column_value(f, value)
        if isinstance(f, models.JSONField)
        else f.get_db_prep_save(value, connection)
        for obj in objects
        for f, value in ((f, getattr(obj, f.attname)) for f in fields)
    ]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {quote(model._meta.db_table)} "  # noqa: S608 (model names)
            f"({', '.join(quote(f.column) for f in fields)}) "
            f"VALUES {', '.join([row] * len(objects))}" + on_conflict,
            params,
        )
