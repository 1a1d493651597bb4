"""The one bulk statement that freezes an audience query into the affected list.

It runs inside the database, in one pass over the matching send-log rows:
a window per address keeps the latest message's details and collects every
ESP message id. Re-freezing or extending merges message ids, never duplicates
a person, and never brings back someone removed with a reason.
"""

from django.conf import settings
from django.db import connection

TABLE = "incidents_affectedperson"

_INSERT = """
INSERT INTO {table} (
    incident_id, address, original_address, customer_id, locale, metadata, latest_status,
    message_ids, message_count, first_sent_at, segment_id, source, added_by_query_id,
    added_at, removed_reason
)
SELECT %s, address, recipient, customer_id, locale, metadata, status,
       ids, n, first_sent, %s, 'query', %s, %s, ''
FROM (
    SELECT s.address, s.recipient, s.customer_id, s.locale, s.metadata, s.status,
           row_number() OVER (PARTITION BY s.address{c} ORDER BY s.sent_at DESC, s.message_id{c} DESC) AS rn,
           {agg}(s.message_id) OVER (PARTITION BY s.address{c}) AS ids,
           count(*) OVER (PARTITION BY s.address{c}) AS n,
           min(s.sent_at) OVER (PARTITION BY s.address{c}) AS first_sent
    FROM ({source}) s
) ranked
WHERE rn = 1
ON CONFLICT (incident_id, address) DO UPDATE SET
    message_ids = {merged_ids},
    message_count = {merged_count},
    first_sent_at = {earliest}
"""

_POSTGRES = {
    # Byte order: the sort only has to group equal addresses, and comparing
    # bytes is much cheaper than the database's linguistic collation.
    "c": ' COLLATE "C"',
    "agg": "jsonb_agg",
    "merged_ids": f"(SELECT jsonb_agg(DISTINCT e) FROM jsonb_array_elements({TABLE}.message_ids || EXCLUDED.message_ids) e)",
    "merged_count": f"(SELECT count(DISTINCT e) FROM jsonb_array_elements({TABLE}.message_ids || EXCLUDED.message_ids) e)",
    "earliest": f"LEAST({TABLE}.first_sent_at, EXCLUDED.first_sent_at)",
}

_UNION = (
    f"SELECT value FROM json_each({TABLE}.message_ids) "
    "UNION SELECT value FROM json_each(excluded.message_ids)"
)
_SQLITE = {
    "c": "",  # SQLite compares bytes already (BINARY)
    "agg": "json_group_array",
    "merged_ids": f"(SELECT json_group_array(value) FROM ({_UNION}))",
    "merged_count": f"(SELECT count(*) FROM ({_UNION}))",
    "earliest": f"min(coalesce({TABLE}.first_sent_at, excluded.first_sent_at), "
    f"coalesce(excluded.first_sent_at, {TABLE}.first_sent_at))",
}

# PostgreSQL: one hash aggregate per address instead of a sort. The person's
# locale is the locale of their latest message (ties broken by message id), as
# in the freeze; almost everyone has one locale, so only the few with several
# look up their latest message (by the address index).
_PREVIEW_BY_LOCALE_POSTGRES = """
SELECT locale, count(*) AS people, sum(n) AS messages FROM (
    SELECT CASE WHEN min(s.locale) = max(s.locale) THEN min(s.locale) ELSE (
               SELECT l.locale FROM ({source}) l
               WHERE l.address = s.address
               ORDER BY l.sent_at DESC, l.message_id DESC LIMIT 1
           ) END AS locale,
           count(*) AS n
    FROM ({source}) s
    GROUP BY s.address
) people
GROUP BY locale
ORDER BY count(*) DESC, locale
"""

_PREVIEW_BY_LOCALE = """
SELECT locale, count(*) AS people, sum(n) AS messages FROM (
    SELECT s.locale,
           row_number() OVER (PARTITION BY s.address ORDER BY s.sent_at DESC, s.message_id DESC) AS rn,
           count(*) OVER (PARTITION BY s.address) AS n
    FROM ({source}) s
) ranked
WHERE rn = 1
GROUP BY locale
ORDER BY count(*) DESC, locale
"""


def use_bulk_memory(cursor) -> None:
    """Give this transaction's big sorts room in memory (PostgreSQL's default is 4 MB).

    A freeze or preview sorts every matching message by address; with the
    default they spill to disk. SET LOCAL ends with the transaction.
    """
    if connection.vendor == "postgresql":
        cursor.execute("SELECT set_config('work_mem', %s, true)", [settings.BULK_WORK_MEM])


def freeze_statement(source_sql: str) -> str:
    parts = _POSTGRES if connection.vendor == "postgresql" else _SQLITE
    return _INSERT.format(table=TABLE, source=source_sql, **parts)


def preview_statement(source_sql: str, source_params: list) -> tuple[str, list]:
    if connection.vendor == "postgresql":
        # The source appears twice: in the correlated look-up, then in the scan.
        sql = _PREVIEW_BY_LOCALE_POSTGRES.format(source=source_sql)
        return sql, [*source_params, *source_params]
    return _PREVIEW_BY_LOCALE.format(source=source_sql), list(source_params)


def list_hash_postgres(incident_id: int) -> str:
    """SHA-256 of the sorted active addresses, one per line, computed in the database.

    COLLATE "C" sorts by bytes, which for UTF-8 is code-point order, the order
    Python's sorted() uses, so both paths give the same digest.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT encode(sha256(convert_to(coalesce(string_agg(address || E'\\n', ''
                          ORDER BY address COLLATE "C"), ''), 'UTF8')), 'hex')
            FROM {TABLE} WHERE incident_id = %s AND removed_at IS NULL
            """,
            [incident_id],
        )
        return cursor.fetchone()[0]
