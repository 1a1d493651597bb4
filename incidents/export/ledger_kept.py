"""The pseudonymised ledger of a large incident, kept as finished lines (PostgreSQL only).

Joining a million people to their deliveries, events and status history costs
PostgreSQL far more than reading a million finished lines, and between two
exports of an incident few people change. So the first pseudonymised export of
a large incident in a format keeps every person's line (`LedgerLine`); from
then on, triggers (incidents migration 0012) mark each person whose data
changes (`LedgerMark`), and each export:

1. recomputes the marked people's lines and removes those marks, in one
   statement (so one snapshot: a mark added meanwhile stays);
2. reads the lines, in id order, in one snapshot shared by its streams; anyone
   marked after step 1 is computed live in that same snapshot instead.

The lines are the same bytes the live COPY writes (tests compare the two). A
changed query or pseudonym key changes the fingerprint, and the lines are built
again. PII ledgers are never kept.
"""

import hashlib
import time

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from psycopg.adapt import Loader
from psycopg.pq import Format

from incidents.export import ledger
from incidents.models import AffectedPerson, Incident, LedgerCache, LedgerLine, LedgerMark

_LINE = LedgerLine._meta.db_table
_MARK = LedgerMark._meta.db_table
_PERSON = AffectedPerson._meta.db_table
# All of an incident's people, whatever ids they get while a statement runs.
_ALL = {"lo": 0, "hi": 2**62}
# The people marked for this incident and format (`{id}` is the person's id column).
_MARKED = (
    f"{{id}} IN (SELECT m.person_id FROM {_MARK} m"  # noqa: S608
    " WHERE m.incident_id = %(incident)s AND m.fmt = %(fmt)s)"
)
# An export reads this many people a statement: one text of a few megabytes each.
BLOCK_PEOPLE = 20_000
# pg_advisory_lock's first key: "ledger" (the second is the incident's id).
_LOCK_SPACE = 0x6C656467
WRITERS_WAIT_SECONDS = 120


class LedgerOutOfStep(RuntimeError):
    """The kept lines do not cover the incident's people: the export stops rather than lie."""


def applies(incident: Incident, *, pii: bool, people: int) -> bool:
    """Whether this export reads kept lines (it must be able to commit its refresh)."""
    return (
        connection.vendor == "postgresql"
        and not pii
        and not connection.in_atomic_block
        and people >= settings.EXPORT_KEEP_MIN_PEOPLE
    )


def fingerprint(fmt: str) -> str:
    """Names what the lines hold: the query that builds them and the pseudonym key."""
    ipad, _ = ledger._hmac_parts()
    statement = ledger.select_sql(pii=False, fmt=fmt, lines=True).encode()
    return hashlib.sha256(statement + ipad).hexdigest()


def _upsert_sql(fmt: str, *, only: str = "") -> str:
    select = ledger.select_sql(pii=False, fmt=fmt, only=only, lines=True)
    return (
        f"INSERT INTO {_LINE} (fmt, person_id, incident_id, line)"  # noqa: S608
        f" SELECT %(fmt)s, k.person_id, %(incident)s, k.line FROM ({select}) k"
        " ON CONFLICT (fmt, person_id) DO UPDATE SET line = EXCLUDED.line"
    )


def _params(incident: Incident, fmt: str, **extra) -> dict:
    return {**ledger.params(incident, 0, 0), **_ALL, "fmt": fmt, **extra}


def refresh(incident: Incident, *, fmt: str) -> int:
    """Bring the incident's kept lines in `fmt` up to date. Returns the people recomputed."""
    with connection.cursor() as cursor:
        # Held across the transactions below: one refresh of an incident at a time.
        cursor.execute("SELECT pg_advisory_lock(%s, %s)", [_LOCK_SPACE, incident.pk])
        try:
            cache = LedgerCache.objects.filter(incident=incident, fmt=fmt).first()
            wanted = fingerprint(fmt)
            if cache is None or cache.fingerprint != wanted or cache.built_at is None:
                return _rebuild(incident, fmt, wanted)
            with transaction.atomic():
                ledger._set_up(cursor, scope="LOCAL")
                cursor.execute(
                    f"WITH done AS (DELETE FROM {_MARK} WHERE incident_id = %(incident)s"  # noqa: S608
                    f" AND fmt = %(fmt)s) {_upsert_sql(fmt, only=_MARKED)}",
                    _params(incident, fmt),
                )
                return cursor.rowcount
        finally:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [_LOCK_SPACE, incident.pk])


def _rebuild(incident: Incident, fmt: str, wanted: str) -> int:
    with transaction.atomic():
        LedgerCache.objects.update_or_create(
            incident=incident, fmt=fmt, defaults={"fingerprint": wanted, "built_at": None}
        )
        LedgerMark.objects.filter(incident_id=incident.pk, fmt=fmt).delete()
        LedgerLine.objects.filter(incident=incident, fmt=fmt).delete()
    # From now on every change is marked; wait for the writers that may have changed
    # data before they could see the cache, so the lines below include their changes.
    _wait_for_writers_in_flight()
    with transaction.atomic(), connection.cursor() as cursor:
        ledger._set_up(cursor, scope="LOCAL")
        cursor.execute(_upsert_sql(fmt), _params(incident, fmt))
        built = cursor.rowcount
        LedgerCache.objects.filter(incident=incident, fmt=fmt).update(built_at=timezone.now())
    return built


def _wait_for_writers_in_flight() -> None:
    """Wait until every transaction running now has ended (as CREATE INDEX CONCURRENTLY does)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_current_snapshot()::text")
        snapshot = cursor.fetchone()[0]
        deadline = time.monotonic() + WRITERS_WAIT_SECONDS
        while True:
            cursor.execute(
                "SELECT count(*) FROM pg_snapshot_xip(%s::pg_snapshot) x"
                " WHERE pg_xact_status(x) = 'in progress'",
                [snapshot],
            )
            if not cursor.fetchone()[0]:
                return
            if time.monotonic() > deadline:
                raise LedgerOutOfStep("Writers still running; try the export again later.")
            time.sleep(0.05)


# --- Reading the lines ------------------------------------------------------------


class _AsBytes(Loader):
    """Text as the bytes PostgreSQL sent (UTF-8), written to the file without decoding."""

    format = Format.TEXT

    def load(self, data) -> bytes:
        return bytes(data)


def _block_sql(fmt: str, *, merged: bool) -> str:
    kept = (
        f"SELECT l.person_id, l.line FROM {_LINE} l"  # noqa: S608
        " WHERE l.fmt = %(fmt)s AND l.person_id >= %(lo)s AND l.person_id < %(hi)s"
        " AND l.incident_id = %(incident)s"
    )
    if merged:
        live = ledger.select_sql(pii=False, fmt=fmt, only="{id} = ANY(%(marked)s)", lines=True)
        kept = (
            f"{kept} AND NOT l.person_id = ANY(%(marked)s)"  # noqa: S608
            f" UNION ALL SELECT * FROM ({live}) live ORDER BY 1"
        )
    else:
        kept += " ORDER BY l.person_id"
    # string_agg keeps the order its input comes in.
    return f"SELECT count(*), string_agg(t.line, '') FROM ({kept}) t"  # noqa: S608


def read_range(cursor, incident: Incident, fmt: str, lo: int, hi: int, write, counted) -> int:
    """Write the lines of people [lo, hi) in id order; returns how many. In one snapshot."""
    cursor.adapters.register_loader("text", _AsBytes)
    base = {**ledger.params(incident, lo, hi), "fmt": fmt}
    cursor.execute(
        f"SELECT coalesce(array_agg(DISTINCT person_id), '{{}}') FROM {_MARK}"  # noqa: S608
        " WHERE incident_id = %(incident)s AND fmt = %(fmt)s"
        " AND person_id >= %(lo)s AND person_id < %(hi)s",
        base,
    )
    marked = cursor.fetchone()[0]
    cursor.execute(
        f"SELECT count(*) FROM {_PERSON} WHERE incident_id = %(incident)s"  # noqa: S608
        " AND id >= %(lo)s AND id < %(hi)s",
        base,
    )
    expected = cursor.fetchone()[0]
    statement = _block_sql(fmt, merged=bool(marked))
    rows = 0
    for start in range(lo, hi, BLOCK_PEOPLE):
        end = min(start + BLOCK_PEOPLE, hi)
        params = {**base, "lo": start, "hi": end, "marked": marked}
        cursor.execute(statement, params)
        count, text = cursor.fetchone()
        if count:
            write(text)
            rows += count
            counted(rows)
    if rows != expected:
        raise LedgerOutOfStep(
            f"The kept ledger has {rows:,} lines for {expected:,} people; export it again."
        )
    return rows


def forget(incident: Incident) -> None:
    """Drop everything kept for the incident (retention: the lines may quote addresses)."""
    LedgerCache.objects.filter(incident=incident).delete()
    LedgerMark.objects.filter(incident_id=incident.pk).delete()
    LedgerLine.objects.filter(incident=incident).delete()
