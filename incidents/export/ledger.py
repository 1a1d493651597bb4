"""The contact ledger: one row per affected person, with everything that happened to them.

How each person was identified (source, the frozen query, the send-log message
ids that reached them), their segment, the version sent (id and content hash),
every delivery attempt and ESP event with its time, and their contact status
with its history. Pseudonymised by default: the person appears as their keyed
pseudonym (incidents/pseudonym.py), and addresses, names and raw ESP fields
appear only in a PII export.

Memory stays flat whatever the size. On PostgreSQL each chunk of people is one
`COPY (SELECT …) TO STDOUT`: the database builds the CSV (or JSON) text and
this process only hashes and writes the bytes. Elsewhere (SQLite), people are
read in chunks and their deliveries, events and records fetched per chunk.
"""

import hashlib
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from django.conf import settings
from django.db import connection

from campaigns.models import Campaign, Delivery, DeliveryEvent
from incidents.export.csvsafe import sql_safe
from incidents.export.files import CsvWriter, HashedFile, iso, writer_for
from incidents.models import AffectedPerson, ContactRecord, Incident, Segment
from incidents.pseudonym import address_ref


@dataclass(frozen=True)
class Column:
    name: str
    sql: str  # PostgreSQL expression over p (person), s (segment), dl, ev, cr
    kind: str  # text | plain | json | ts
    pii: bool = False


_T = {
    "person": AffectedPerson._meta.db_table,
    "segment": Segment._meta.db_table,
    "delivery": Delivery._meta.db_table,
    "campaign": Campaign._meta.db_table,
    "event": DeliveryEvent._meta.db_table,
    "record": ContactRecord._meta.db_table,
}

COLUMNS = (
    Column("person_id", "p.id", "plain"),
    Column("person_ref", "{ref}", "text"),
    Column("address", "p.address", "text", pii=True),
    Column("original_address", "p.original_address", "text", pii=True),
    Column("customer_id", "p.customer_id", "text", pii=True),
    Column("metadata", "p.metadata", "json", pii=True),
    Column("locale", "p.locale", "text"),
    Column("identified_by", "p.source", "text"),
    Column("query_id", "p.added_by_query_id", "plain"),
    Column("sendlog_message_ids", "p.message_ids", "json"),
    Column("sendlog_message_count", "p.message_count", "plain"),
    Column("first_sent_at", "p.first_sent_at", "ts"),
    Column("segment_id", "p.segment_id", "plain"),
    Column("segment", "s.name", "text"),
    Column("added_at", "p.added_at", "ts"),
    Column("removed_at", "p.removed_at", "ts"),
    Column("removed_reason", "p.removed_reason", "text"),
    Column("version_id", "dl.version_id", "plain"),
    Column("content_hash", "dl.content_hash", "text"),
    Column("deliveries", "dl.deliveries", "json"),
    Column("events", "ev.events", "json"),
    Column("contact_status", "p.contact_status", "text"),
    Column("contact_method", "p.contact_method", "text"),
    Column("contacted_at", "p.contacted_at", "ts"),
    Column("contact_note", "p.contact_note", "text"),
    Column("contact_history", "cr.history", "json"),
)


def columns(*, pii: bool) -> list[Column]:
    return [c for c in COLUMNS if pii or not c.pii]


def header(*, pii: bool) -> list[str]:
    return [c.name for c in columns(pii=pii)]


def person_ref(address: str) -> str:
    # After retention the stored address is already the pseudonym (it has no @).
    return address_ref(address) if "@" in address else address


# --- PostgreSQL: COPY per chunk -------------------------------------------------------


def _ts(expr: str) -> str:
    return f"to_char({expr} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"


def _hmac_parts() -> tuple[bytes, bytes]:
    """HMAC-SHA256's inner and outer padded keys, so PostgreSQL's sha256() gives address_ref."""
    key = (settings.PSEUDONYM_KEY or settings.SECRET_KEY).encode()
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    key = key.ljust(64, b"\0")
    return bytes(b ^ 0x36 for b in key), bytes(b ^ 0x5C for b in key)


_REF_SQL = (
    "CASE WHEN position('@' in p.address) > 0 THEN 'p_' || left(encode(sha256("
    "%(opad)s::bytea || sha256(%(ipad)s::bytea || convert_to(p.address, 'UTF8'))), 'hex'), 24) "
    "ELSE p.address END"
)


def _json_object(pairs: list[tuple[str, str]]) -> str:
    return "json_build_object(" + ", ".join(f"'{k}', {v}" for k, v in pairs) + ")"


def _delivery_json(pii: bool) -> str:
    error = "d.error" if pii else "replace(d.error, d.address, '[address]')"
    pairs = [
        ("delivery", "d.id"),
        ("campaign", "d.campaign_id"),
        ("version", "c.version_id"),
        ("content_hash", "c.content_hash"),
        ("status", "d.status"),
        ("attempts", "d.attempts"),
        ("resend", "d.resend"),
        ("esp_message_id", "d.esp_message_id"),
        ("created_at", _ts("d.created_at")),
        ("sent_at", _ts("d.sent_at")),
        ("delivered_at", _ts("d.delivered_at")),
        ("bounce_kind", "d.bounce_kind"),
        ("error", error),
    ]
    if pii:
        pairs.append(("address", "d.address"))
    return _json_object(pairs)


def _event_json(pii: bool) -> str:
    pairs = [
        ("delivery", "e.delivery_id"),
        ("type", "e.event_type"),
        ("occurred_at", _ts("e.occurred_at")),
        ("received_at", _ts("e.received_at")),
        ("outcome", "e.outcome"),
        ("bounce_kind", "e.bounce_kind"),
        ("description", "e.description"),
    ]
    if pii:
        pairs += [("recipient", "e.recipient"), ("mta_response", "e.mta_response")]
    return _json_object(pairs)


_HISTORY_JSON = _json_object(
    [
        ("status", "r.status"),
        ("previous", "r.previous_status"),
        ("method", "r.method"),
        ("note", "r.note"),
        ("contacted_at", _ts("r.contacted_at")),
        ("delivery", "r.delivery_id"),
        ("by", "r.recorded_by_label"),
        ("at", _ts("r.recorded_at")),
    ]
)


def select_sql(*, pii: bool, fmt: str) -> str:
    """The ledger's SELECT for one chunk of people (ids in [lo, hi)), as CSV cells or JSON."""
    in_chunk = "{alias}.person_id >= %(lo)s AND {alias}.person_id < %(hi)s"
    # Built from constants and column names only; every value is a parameter.
    ctes = f"""
WITH dl AS (
  SELECT d.person_id,
         (array_agg(c.version_id ORDER BY d.id DESC))[1] AS version_id,
         (array_agg(c.content_hash ORDER BY d.id DESC))[1] AS content_hash,
         json_agg({_delivery_json(pii)} ORDER BY d.id) AS deliveries
  FROM {_T["delivery"]} d JOIN {_T["campaign"]} c ON c.id = d.campaign_id
  WHERE d.incident_id = %(incident)s AND {in_chunk.format(alias="d")}
  GROUP BY d.person_id
), ev AS (
  SELECT d.person_id, json_agg({_event_json(pii)} ORDER BY e.occurred_at, e.id) AS events
  FROM {_T["event"]} e JOIN {_T["delivery"]} d ON d.id = e.delivery_id
  WHERE d.incident_id = %(incident)s AND {in_chunk.format(alias="d")}
  GROUP BY d.person_id
), cr AS (
  SELECT r.person_id, json_agg({_HISTORY_JSON} ORDER BY r.recorded_at, r.id) AS history
  FROM {_T["record"]} r
  WHERE r.incident_id = %(incident)s AND {in_chunk.format(alias="r")}
  GROUP BY r.person_id
)"""  # noqa: S608
    cells = []
    for col in columns(pii=pii):
        expr = col.sql.format(ref=_REF_SQL)
        if col.kind == "ts":
            expr = _ts(expr)
        elif col.kind == "json":
            expr = f"coalesce({expr}::json, '[]'::json)" if col.sql != "p.metadata" else expr
        cells.append((col, expr))
    if fmt == "csv":
        select = ", ".join(
            sql_safe(f"coalesce({expr}, '')")
            if col.kind == "text"
            else (f"{expr}::text" if col.kind == "json" else expr)
            for col, expr in cells
        )
    else:
        select = _json_object([(col.name, expr) for col, expr in cells]) + "::text"
    return f"""{ctes}
SELECT {select}
FROM {_T["person"]} p
JOIN {_T["segment"]} s ON s.id = p.segment_id
LEFT JOIN dl ON dl.person_id = p.id
LEFT JOIN ev ON ev.person_id = p.id
LEFT JOIN cr ON cr.person_id = p.id
WHERE p.incident_id = %(incident)s AND p.id >= %(lo)s AND p.id < %(hi)s
ORDER BY p.id"""  # noqa: S608


def copy_statement(*, pii: bool, fmt: str) -> str:
    # JSON: one text per row, passed through unquoted: PostgreSQL's JSON escapes every
    # control character, so these two bytes can never occur in it.
    options = "FORMAT csv" if fmt == "csv" else "FORMAT csv, DELIMITER E'\\x1f', QUOTE E'\\x1e'"
    return f"COPY ({select_sql(pii=pii, fmt=fmt)}) TO STDOUT WITH ({options})"


def params(incident: Incident, lo: int, hi: int) -> dict:
    ipad, opad = _hmac_parts()
    return {"incident": incident.pk, "lo": lo, "hi": hi, "ipad": ipad, "opad": opad}


def _chunks(incident: Incident) -> Iterator[tuple[int, int]]:
    people = AffectedPerson.objects.filter(incident=incident)
    bounds = people.order_by().values_list("id", flat=True)
    first, last = bounds.order_by("id").first(), bounds.order_by("-id").first()
    if first is None:
        return
    step = max(settings.EXPORT_CHUNK_PEOPLE, 1)
    for lo in range(first, last + 1, step):
        yield lo, min(lo + step, last + 1)


def _write_postgres(incident, out: HashedFile, *, pii: bool, fmt: str, on_chunk) -> int:
    statement = copy_statement(pii=pii, fmt=fmt)
    rows = 0
    connection.ensure_connection()
    with connection.connection.cursor() as cursor:
        for lo, hi in _chunks(incident):
            with cursor.copy(statement, params(incident, lo, hi)) as copy:
                write = out.write
                for block in copy:
                    write(block)
                    rows += 1
            on_chunk(rows)
    return rows


# --- Other databases: chunked reads -------------------------------------------------


_PERSON_FIELDS = [
    "id",
    "address",
    "original_address",
    "customer_id",
    "metadata",
    "locale",
    "source",
    "added_by_query_id",
    "message_ids",
    "message_count",
    "first_sent_at",
    "segment_id",
    "segment__name",
    "added_at",
    "removed_at",
    "removed_reason",
    "contact_status",
    "contact_method",
    "contacted_at",
    "contact_note",
]


def _python_rows(incident: Incident, *, pii: bool, on_chunk) -> Iterator[list]:
    chunk_size, last, done = 2000, 0, 0
    people = AffectedPerson.objects.filter(incident=incident).order_by("id")
    while True:
        chunk = list(people.filter(id__gt=last).values(*_PERSON_FIELDS)[:chunk_size])
        if not chunk:
            return
        ids = [p["id"] for p in chunk]
        deliveries, events, history = _related(incident, ids, pii=pii)
        for p in chunk:
            dls = deliveries.get(p["id"], [])
            latest = dls[-1] if dls else {}
            values = {
                "person_id": p["id"],
                "person_ref": person_ref(p["address"]),
                "address": p["address"],
                "original_address": p["original_address"],
                "customer_id": p["customer_id"],
                "metadata": p["metadata"],
                "locale": p["locale"],
                "identified_by": p["source"],
                "query_id": p["added_by_query_id"],
                "sendlog_message_ids": p["message_ids"],
                "sendlog_message_count": p["message_count"],
                "first_sent_at": iso(p["first_sent_at"]) or None,
                "segment_id": p["segment_id"],
                "segment": p["segment__name"],
                "added_at": iso(p["added_at"]) or None,
                "removed_at": iso(p["removed_at"]) or None,
                "removed_reason": p["removed_reason"],
                "version_id": latest.get("version"),
                "content_hash": latest.get("content_hash"),
                "deliveries": dls,
                "events": events.get(p["id"], []),
                "contact_status": p["contact_status"],
                "contact_method": p["contact_method"],
                "contacted_at": iso(p["contacted_at"]) or None,
                "contact_note": p["contact_note"],
                "contact_history": history.get(p["id"], []),
            }
            yield [values[name] for name in header(pii=pii)]
        last, done = ids[-1], done + len(chunk)
        on_chunk(done)


def _related(incident, ids: list[int], *, pii: bool):
    deliveries, events, history = defaultdict(list), defaultdict(list), defaultdict(list)
    person_of = {}
    rows = (
        Delivery.objects.filter(incident=incident, person_id__in=ids)
        .order_by("id")
        .values(
            "id",
            "person_id",
            "campaign_id",
            "campaign__version_id",
            "campaign__content_hash",
            "status",
            "attempts",
            "resend",
            "esp_message_id",
            "created_at",
            "sent_at",
            "delivered_at",
            "bounce_kind",
            "error",
            "address",
        )
    )
    for d in rows:
        person_of[d["id"]] = d["person_id"]
        item = {
            "delivery": d["id"],
            "campaign": d["campaign_id"],
            "version": d["campaign__version_id"],
            "content_hash": d["campaign__content_hash"],
            "status": d["status"],
            "attempts": d["attempts"],
            "resend": d["resend"],
            "esp_message_id": d["esp_message_id"],
            "created_at": iso(d["created_at"]) or None,
            "sent_at": iso(d["sent_at"]) or None,
            "delivered_at": iso(d["delivered_at"]) or None,
            "bounce_kind": d["bounce_kind"],
            "error": d["error"] if pii else d["error"].replace(d["address"], "[address]"),
        }
        if pii:
            item["address"] = d["address"]
        deliveries[d["person_id"]].append(item)
    if person_of:
        found = (
            DeliveryEvent.objects.filter(delivery_id__in=list(person_of))
            .order_by("occurred_at", "id")
            .values(
                "delivery_id",
                "event_type",
                "occurred_at",
                "received_at",
                "outcome",
                "bounce_kind",
                "description",
                "recipient",
                "mta_response",
            )
        )
        for e in found:
            item = {
                "delivery": e["delivery_id"],
                "type": e["event_type"],
                "occurred_at": iso(e["occurred_at"]) or None,
                "received_at": iso(e["received_at"]) or None,
                "outcome": e["outcome"],
                "bounce_kind": e["bounce_kind"],
                "description": e["description"],
            }
            if pii:
                item |= {"recipient": e["recipient"], "mta_response": e["mta_response"]}
            events[person_of[e["delivery_id"]]].append(item)
    records = (
        ContactRecord.objects.filter(incident=incident, person_id__in=ids)
        .order_by("recorded_at", "id")
        .values(
            "person_id",
            "status",
            "previous_status",
            "method",
            "note",
            "contacted_at",
            "delivery_id",
            "recorded_by_label",
            "recorded_at",
        )
    )
    for r in records:
        history[r["person_id"]].append(
            {
                "status": r["status"],
                "previous": r["previous_status"],
                "method": r["method"],
                "note": r["note"],
                "contacted_at": iso(r["contacted_at"]) or None,
                "delivery": r["delivery_id"],
                "by": r["recorded_by_label"],
                "at": iso(r["recorded_at"]) or None,
            }
        )
    return deliveries, events, history


# --- Entry point ------------------------------------------------------------------


def write_ledger(
    incident: Incident,
    out: HashedFile,
    *,
    fmt: str,
    pii: bool,
    on_progress: Callable[[int], None] = lambda rows: None,
) -> int:
    """Write the ledger to `out` in `fmt` (csv or jsonl). Returns the number of people."""
    if connection.vendor == "postgresql":
        if fmt == "csv":
            # The header line; COPY writes the rows, with PostgreSQL's \n line ends.
            CsvWriter(out, header(pii=pii), lineterminator="\n")
        rows = _write_postgres(incident, out, pii=pii, fmt=fmt, on_chunk=on_progress)
        out.rows += rows
        return rows
    before = out.rows
    writer = writer_for(fmt, out, header(pii=pii))
    writer.write_rows(_python_rows(incident, pii=pii, on_chunk=on_progress))
    return out.rows - before
