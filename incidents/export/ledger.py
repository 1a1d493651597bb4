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
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from django.conf import settings
from django.db import connection
from psycopg import IsolationLevel

from campaigns.models import Campaign, Delivery, DeliveryEvent
from incidents.export import ledger_python
from incidents.export.csvsafe import sql_safe
from incidents.export.files import CsvWriter, HashedFile, writer_for
from incidents.models import AffectedPerson, ContactRecord, Incident, Segment
from incidents.pseudonym import address_ref


@dataclass(frozen=True)
class Column:
    name: str
    sql: str  # PostgreSQL expression over p (person), s (segment), dl, ev, cr
    # text: typed by people or taken from files, so escaped for spreadsheets;
    # plain: numbers, hashes, pseudonyms and our own status words; json; ts.
    kind: str
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
    Column("person_ref", "{ref}", "plain"),
    Column("address", "p.address", "text", pii=True),
    Column("original_address", "p.original_address", "text", pii=True),
    Column("customer_id", "p.customer_id", "text", pii=True),
    Column("metadata", "p.metadata", "json", pii=True),
    Column("locale", "p.locale", "text"),
    # How the person was identified: the frozen query, and the send-log messages.
    Column("identified_by", "p.source", "plain"),
    Column("query_id", "p.added_by_query_id", "plain"),
    Column("sendlog_message_ids", "p.message_ids", "json"),
    Column("sendlog_message_count", "p.message_count", "plain"),
    Column("first_sent_at", "p.first_sent_at", "ts"),
    Column("segment_id", "p.segment_id", "plain"),
    Column("segment", "s.name", "text"),
    Column("added_at", "p.added_at", "ts"),
    Column("removed_at", "p.removed_at", "ts"),
    Column("removed_reason", "p.removed_reason", "text"),
    # The apology: at most one per person and incident (delivery_once_per_incident),
    # so one join, no aggregate; an explicit "send again" is listed in `resends`.
    Column("delivery_id", "d.id", "plain"),
    Column("campaign_id", "d.campaign_id", "plain"),
    Column("version_id", "c.version_id", "plain"),
    Column("content_hash", "c.content_hash", "plain"),
    Column("delivery_status", "d.status", "plain"),
    Column("attempts", "d.attempts", "plain"),
    Column("esp_message_id", "d.esp_message_id", "text"),
    Column("sent_at", "d.sent_at", "ts"),
    Column("delivered_at", "d.delivered_at", "ts"),
    Column("bounce_kind", "d.bounce_kind", "plain"),
    Column("delivery_error", "{error}", "text"),
    Column("delivery_address", "d.address", "text", pii=True),
    Column("resends", "rs.resends", "json"),
    # Every ESP event of the person's deliveries, in time order: "type time outcome".
    Column("event_count", "coalesce(ev.n, 0)", "plain"),
    Column("events", "ev.events", "list"),
    Column("contact_status", "p.contact_status", "plain"),
    Column("contact_method", "p.contact_method", "plain"),
    Column("contacted_at", "p.contacted_at", "ts"),
    Column("contact_note", "p.contact_note", "text"),
    # Every change of contact status: "status [method] time by".
    Column("contact_history", "cr.history", "list"),
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
    # timestamptz's own output in UTC (ISO 8601 with a space, "+00"): several times
    # faster than to_char. Inside JSON, timestamps render as ISO 8601 with "T" and "+00:00".
    return f"{expr}::text"


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


def _error_sql(pii: bool, alias: str = "d") -> str:
    # An ESP's refusal often quotes the address; a pseudonymised pack masks it.
    return f"{alias}.error" if pii else f"replace({alias}.error, {alias}.address, '[address]')"


def _resend_json(pii: bool) -> str:
    pairs = [
        ("delivery", "r.id"),
        ("campaign", "r.campaign_id"),
        ("version", "rc.version_id"),
        ("content_hash", "rc.content_hash"),
        ("status", "r.status"),
        ("attempts", "r.attempts"),
        ("esp_message_id", "r.esp_message_id"),
        ("sent_at", "r.sent_at"),
        ("delivered_at", "r.delivered_at"),
        ("bounce_kind", "r.bounce_kind"),
        ("error", _error_sql(pii, "r")),
    ]
    if pii:
        pairs.append(("address", "r.address"))
    return _json_object(pairs)


# One text per event or status change; their lists are joined with "; ".
_EVENT_TEXT = (
    "e.event_type || ' ' || coalesce(e.occurred_at::text, 'unknown time') || ' ' || e.outcome"
    " || CASE WHEN e.bounce_kind <> '' THEN ' ' || e.bounce_kind ELSE '' END"
)
_HISTORY_TEXT = (
    "h.status || CASE WHEN h.method <> '' THEN ' ' || h.method ELSE '' END"
    " || ' ' || h.recorded_at::text || ' ' || h.recorded_by_label"
)
SEPARATOR = "; "


def select_sql(*, pii: bool, fmt: str, only: str = "", lines: bool = False) -> str:
    """The ledger's SELECT for one chunk of people (ids in [lo, hi)), as CSV cells or JSON.

    `only` narrows the chunk further: an SQL condition on "{id}", a person's id.
    With `lines`, each row is (person_id, line): the person's whole CSV row or JSON
    object as text with its line end, byte for byte what COPY writes for them.
    """
    narrow = f" AND {only}" if only else ""
    in_chunk = "{alias}.person_id >= %(lo)s AND {alias}.person_id < %(hi)s" + narrow.replace(
        "{id}", "{alias}.person_id"
    )
    # Built from constants and column names only; every value is a parameter.
    # Each list is aggregated from a subquery already in (person, time) order: PostgreSQL
    # aggregates rows in the order they come, while an ORDER BY inside the aggregate makes
    # version 15 run one sort per person (40% of the time of these lists).
    ctes = f"""
WITH rs AS (
  SELECT person_id, json_agg(item) AS resends FROM (
    SELECT r.person_id, {_resend_json(pii)} AS item
    FROM {_T["delivery"]} r JOIN {_T["campaign"]} rc ON rc.id = r.campaign_id
    WHERE r.incident_id = %(incident)s AND r.resend AND {in_chunk.format(alias="r")}
    ORDER BY r.person_id, r.id) t
  GROUP BY person_id
), ev AS (
  SELECT person_id, count(*) AS n, string_agg(item, '{SEPARATOR}') AS events FROM (
    SELECT x.person_id, {_EVENT_TEXT} AS item
    FROM {_T["event"]} e JOIN {_T["delivery"]} x ON x.id = e.delivery_id
    WHERE x.incident_id = %(incident)s AND {in_chunk.format(alias="x")}
    ORDER BY x.person_id, e.occurred_at, e.id) t
  GROUP BY person_id
), cr AS (
  SELECT person_id, string_agg(item, '{SEPARATOR}') AS history FROM (
    SELECT h.person_id, {_HISTORY_TEXT} AS item
    FROM {_T["record"]} h
    WHERE h.incident_id = %(incident)s AND {in_chunk.format(alias="h")}
    ORDER BY h.person_id, h.recorded_at, h.id) t
  GROUP BY person_id
)"""  # noqa: S608
    cells = []
    for col in columns(pii=pii):
        expr = col.sql.format(ref=_REF_SQL, error=_error_sql(pii))
        aggregated = expr.startswith(("rs.", "ev.", "cr."))
        if fmt == "csv":
            if col.kind == "text":
                expr = sql_safe(expr)  # a plain column: evaluated twice, cheaply
            elif col.kind == "ts":
                expr = _ts(expr)
            elif col.kind == "json":
                expr = f"coalesce({expr}::text, '[]')" if aggregated else f"{expr}::text"
            elif col.kind == "list":
                expr = f"coalesce({expr}, '')"
        elif col.kind == "json" and aggregated:
            expr = f"coalesce({expr}, '[]'::json)"
        elif col.kind == "list":
            expr = f"coalesce({expr}, '')"
        elif col.kind == "ts":
            expr = _ts(expr)  # the same text as in the CSV
        cells.append((col, expr))
    inner = ", ".join(f'{expr} AS "{col.name}"' for col, expr in cells)
    if lines and fmt == "csv":
        # The cells are computed once in x (OFFSET 0 keeps PostgreSQL from folding x
        # into this SELECT and computing each cell again for every test below).
        line = ", ".join(_csv_cell(f'x."{col.name}"', col.kind) for col, _ in cells)
        select = f"x.person_id, array_to_string(ARRAY[{line}], ',') || E'\\n' AS line FROM (SELECT {inner}"
    elif lines:
        select = f"x.person_id, row_to_json(x)::text || E'\\n' AS line FROM (SELECT {inner}"
    elif fmt == "csv":
        select = ", ".join(expr for _, expr in cells)
    else:
        select = f"row_to_json(x)::text FROM (SELECT {inner}"
    body = f"""
FROM {_T["person"]} p
JOIN {_T["segment"]} s ON s.id = p.segment_id
LEFT JOIN {_T["delivery"]} d ON d.person_id = p.id AND d.incident_id = p.incident_id AND NOT d.resend
LEFT JOIN {_T["campaign"]} c ON c.id = d.campaign_id
LEFT JOIN rs ON rs.person_id = p.id
LEFT JOIN ev ON ev.person_id = p.id
LEFT JOIN cr ON cr.person_id = p.id
WHERE p.incident_id = %(incident)s AND p.id >= %(lo)s AND p.id < %(hi)s{narrow.replace("{id}", "p.id")}
ORDER BY p.id"""  # noqa: S608
    if lines:
        return f"{ctes}\nSELECT {select}{body} OFFSET 0) x"
    if fmt == "csv":
        return f"{ctes}\nSELECT {select}{body}"
    return f"{ctes}\nSELECT {select}{body}) x"


def _csv_cell(ref: str, kind: str) -> str:
    """The cell `ref` of kind `kind` exactly as COPY … (FORMAT csv) writes it."""
    if kind in ("text", "json", "list"):
        # Quoted when empty or holding a comma, a quote or a line break.
        return (
            f"CASE WHEN {ref} IS NULL THEN '' WHEN {ref} = '' OR {ref} ~ '[\",\\r\\n]' "
            f"THEN '\"' || replace({ref}, '\"', '\"\"') || '\"' ELSE {ref} END"
        )
    # Ids, numbers, hashes, status words and timestamps: never a comma, quote or break.
    return f"CASE WHEN {ref} IS NULL THEN '' WHEN {ref}::text = '' THEN '\"\"' ELSE {ref}::text END"


def copy_statement(*, pii: bool, fmt: str) -> str:
    # JSON: one text per row, passed through unquoted: PostgreSQL's JSON escapes every
    # control character, so these two bytes can never occur in it.
    options = "FORMAT csv" if fmt == "csv" else "FORMAT csv, DELIMITER E'\\x1f', QUOTE E'\\x1e'"
    return f"COPY ({select_sql(pii=pii, fmt=fmt)}) TO STDOUT WITH ({options})"


def params(incident: Incident, lo: int, hi: int) -> dict:
    ipad, opad = _hmac_parts()
    return {"incident": incident.pk, "lo": lo, "hi": hi, "ipad": ipad, "opad": opad}


def _id_bounds(incident: Incident) -> tuple[int, int] | None:
    ids = AffectedPerson.objects.filter(incident=incident).order_by().values_list("id", flat=True)
    first, last = ids.order_by("id").first(), ids.order_by("-id").first()
    return None if first is None else (first, last + 1)


def _chunks(lo: int, hi: int) -> Iterator[tuple[int, int]]:
    step = max(settings.EXPORT_CHUNK_PEOPLE, 1)
    for start in range(lo, hi, step):
        yield start, min(start + step, hi)


def _parts(incident: Incident, people: int) -> list[tuple[int, int]]:
    """The id ranges the ledger is written in, one COPY stream each, in order."""
    bounds = _id_bounds(incident)
    if bounds is None:
        return []
    lo, hi = bounds
    streams = max(1, settings.EXPORT_STREAMS) if people >= settings.EXPORT_STREAMS_MIN_PEOPLE else 1
    edges = [lo + (hi - lo) * i // streams for i in range(streams)] + [hi]
    return [(a, b) for a, b in zip(edges, edges[1:], strict=False) if a < b]


# Progress is reported this often during a COPY (whose connection is busy meanwhile).
PROGRESS_ROWS = 50_000


_SETTINGS = (
    "max_parallel_workers_per_gather",
    "work_mem",
    "jit_inline_above_cost",
    "jit_optimize_above_cost",
)


def _set_up(cursor, *, scope: str) -> None:
    """Session (`scope` "SESSION") or transaction ("LOCAL") settings for the ledger's COPY."""
    # UTC renders timestamps as +00:00. No parallel workers: each would build every
    # aggregate again for its share of people (our streams split the people instead).
    cursor.execute(f"SET {scope} TIME ZONE 'UTC'")
    cursor.execute(f"SET {scope} max_parallel_workers_per_gather = 0")
    cursor.execute(f"SET {scope} work_mem = %s", [settings.BULK_WORK_MEM])
    # JIT-compiled expressions pay off over a million rows, but LLVM's inlining and
    # optimisation passes cost more (0.5 s a query) than they save here.
    cursor.execute(f"SET {scope} jit_inline_above_cost = -1")
    cursor.execute(f"SET {scope} jit_optimize_above_cost = -1")


def _copy_range(cursor, statement, incident, lo: int, hi: int, write, on_row=None) -> int:
    rows = 0
    for start, end in _chunks(lo, hi):
        with cursor.copy(statement, params(incident, start, end)) as copy:
            for block in copy:
                write(block)
                rows += 1
                if on_row is not None and not rows % PROGRESS_ROWS:
                    on_row(rows)
    return rows


def _write_here(incident, out: HashedFile, statement: str, lo: int, hi: int, on_progress) -> int:
    """One stream, on this thread's connection (so in its transaction, if any)."""
    connection.ensure_connection()
    with connection.connection.cursor() as cursor:
        _set_up(cursor, scope="SESSION")
        try:
            return _copy_range(
                cursor, statement, incident, lo, hi, out.write, lambda n: on_progress(n, busy=True)
            )
        finally:
            # Not the time zone: UTC is what Django set on this connection too.
            for name in _SETTINGS:
                cursor.execute(f"RESET {name}")


class _Stream:
    """A COPY stream for one id range, on a connection of its own, in a shared snapshot."""

    def __init__(self, lo: int, hi: int, sink):
        self.lo, self.hi, self.sink = lo, hi, sink
        self.rows = 0
        self.error: BaseException | None = None
        self.conn = connection.get_new_connection(connection.get_connection_params())
        self.conn.isolation_level = IsolationLevel.REPEATABLE_READ
        self.conn.read_only = True

    def begin(self, snapshot: str | None) -> str:
        """Start reading in `snapshot`, or in a new one; the snapshot, for the others."""
        with self.conn.cursor() as cursor:
            if snapshot is not None:
                cursor.execute("SET TRANSACTION SNAPSHOT %s", [snapshot])
            _set_up(cursor, scope="LOCAL")
            if snapshot is None:
                cursor.execute("SELECT pg_export_snapshot()")
                snapshot = cursor.fetchone()[0]
        return snapshot

    def run(self, statement: str, incident, on_row=None) -> None:
        def counted(rows: int) -> None:
            self.rows = rows
            if on_row is not None:
                on_row()

        try:
            with self.conn.cursor() as cursor:
                self.rows = _copy_range(
                    cursor, statement, incident, self.lo, self.hi, self.sink.write, counted
                )
        except BaseException as exc:  # re-raised by the thread that waits for this one
            self.error = exc


def _write_streams(incident, out: HashedFile, statement: str, parts, on_progress) -> int:
    """One COPY stream per part, on connections of their own, all in one snapshot.

    The first part goes straight to `out`; each later one, written meanwhile by a
    thread of its own, goes to a temporary file beside `out` and is appended in
    order. PostgreSQL builds the rows, so two streams keep both cores of a
    two-core database busy. Reads only committed data: the export job's case.
    """
    streams: list[_Stream] = []
    spools: list = []
    try:
        for index, (lo, hi) in enumerate(parts):
            sink = out
            if index:
                sink = tempfile.TemporaryFile(dir=out.path.parent, buffering=1 << 20)  # noqa: SIM115 (closed below)
                spools.append(sink)
            streams.append(_Stream(lo, hi, sink))
        snapshot = streams[0].begin(None)
        for stream in streams[1:]:
            stream.begin(snapshot)
        threads = [
            threading.Thread(target=stream.run, args=(statement, incident), daemon=True)
            for stream in streams[1:]
        ]
        for thread in threads:
            thread.start()
        streams[0].run(
            statement,
            incident,
            on_row=lambda: on_progress(sum(s.rows for s in streams), busy=True),
        )
        for thread in threads:
            thread.join()
        for stream in streams:
            if stream.error is not None:
                raise stream.error
        for spool in spools:
            spool.seek(0)
            while block := spool.read(1 << 20):
                out.write(block)
        return sum(stream.rows for stream in streams)
    finally:
        for stream in streams:
            stream.conn.close()
        for spool in spools:
            spool.close()


def _write_postgres(incident, out: HashedFile, *, pii: bool, fmt: str, on_progress) -> int:
    from incidents.export import ledger_kept  # it builds on this module's SQL

    people = AffectedPerson.objects.filter(incident=incident).count()
    parts = _parts(incident, people)
    if not parts:
        return 0
    if ledger_kept.applies(incident, pii=pii, people=people) and ledger_kept.ready(
        incident, fmt=fmt, parts=parts
    ):
        rows = ledger_kept.write(
            out,
            incident,
            fmt,
            lo=parts[0][0],
            hi=parts[-1][1],
            readers=len(parts),
            on_progress=on_progress,
        )
    else:
        statement = copy_statement(pii=pii, fmt=fmt)
        if len(parts) == 1:
            rows = _write_here(incident, out, statement, *parts[0], on_progress)
        else:
            rows = _write_streams(incident, out, statement, parts, on_progress)
    on_progress(rows, busy=False)
    return rows


# --- Entry point ------------------------------------------------------------------


def write_ledger(
    incident: Incident,
    out: HashedFile,
    *,
    fmt: str,
    pii: bool,
    on_progress: Callable[..., None] = lambda rows, busy=False: None,
) -> int:
    """Write the ledger to `out` in `fmt` (csv or jsonl). Returns the number of people.

    `on_progress(rows, busy=…)` reports people written; `busy` means this
    connection is in the middle of a COPY, so the callback must use another.
    """
    if connection.vendor == "postgresql":
        if fmt == "csv":
            # The header line; COPY writes the rows, with PostgreSQL's \n line ends.
            CsvWriter(out, header(pii=pii), lineterminator="\n")
        rows = _write_postgres(incident, out, pii=pii, fmt=fmt, on_progress=on_progress)
        out.rows += rows
        return rows
    before = out.rows
    writer = writer_for(fmt, out, header(pii=pii))
    writer.write_rows(
        ledger_python.rows(
            incident,
            names=header(pii=pii),
            pii=pii,
            person_ref=person_ref,
            on_chunk=lambda rows: on_progress(rows, busy=False),
        )
    )
    return out.rows - before
