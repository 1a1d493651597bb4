"""Claiming deliveries in the database: id ranges for jobs, conditional claims, hand-overs,
releases.

A delivery's life in a worker is two conditional UPDATEs and one mark: `claim`
(queued → sending, with a lease, under a new `SendClaim`), `hand_over` (right
before the ESP calls, the claim's `handed_through` moves up to the group's last
id) and the answer's record. Each acts only when the row or claim is still in
the state the previous step left, so a worker that lost its claim (to the
sweeper, after its lease ran out) can no longer send or release its rows.
"""

import json
import logging
import queue
import threading
from collections.abc import Sequence
from contextlib import nullcontext
from datetime import datetime, timedelta
from typing import NamedTuple

from django.conf import settings
from django.db import connection, connections, transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from campaigns.models import Campaign, Delivery, SendClaim, Suppression
from campaigns.sending.db import fast_cursor
from campaigns.sending.rows import (
    METADATA,
    PERSON_ADDRESS,
    SQL_COLUMNS,
    SendRow,
    claimed_rows,
    send_rows,
)

Status = Delivery.Status
log = logging.getLogger(__name__)

# --- Batches -------------------------------------------------------------------------------


def batch_ranges(
    campaign_id: int,
    batch_size: int,
    *,
    min_id: int | None = None,
    due_by: datetime | None = None,
) -> list[tuple[int, int]]:
    """(first id, last id) of each run of `batch_size` queued deliveries, in id order.

    `due_by`: only deliveries due by then (no next attempt time, or an earlier one).
    """
    where = ["campaign_id = %s", "status = %s"]
    params: list = [campaign_id, Status.QUEUED]
    if min_id is not None:
        where.append("id >= %s")
        params.append(min_id)
    if due_by is not None:
        where.append("(next_attempt_at IS NULL OR next_attempt_at <= %s)")
        params.append(due_by)
    sql = f"""
        SELECT MIN(id), MAX(id) FROM (
            SELECT id, (ROW_NUMBER() OVER (ORDER BY id) - 1) / %s AS grp
            FROM campaigns_delivery WHERE {" AND ".join(where)}
        ) numbered GROUP BY grp ORDER BY grp
    """  # noqa: S608 (constant fragments; values are parameters)
    with connection.cursor() as cursor:
        cursor.execute(sql, [batch_size, *params])
        return [(first, last) for first, last in cursor.fetchall()]


# --- Claiming --------------------------------------------------------------------------------


def claim(campaign_id: int, first_id: int, last_id: int, limit: int) -> list[int]:
    """Set up to `limit` due, queued deliveries of the range `sending` with a lease; their ids.

    Committed before anything is sent: once a row is `sending`, no other job
    will take it, and the sweeper alone decides about it if this worker dies.
    """
    return [row.pk for row in claim_chunk(campaign_id, first_id, last_id, limit).rows]


class Chunk(NamedTuple):
    rows: list[SendRow]  # in id order
    suppressed: set[str]  # the addresses among them that are suppressed now


def claim_chunk(campaign_id: int, first_id: int, last_id: int, limit: int) -> Chunk:
    """`claim`, with the claimed rows as a send job reads them and the suppressed addresses.

    On PostgreSQL in the claim's own statement (its UPDATE … RETURNING joined to
    the people and the suppression list), where reading the rows back by id and
    asking for the suppressions cost a query each.
    """
    now = timezone.now()
    lease = now + timedelta(seconds=settings.SEND_LEASE_SECONDS)
    with transaction.atomic():
        send_claim = SendClaim.objects.create(campaign_id=campaign_id, lease_until=lease)
        if connection.vendor == "postgresql":
            chunk = _claim_postgres(campaign_id, first_id, last_id, limit, send_claim, now)
        else:
            chunk = _claim_sqlite(campaign_id, first_id, last_id, limit, send_claim, now)
        if not chunk.rows:
            send_claim.delete()  # nothing was due: no claim to keep
    if chunk.rows:
        # Outside the claim's transaction, so it never waits on a campaign lock while
        # holding delivery locks. At most every second: it only tells the sweeper "alive".
        Campaign.objects.filter(pk=campaign_id).filter(
            Q(last_claim_at__isnull=True) | Q(last_claim_at__lt=now - timedelta(seconds=1))
        ).update(last_claim_at=now)
    return chunk


_CLAIM_SQL = f"""
    WITH picked AS (
        SELECT id FROM campaigns_delivery
        WHERE campaign_id = %s AND id BETWEEN %s AND %s AND status = 'queued'
          AND (next_attempt_at IS NULL OR next_attempt_at <= %s)
        ORDER BY id LIMIT %s
        FOR UPDATE SKIP LOCKED
    ), d AS (
        UPDATE campaigns_delivery d
        SET status = 'sending', attempts = d.attempts + 1, lease_until = %s,
            claim_id = %s, updated_at = %s
        FROM picked WHERE d.id = picked.id
        RETURNING d.*
    )
    SELECT {SQL_COLUMNS},
           EXISTS (SELECT 1 FROM campaigns_suppression s WHERE s.address = p.address)
    FROM d JOIN incidents_affectedperson p ON p.id = d.person_id
    ORDER BY d.id
"""  # noqa: S608 (constants; values are parameters)


def _claim_postgres(campaign_id, first_id, last_id, limit, send_claim, now) -> Chunk:
    params = [campaign_id, first_id, last_id, now, limit, send_claim.lease_until, send_claim.pk]
    with connection.cursor() as cursor:
        cursor.execute(_CLAIM_SQL, [*params, now])
        found = cursor.fetchall()
    values, suppressed = [], set()
    for *row, is_suppressed in found:
        if isinstance(row[METADATA], str):  # Django leaves jsonb undecoded on its cursors
            row[METADATA] = json.loads(row[METADATA])
        values.append(row)
        if is_suppressed:
            suppressed.add(row[PERSON_ADDRESS])
    return Chunk(send_rows(values), suppressed)


def _claim_sqlite(campaign_id, first_id, last_id, limit, send_claim, now) -> Chunk:
    ids = _claim_ids_sqlite(campaign_id, first_id, last_id, limit, send_claim, now)
    rows = claimed_rows(ids) if ids else []
    addresses = [row.person.address for row in rows]
    suppressed = set(
        Suppression.objects.filter(address__in=addresses).values_list("address", flat=True)
    )
    return Chunk(rows, suppressed)


def _claim_ids_sqlite(
    campaign_id: int, first_id: int, last_id: int, limit: int, send_claim: SendClaim, now
) -> list[int]:
    lease = send_claim.lease_until
    # SQLite: transactions are IMMEDIATE, so nobody writes between the read and the update.
    ids = list(
        Delivery.objects.filter(
            campaign_id=campaign_id,
            id__gte=first_id,
            id__lte=last_id,
            status=Status.QUEUED,
        )
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        .order_by("id")
        .values_list("id", flat=True)[:limit]
    )
    if ids:
        Delivery.objects.filter(id__in=ids, status=Status.QUEUED).update(
            status=Status.SENDING,
            attempts=F("attempts") + 1,
            lease_until=lease,
            claim=send_claim,
            updated_at=now,
        )
    return ids


def hand_over(delivery: Delivery) -> bool:
    """Mark `delivery` handed to the ESP, right before the call; False: do not send it.

    For this worker's claim only: the claim must not be revoked (the sweeper
    revokes a claim whose lease ran out before it queues any of its rows again),
    its lease must hold for at least half its length, so the sweeper cannot
    outrun the ESP call, and the row must lie past everything the claim handed
    over so far (a claim hands its rows over in id order, each once). Of the
    worker and the sweeper exactly one wins the claim: a row is never both sent
    by this worker and queued again.
    """
    return delivery.pk in hand_over_many([delivery])


# One statement a claim, on a row of its own: no delivery row is written (each one written
# again would update every index of the table), only read: every row of the group must
# still be `sending` under this claim (none released, handed back or moved by anyone else).
# PostgreSQL gets the ids as one array, so the text never changes (psycopg converts it from
# its cache); SQLite, a list of placeholders.
_HAND_SQL = """
    UPDATE campaigns_sendclaim SET handed_through = %s
    WHERE id = %s AND revoked_at IS NULL AND lease_until > %s
      AND (handed_through IS NULL OR handed_through < %s)
      AND NOT EXISTS (
          SELECT 1 FROM campaigns_delivery
          WHERE id {ids} AND (status <> 'sending' OR claim_id IS NULL OR claim_id <> %s)
      )
"""


def _ids_by_claim(deliveries: Sequence[Delivery | SendRow]) -> dict[int | None, list[int]]:
    # A job's chunk is one claim, so this is one group in practice.
    groups: dict[int | None, list[int]] = {}
    for delivery in deliveries:
        groups.setdefault(delivery.claim_id, []).append(delivery.pk)
    return groups


def hand_over_many(deliveries: Sequence[Delivery | SendRow]) -> set[int]:
    """`hand_over` for several deliveries at once; the ids that were marked.

    A claim's rows are marked all together or not at all: the claim holds or it
    does not, and the rows given must all lie past what it handed over so far.
    """
    if not deliveries:
        return set()
    margin = timedelta(seconds=settings.SEND_LEASE_SECONDS / 2)
    adapt = connection.ops.adapt_datetimefield_value
    lease_needed = adapt(timezone.now() + margin)
    handed: set[int] = set()
    groups = _ids_by_claim(deliveries)
    # One statement commits by itself (autocommit), durably once it returns. A transaction
    # around it would cost a BEGIN and a COMMIT round trip for each group a worker sends.
    in_one = transaction.atomic() if len(groups) > 1 else nullcontext()
    with in_one, fast_cursor() as cursor:
        for claim_id, ids in groups.items():
            if claim_id is None:
                continue  # not claimed by a worker: nothing to send
            if connection.vendor == "postgresql":
                sql, id_params = _HAND_SQL_PG, [ids]
            else:
                sql, id_params = _HAND_SQL.format(ids=f"IN ({', '.join(['%s'] * len(ids))})"), ids
            params = [max(ids), claim_id, lease_needed, min(ids), *id_params, claim_id]
            cursor.execute(sql, params)
            if cursor.rowcount == 1:
                handed.update(ids)
    return handed


_HAND_SQL_PG = _HAND_SQL.format(ids="= ANY(%b)")  # for db.fast_cursor's binary binding


def handed_over(deliveries: QuerySet[Delivery]) -> QuerySet[Delivery]:
    """Those of `deliveries` that their claim handed to the ESP (its answer may be pending)."""
    return deliveries.filter(claim__handed_through__gte=F("id"))


class _Ask:
    __slots__ = ("begun", "deliveries", "done", "handed")

    def __init__(self, deliveries: Sequence[Delivery | SendRow]):
        self.deliveries, self.handed = deliveries, set()
        self.begun, self.done = threading.Event(), threading.Event()


class HandOver:
    """Group commit for a job's hand-overs: `hand_over_many` semantics, fewer commits.

    A sending thread submits the few rows it is about to send, right before
    their ESP calls, and waits until they are marked (or refused). One writer
    thread marks every group submitted while its previous transaction ran, in
    order, each on its own terms, in one transaction: with N sending threads, up
    to N groups share a WAL flush instead of paying one each. Nothing waits to
    gather a batch. A claim hands its rows over in id order, so the threads
    submit in the order they took their rows (`submit` under the lock they take
    rows with), and wait outside it. `close` ends the thread and its connection.
    """

    def __init__(self, *, rows: int = 512):
        self.rows = rows
        self._queue: queue.SimpleQueue[_Ask | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="hand-over", daemon=True)
        self._thread.start()

    def __call__(self, deliveries: Sequence[Delivery | SendRow]) -> set[int]:
        """The ids of `deliveries` now marked handed over: send those, and only those."""
        return self.wait(self.submit(deliveries))

    def submit(self, deliveries: Sequence[Delivery | SendRow]) -> _Ask:
        ask = _Ask(deliveries)
        if deliveries:
            self._queue.put(ask)
        else:
            ask.begun.set()
            ask.done.set()
        return ask

    def begun(self, ask: _Ask) -> None:
        """Wait until the writer took `ask` up: its statement is about to go out.

        A thread with other work to do meanwhile (building its messages) waits for
        this first, so that the writer gets the GIL to send the statement at once
        instead of after the switch interval.
        """
        while not ask.begun.wait(0.5) and self._thread.is_alive():
            pass

    def wait(self, ask: _Ask) -> set[int]:
        while not ask.done.wait(0.5):
            if not self._thread.is_alive():
                return set()  # not marked: not sent, and the sweeper may queue them again
        return ask.handed

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        try:
            stop = False
            while not stop:
                first = self._queue.get()
                if first is None:
                    return
                batch, rows = [first], len(first.deliveries)
                while rows < self.rows:
                    try:
                        ask = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if ask is None:
                        stop = True
                        break
                    batch.append(ask)
                    rows += len(ask.deliveries)
                for ask in batch:
                    ask.begun.set()
                self._mark(batch)
        finally:
            connections.close_all()  # this thread's own database connection

    def _mark(self, batch: list[_Ask]) -> None:
        try:
            with transaction.atomic() if len(batch) > 1 else nullcontext():
                handed = [hand_over_many(ask.deliveries) for ask in batch]
        except Exception:
            # Not known to be marked, so not sent. Had the commit gone through anyway,
            # the rows stay `sending` and handed: the sweeper makes them uncertain, never
            # sends them twice. A fresh connection for the next batch.
            log.exception("hand-over of %d groups failed", len(batch))
            handed = [set() for _ in batch]
            connections.close_all()
        for ask, marked in zip(batch, handed, strict=True):
            ask.handed = marked
            ask.done.set()


def hand_back(
    deliveries: Sequence[Delivery | SendRow], *, not_before: datetime | None = None
) -> int:
    """Rows this worker marked handed over but never gave to the ESP go back to the queue.

    Only the worker that marked them knows no ESP call was made (it stopped
    first: a pause, a 429), so only its own claim may undo the marker: the row
    must still be `sending` under that claim.
    """
    returned = 0
    for claim_id, ids in _ids_by_claim(deliveries).items():
        returned += Delivery.objects.filter(
            pk__in=ids, status=Status.SENDING, claim_id=claim_id
        ).update(
            status=Status.QUEUED,
            attempts=F("attempts") - 1,
            lease_until=None,
            next_attempt_at=not_before,
            updated_at=timezone.now(),
        )
    return returned


def release(
    ids: list[int], *, lease: datetime | None = None, not_before: datetime | None = None
) -> int:
    """Claimed rows that were never handed to the ESP go back to the queue, attempt uncounted.

    Never a handed row (at or below its claim's `handed_through`): only the ESP's
    answer (or the sweeper, without one) decides what that row becomes. With
    `lease`, only rows still under the claim that set it (a worker releases its
    own rows, not rows the sweeper took back and another job claimed since).
    """
    if not ids:
        return 0
    rows = Delivery.objects.filter(id__in=ids, status=Status.SENDING, claim__isnull=False).filter(
        Q(claim__handed_through__isnull=True) | Q(claim__handed_through__lt=F("id"))
    )
    if lease is not None:
        rows = rows.filter(lease_until=lease)
    return rows.update(
        status=Status.QUEUED,
        attempts=F("attempts") - 1,
        lease_until=None,
        next_attempt_at=not_before,
        updated_at=timezone.now(),
    )
