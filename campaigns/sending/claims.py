"""Claiming deliveries in the database: id ranges for jobs, conditional claims, hand-overs,
releases.

A delivery's life in a worker is three conditional UPDATEs: `claim` (queued →
sending, with a lease), `hand_over` (the marker set right before the ESP call,
for this claim only) and the answer's record. Each one acts only when the row
is still in the state the previous one left, so a worker that lost a row (to
the sweeper, after its lease ran out) can no longer send or release it.
"""

import logging
import queue
import threading
from collections.abc import Sequence
from contextlib import nullcontext
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, connections, transaction
from django.db.models import Q
from django.utils import timezone

from campaigns.models import Campaign, Delivery
from campaigns.sending.rows import SendRow

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
    now = timezone.now()
    lease = now + timedelta(seconds=settings.SEND_LEASE_SECONDS)
    if connection.vendor == "postgresql":
        sql = """
            WITH picked AS (
                SELECT id FROM campaigns_delivery
                WHERE campaign_id = %s AND id BETWEEN %s AND %s AND status = 'queued'
                  AND (next_attempt_at IS NULL OR next_attempt_at <= %s)
                ORDER BY id LIMIT %s
                FOR UPDATE SKIP LOCKED
            )
            UPDATE campaigns_delivery d
            SET status = 'sending', attempts = d.attempts + 1, lease_until = %s,
                handed_at = NULL, updated_at = %s
            FROM picked WHERE d.id = picked.id
            RETURNING d.id
        """
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, [campaign_id, first_id, last_id, now, limit, lease, now])
            ids = sorted(row[0] for row in cursor.fetchall())
    else:
        # SQLite: transactions are IMMEDIATE, so nobody writes between the read and the update.
        with transaction.atomic():
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
                from django.db.models import F

                Delivery.objects.filter(id__in=ids, status=Status.QUEUED).update(
                    status=Status.SENDING,
                    attempts=F("attempts") + 1,
                    lease_until=lease,
                    handed_at=None,
                    updated_at=now,
                )
    if ids:
        # Outside the claim's transaction, so it never waits on a campaign lock while
        # holding delivery locks. At most every second: it only tells the sweeper "alive".
        Campaign.objects.filter(pk=campaign_id).filter(
            Q(last_claim_at__isnull=True) | Q(last_claim_at__lt=now - timedelta(seconds=1))
        ).update(last_claim_at=now)
    return ids


def hand_over(delivery: Delivery) -> bool:
    """Mark `delivery` handed to the ESP, right before the call; False: do not send it.

    One conditional UPDATE, for this worker's claim only: the row must still be
    `sending` under the lease this worker claimed it with (a re-claim sets a new
    lease), not handed yet, and the lease must hold for at least half its length,
    so the sweeper cannot outrun the ESP call. The sweeper queues expired rows
    again only while they have no `handed_at`, by an UPDATE conditional on that:
    so of the two, exactly one wins the row, and a row is never both sent by
    this worker and queued again.
    """
    return delivery.pk in hand_over_many([delivery])


# Many hand-overs in one statement and one commit: the same conditions as `hand_over`, for
# rows that share one lease (a claim sets one lease on every row it takes).
# PostgreSQL gets the ids as one array, so the statement's text never changes (psycopg
# converts it from its cache); SQLite, a list of placeholders.
# `status || ''` keeps PostgreSQL on the primary key: with a plain `status = 'sending'` it
# may take the in-flight index (lease_until, of `sending` rows) and read every row under
# this lease, the whole chunk of up to 2,000, for each group of 32 (docs/performance.md,
# session 9).
_HAND_SQL = """
    UPDATE campaigns_delivery SET handed_at = %s
    WHERE id {ids} AND status || '' = 'sending' AND handed_at IS NULL
      AND lease_until = %s AND lease_until > %s
    RETURNING id
"""  # noqa: S608 (constants; values are parameters)


def _ids_by_lease(deliveries: Sequence[Delivery | SendRow]) -> dict[datetime, list[int]]:
    # One claim sets one lease on all its rows, so this is one group in practice.
    groups: dict[datetime, list[int]] = {}
    for delivery in deliveries:
        groups.setdefault(delivery.lease_until, []).append(delivery.pk)
    return groups


def hand_over_many(deliveries: Sequence[Delivery | SendRow]) -> set[int]:
    """`hand_over` for several deliveries at once; the ids that were marked."""
    if not deliveries:
        return set()
    now = timezone.now()
    margin = timedelta(seconds=settings.SEND_LEASE_SECONDS / 2)
    adapt = connection.ops.adapt_datetimefield_value
    handed: set[int] = set()
    groups = _ids_by_lease(deliveries)
    # One statement commits by itself (autocommit), durably once it returns. A transaction
    # around it would cost a BEGIN and a COMMIT round trip for each group a worker sends.
    in_one = transaction.atomic() if len(groups) > 1 else nullcontext()
    with in_one, connection.cursor() as cursor:
        for lease, ids in groups.items():
            if connection.vendor == "postgresql":
                sql, id_params = _HAND_SQL.format(ids="= ANY(%s)"), [ids]
            else:
                sql, id_params = _HAND_SQL.format(ids=f"IN ({', '.join(['%s'] * len(ids))})"), ids
            cursor.execute(sql, [adapt(now), *id_params, adapt(lease), adapt(now + margin)])
            handed.update(found for (found,) in cursor.fetchall())
    return handed


class _Ask:
    __slots__ = ("deliveries", "done", "handed")

    def __init__(self, deliveries: Sequence[Delivery | SendRow]):
        self.deliveries, self.done, self.handed = deliveries, threading.Event(), set()


class HandOver:
    """Group commit for a job's hand-overs: `hand_over_many` semantics, fewer commits.

    A sending thread calls it with the few rows it is about to send, right
    before their ESP calls, and waits until their markers are committed (or
    refused). One writer thread marks every row asked for while its previous
    statement ran, in one transaction: with N sending threads, up to N asks
    share a WAL flush instead of paying one each. Nothing waits to gather a
    batch. `close` ends the thread and its database connection.
    """

    def __init__(self, *, rows: int = 512):
        self.rows = rows
        self._queue: queue.SimpleQueue[_Ask | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="hand-over", daemon=True)
        self._thread.start()

    def __call__(self, deliveries: Sequence[Delivery | SendRow]) -> set[int]:
        """The ids of `deliveries` now marked handed over: send those, and only those."""
        if not deliveries:
            return set()
        ask = _Ask(deliveries)
        self._queue.put(ask)
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
                try:
                    handed = hand_over_many([d for ask in batch for d in ask.deliveries])
                except Exception:
                    # Not known to be marked, so not sent. Had the commit gone through
                    # anyway, the rows stay `sending` and handed: the sweeper makes them
                    # uncertain, never sent twice. A fresh connection for the next batch.
                    log.exception("hand-over of %d deliveries failed", rows)
                    handed = set()
                    connections.close_all()
                for ask in batch:
                    ask.handed = {d.pk for d in ask.deliveries if d.pk in handed}
                    ask.done.set()
        finally:
            connections.close_all()  # this thread's own database connection


def hand_back(
    deliveries: Sequence[Delivery | SendRow], *, not_before: datetime | None = None
) -> int:
    """Rows this worker marked handed over but never gave to the ESP go back to the queue.

    Only the worker that marked them knows no ESP call was made (it stopped
    first: a pause, a 429), so only its own claim may undo the marker: the row
    must still be `sending` under the lease that claim set.
    """
    from django.db.models import F

    returned = 0
    for lease, ids in _ids_by_lease(deliveries).items():
        returned += Delivery.objects.filter(
            pk__in=ids, status=Status.SENDING, lease_until=lease
        ).update(
            status=Status.QUEUED,
            attempts=F("attempts") - 1,
            lease_until=None,
            handed_at=None,
            next_attempt_at=not_before,
            updated_at=timezone.now(),
        )
    return returned


def release(
    ids: list[int], *, lease: datetime | None = None, not_before: datetime | None = None
) -> int:
    """Claimed rows that were never handed to the ESP go back to the queue, attempt uncounted.

    Never a handed row: once `handed_at` is set, only the ESP's answer (or the
    sweeper, without one) decides what the row becomes. With `lease`, only rows
    still under the claim that set it (a worker releases its own rows, not rows
    the sweeper took back and another job claimed since).
    """
    if not ids:
        return 0
    from django.db.models import F

    rows = Delivery.objects.filter(id__in=ids, status=Status.SENDING, handed_at__isnull=True)
    if lease is not None:
        rows = rows.filter(lease_until=lease)
    return rows.update(
        status=Status.QUEUED,
        attempts=F("attempts") - 1,
        lease_until=None,
        next_attempt_at=not_before,
        updated_at=timezone.now(),
    )
