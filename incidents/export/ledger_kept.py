"""The pseudonymised ledger of a large incident, kept as finished lines (PostgreSQL only).

Joining a million people to their deliveries, events and status history costs
PostgreSQL far more than reading a million finished lines, and between two
exports of an incident few people change. So after the first pseudonymised
export of a large incident in a format (written live, by COPY), a queued job
keeps every person's line (`LedgerLine`); from then on, triggers (incidents
migration 0012) mark each person whose data changes (`LedgerMark`), and each
export:

1. reads the lines in id order, in one snapshot shared by its readers; the
   people marked are computed in that same snapshot and take their lines' place;
2. then queues the job again (`keep`), which folds the marks into the kept
   lines, so the next export has few people to compute (an export that finds
   more than MERGE_MAX marked is written live instead).

The lines are the same bytes the live COPY writes (tests compare the two). A
changed query or pseudonym key changes the fingerprint, and the lines are built
again. PII ledgers are never kept.
"""

import bisect
import hashlib
import queue
import threading
import time
from contextlib import contextmanager

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
# An export reads this many people a statement: one text of about 2.5 MB each.
BLOCK_PEOPLE = 5_000
# A fold recomputes this many marked people a statement (their ids are an array).
FOLD_PEOPLE = 10_000
# With more marked than this, a fold recomputes them all in one statement.
FOLD_WHOLE_ABOVE = 100_000
# An export computes up to this many marked people while it reads (in its streams);
# with more it is written live (300,000 marked: folding first took 24.5 s, live 17-31 s).
MERGE_MAX = 50_000
# pg_advisory_lock's first key: "ledger" (the second is the incident's id).
_LOCK_SPACE = 0x6C656467
WRITERS_WAIT_SECONDS = 120


class LedgerOutOfStep(RuntimeError):
    """The kept lines do not cover the incident's people: the export stops rather than lie."""


def applies(incident: Incident, *, pii: bool, people: int) -> bool:
    """Whether this export's ledger is kept (it must be able to commit a fold)."""
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


def ready(incident: Incident, *, fmt: str, parts: list[tuple[int, int]]) -> bool:
    """Whether an export should read the kept lines: built for this query and key, not
    lost, and with no more than MERGE_MAX people changed since (more are cheaper to
    write live than to compute one by one; the job queued after the export folds them).

    `parts` are the id ranges the export reads. Not under the incident's lock: a build
    of another format may hold it for many seconds, and a fold running meanwhile is
    one transaction, which the export's snapshot sees whole or not at all.
    """
    if not _is_built(incident, fmt, parts):
        return False
    return LedgerMark.objects.filter(incident_id=incident.pk, fmt=fmt).count() <= MERGE_MAX


def keep(incident: Incident, *, fmt: str) -> int:
    """Build the incident's kept lines in `fmt` if they are missing or stale, and fold the
    marked people into every kept format. Returns the people built or recomputed.

    Queued after each pseudonymised export of a large incident (`run_keep_ledger`), so
    the first export is the live one and every later one reads kept lines.
    """
    parts = ledger._parts(incident, AffectedPerson.objects.filter(incident=incident).count())
    if not parts:
        return 0
    with _one_at_a_time(incident):
        done = 0
        if not _is_built(incident, fmt, parts):
            done += _rebuild(incident, fmt, fingerprint(fmt), parts)
        return done + _fold_every_format(incident)


def keep_later(incident: Incident, *, fmt: str, pii: bool) -> None:
    """After an export: queue `keep` if the incident's ledger is to be kept and needs it."""
    people = AffectedPerson.objects.filter(incident=incident).count()
    if fmt not in ("csv", "jsonl") or not applies(incident, pii=pii, people=people):
        return
    parts = ledger._parts(incident, people)
    marked = LedgerMark.objects.filter(incident_id=incident.pk).exists()
    if parts and (marked or not _is_built(incident, fmt, parts)):
        _queue_keep(incident, fmt)


def keep_when_resolved(incident: Incident) -> None:
    """On resolution: have the CSV ledger kept before the auditors' first export of it.

    Called in the resolving transaction; the job is queued when it commits.
    """
    if connection.vendor != "postgresql":
        return
    if AffectedPerson.objects.filter(incident=incident).count() >= settings.EXPORT_KEEP_MIN_PEOPLE:
        _queue_keep(incident, "csv")


def _queue_keep(incident: Incident, fmt: str) -> None:
    from incidents.export.jobs import run_keep_ledger  # the job calls back into this module
    from incidents.queue import enqueue

    enqueue(run_keep_ledger, incident.pk, fmt, queue="exports")


def fold(incident: Incident) -> int:
    """Recompute the marked people's kept lines, in every format; the people recomputed."""
    with _one_at_a_time(incident):
        return _fold_every_format(incident)


def _fold_every_format(incident: Incident) -> int:
    built = LedgerCache.objects.filter(incident=incident, built_at__isnull=False)
    return sum(_fold_marks(incident, fmt) for fmt in built.values_list("fmt", flat=True))


def _is_built(incident: Incident, fmt: str, parts: list[tuple[int, int]]) -> bool:
    cache = LedgerCache.objects.filter(incident=incident, fmt=fmt).first()
    return (
        cache is not None
        and cache.built_at is not None
        and cache.fingerprint == fingerprint(fmt)
        and not _lines_lost(fmt, parts)
    )


@contextmanager
def _one_at_a_time(incident: Incident):
    """A session advisory lock, held across the transactions of a build or a fold."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s, %s)", [_LOCK_SPACE, incident.pk])
        try:
            yield
        finally:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [_LOCK_SPACE, incident.pk])


def _lines_lost(fmt: str, parts: list[tuple[int, int]]) -> bool:
    """The lines' table is UNLOGGED: a crash restart empties it, and the cache row outlives it."""
    lo, hi = parts[0][0], parts[-1][1]
    return not LedgerLine.objects.filter(fmt=fmt, person_id__gte=lo, person_id__lt=hi).exists()


def _fold_marks(incident: Incident, fmt: str) -> int:
    with transaction.atomic(), connection.cursor() as cursor:
        # The marks taken (deleted) into a table of this transaction, analysed, so the
        # planner knows how many people it joins: a subquery of marks, last analysed
        # empty, looked like one row, and a nested loop over 10,000 people took minutes.
        cursor.execute(
            "CREATE TEMPORARY TABLE amends_folding ON COMMIT DROP AS"  # noqa: S608
            f" WITH taken AS (DELETE FROM {_MARK} WHERE incident_id = %s AND fmt = %s"
            " RETURNING person_id) SELECT DISTINCT person_id FROM taken",
            [incident.pk, fmt],
        )
        folding = cursor.rowcount
        if not folding:
            return 0
        cursor.execute("ANALYZE amends_folding")
        if folding > FOLD_WHOLE_ABOVE:
            # Most people changed (a send while the ledger was kept): one statement with
            # hash joins, as a build does, beats index lookups person by person.
            ledger._set_up(cursor, scope="LOCAL")
            only = "{id} IN (SELECT person_id FROM amends_folding)"
            cursor.execute(_upsert_sql(fmt, only=only), _params(incident, fmt))
            return folding
        cursor.execute("SELECT person_id FROM amends_folding ORDER BY 1")
        marked = [row[0] for row in cursor.fetchall()]
        _set_up_for_few(cursor)
        statement = _upsert_sql(fmt, only="{id} = ANY(%(marked)s)")
        for start in range(0, len(marked), FOLD_PEOPLE):
            batch = marked[start : start + FOLD_PEOPLE]
            cursor.execute(statement, _params(incident, fmt, marked=batch))
    return folding


def _set_up_for_few(cursor) -> None:
    """Settings for computing the lines of a few people among many (in this transaction).

    Index lookups, not hash joins: for 10,000 of a million people PostgreSQL otherwise
    scans every delivery and event to hash them (1.7 s against 1.0 s, measured).
    """
    ledger._set_up(cursor, scope="LOCAL")
    cursor.execute("SET LOCAL enable_hashjoin = off")


def _rebuild(incident: Incident, fmt: str, wanted: str, parts: list[tuple[int, int]]) -> int:
    with transaction.atomic():
        LedgerCache.objects.update_or_create(
            incident=incident, fmt=fmt, defaults={"fingerprint": wanted, "built_at": None}
        )
        LedgerMark.objects.filter(incident_id=incident.pk, fmt=fmt).delete()
        LedgerLine.objects.filter(incident=incident, fmt=fmt).delete()
    # From now on every change is marked; wait for the writers that may have changed
    # data before they could see the cache, so the lines below include their changes.
    _wait_for_writers_in_flight()
    # The ranges stretched to every id: people added meanwhile are built (or marked).
    ranges = [(0 if i == 0 else lo, hi) for i, (lo, hi) in enumerate(parts)]
    ranges[-1] = (ranges[-1][0], _ALL["hi"])
    built = _build_in_parallel(incident, fmt, ranges)
    LedgerCache.objects.filter(incident=incident, fmt=fmt).update(built_at=timezone.now())
    if not connection.in_atomic_block:
        # Here, in the job, rather than by autovacuum during the next export (a million
        # new rows set it off): that export took 5.8 s instead of 3.5 s, measured.
        with connection.cursor() as cursor:
            cursor.execute(f"VACUUM (ANALYZE) {_LINE}")
    return built


def _build_in_parallel(incident: Incident, fmt: str, ranges: list[tuple[int, int]]) -> int:
    """One INSERT … SELECT per range, each on a connection of its own, committed.

    PostgreSQL runs one statement on one core; ranges on two connections use two.
    If one fails, `built_at` stays unset and the next export builds all again.
    """
    statement = _upsert_sql(fmt)
    built = [0] * len(ranges)
    errors: list[BaseException] = []

    def build(index: int, lo: int, hi: int) -> None:
        conn = connection.get_new_connection(connection.get_connection_params())
        try:
            with conn.cursor() as cursor:
                ledger._set_up(cursor, scope="LOCAL")
                cursor.execute(statement, {**_params(incident, fmt), "lo": lo, "hi": hi})
                built[index] = cursor.rowcount
            conn.commit()
        except BaseException as exc:  # re-raised by the thread that waits
            errors.append(exc)
        finally:
            conn.close()

    threads = [
        threading.Thread(target=build, args=(i, lo, hi), daemon=True)
        for i, (lo, hi) in enumerate(ranges)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return sum(built)


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


def _block_sql(*, merged: bool) -> str:
    kept = (
        f"SELECT l.person_id, l.line FROM {_LINE} l"  # noqa: S608
        " WHERE l.fmt = %(fmt)s AND l.person_id >= %(lo)s AND l.person_id < %(hi)s"
        " AND l.incident_id = %(incident)s"
    )
    if merged:
        # The marked people's lines, computed in this snapshot, replace their kept ones.
        kept = (
            f"{kept} AND NOT l.person_id = ANY(%(marked)s::bigint[])"  # noqa: S608
            " UNION ALL SELECT * FROM unnest(%(ids)s::bigint[], %(lines)s::text[]) ORDER BY 1"
        )
    else:
        kept += " ORDER BY l.person_id"
    # string_agg keeps the order its input comes in.
    return f"SELECT count(*), string_agg(t.line, '') FROM ({kept}) t"  # noqa: S608


def write(out, incident: Incident, fmt: str, *, lo: int, hi: int, readers: int, on_progress) -> int:
    """Write the kept lines of people [lo, hi) to `out` in id order; returns how many.

    The range is read in blocks of BLOCK_PEOPLE by `readers` connections in turn, all
    in one snapshot, and each block is written here as soon as it is its turn: at most
    a few blocks are held (memory stays flat) and nothing is spooled to disk.
    """
    blocks = [(start, min(start + BLOCK_PEOPLE, hi)) for start in range(lo, hi, BLOCK_PEOPLE)]
    streams = [ledger._Stream(lo, hi, None) for _ in range(max(1, readers))]
    stop = threading.Event()
    threads: list[threading.Thread] = []
    try:
        snapshot = streams[0].begin(None)
        for stream in streams[1:]:
            stream.begin(snapshot)
        base = {**ledger.params(incident, lo, hi), "fmt": fmt}
        with streams[0].conn.cursor() as cursor:
            expected, marked = _people_and_marked(cursor, base)
        turns = [_Turn(stream, blocks[i :: len(streams)]) for i, stream in enumerate(streams)]
        for person in marked:  # each reader computes the marked people of its own blocks
            turns[(person - lo) // BLOCK_PEOPLE % len(turns)].marked.append(person)
        threads += [
            threading.Thread(target=turn.read, args=(fmt, base, stop), daemon=True)
            for turn in turns
        ]
        for thread in threads:
            thread.start()
        rows = reported = 0
        for index in range(len(blocks)):
            count, text = turns[index % len(turns)].next_block()
            if count:
                out.write(text)
                rows += count
            if rows - reported >= ledger.PROGRESS_ROWS:
                on_progress(rows, busy=False)
                reported = rows
        if rows != expected:
            raise LedgerOutOfStep(
                f"The kept ledger has {rows:,} lines for {expected:,} people; export it again."
            )
        return rows
    finally:
        stop.set()  # readers still running (after an error) stop at their next block
        for thread in threads:
            thread.join(timeout=30)
        for stream in streams:
            stream.conn.close()


def _people_and_marked(cursor, base: dict) -> tuple[int, list[int]]:
    cursor.execute(
        f"SELECT count(*) FROM {_PERSON} WHERE incident_id = %(incident)s"  # noqa: S608
        " AND id >= %(lo)s AND id < %(hi)s",
        base,
    )
    expected = cursor.fetchone()[0]
    cursor.execute(
        f"SELECT DISTINCT person_id FROM {_MARK} WHERE incident_id = %(incident)s"  # noqa: S608
        " AND fmt = %(fmt)s AND person_id >= %(lo)s AND person_id < %(hi)s ORDER BY 1",
        base,
    )
    return expected, [row[0] for row in cursor.fetchall()]


class _Turn:
    """One reader: its connection, its blocks (every n-th), and the blocks it has read."""

    AHEAD = 2  # blocks read ahead of the writer, per reader

    def __init__(self, stream, blocks: list[tuple[int, int]]):
        self.stream, self.blocks = stream, blocks
        self.marked: list[int] = []
        self.ready: queue.Queue = queue.Queue(maxsize=self.AHEAD)

    def next_block(self) -> tuple[int, bytes | None]:
        item = self.ready.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def read(self, fmt: str, base: dict, stop: threading.Event) -> None:
        try:
            with self.stream.conn.cursor() as cursor:
                ids, lines = self._marked_lines(cursor, fmt, base)
                cursor.adapters.register_loader("text", _AsBytes)
                for start, end in self.blocks:
                    params = {**base, "lo": start, "hi": end}
                    first, last = bisect.bisect_left(ids, start), bisect.bisect_left(ids, end)
                    gone = self.marked[
                        bisect.bisect_left(self.marked, start) : bisect.bisect_left(
                            self.marked, end
                        )
                    ]
                    if gone:
                        params.update(marked=gone, ids=ids[first:last], lines=lines[first:last])
                    cursor.execute(_block_sql(merged=bool(gone)), params)
                    if not self._hand_over(cursor.fetchone(), stop):
                        return
        except BaseException as exc:  # raised in the writer's thread, at this reader's turn
            self._hand_over(exc, stop)

    def _marked_lines(self, cursor, fmt: str, base: dict) -> tuple[list, list]:
        """The lines of this reader's marked people, computed now (in the snapshot)."""
        if not self.marked:
            return [], []
        _set_up_for_few(cursor)
        cursor.execute(
            ledger.select_sql(pii=False, fmt=fmt, only="{id} = ANY(%(marked)s)", lines=True),
            {**base, "marked": self.marked},
        )
        found = cursor.fetchall()  # str, sent back as text[] (bytes would go as bytea)
        return [row[0] for row in found], [row[1] for row in found]

    def _hand_over(self, item, stop: threading.Event) -> bool:
        while not stop.is_set():
            try:
                self.ready.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False


def forget(incident: Incident) -> None:
    """Drop everything kept for the incident (retention: the lines may quote addresses)."""
    LedgerCache.objects.filter(incident=incident).delete()
    LedgerMark.objects.filter(incident_id=incident.pk).delete()
    LedgerLine.objects.filter(incident=incident).delete()
