"""Recording ESP answers in batches: one writer thread, one UPDATE for many deliveries.

The sending threads hand each answer to a `Recorder` and go on to the next
message; the recorder's own thread writes what has gathered in one
`UPDATE … FROM` (PostgreSQL: unnest of one array a column; SQLite: a VALUES
list) every RECORD_SECONDS or RECORD_ROWS answers, whichever comes first, and while one write runs the
next batch gathers. One commit per batch instead of one per message is most of
what a worker saves: at a thousand messages a second, per-message commits keep
the database busier than the ESP calls keep the worker.

Safety is the same as writing each answer at once:

- Each row is written only if it is still `sending` under the claim that sent
  it (its lease), or for `sent` also `uncertain` (the sweeper gave up on it just before; the answer is the
  evidence). What the sweeper or a person did meanwhile is never overwritten.
- Until its batch commits, a row stays `sending` with its lease. A worker
  killed between the ESP's answer and the commit leaves it exactly as one
  killed during the ESP call: the sweeper marks it `sent` when there is
  evidence, else `uncertain`, and the machine never sends it again.
- A batch that cannot be written (the database is gone) is tried three times;
  then the recorder gives up, tells the job to stop sending, and leaves its
  rows `sending` for the sweeper.
"""

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

from django.db import connection, connections, transaction

from campaigns.models import Delivery
from campaigns.sending.db import fast_cursor
from campaigns.sending.outcomes import Change
from campaigns.sending.rows import SendRow
from incidents import audit
from incidents.actors import Actor

log = logging.getLogger(__name__)

SENDER = Actor.system("sender")
Status = Delivery.Status

RECORD_ROWS = 500  # at most this many answers in one statement
RECORD_SECONDS = 0.1  # the longest an answer waits for others before it is written
_WRITE_TRIES = 3

_COLUMNS = "id, status, error, message_id, next_attempt_at, attempts_delta, at, lease_until"
# PostgreSQL: one array a column, so the statement's text is the same for any number of rows
# (psycopg converts a statement it has seen from its cache; a VALUES list of 4,000
# placeholders it parsed anew every time, a tenth of a sending worker's CPU). The arrays go
# as binary parameters (%b) of db.fast_cursor.
_PG_ROWS = (
    "SELECT * FROM unnest(%b::bigint[], %b::varchar[], %b::text[], %b::varchar[], "
    "%b::timestamptz[], %b::integer[], %b::timestamptz[], %b::timestamptz[])"
)
_SQLITE_ROW = "(%s, %s, %s, %s, %s, %s, %s, %s)"
_D = "campaigns_delivery"
_SQL = f"""
    WITH v ({_COLUMNS}) AS ({{rows}})
    UPDATE {_D} SET
        status = v.status,
        attempts = {_D}.attempts + v.attempts_delta,
        esp_message_id = CASE WHEN v.status = '{Status.SENT}' THEN v.message_id
                              ELSE {_D}.esp_message_id END,
        sent_at = CASE WHEN v.status = '{Status.SENT}' THEN v.at ELSE {_D}.sent_at END,
        next_attempt_at = CASE WHEN v.status IN ('{Status.SENT}', '{Status.QUEUED}')
                               THEN v.next_attempt_at ELSE {_D}.next_attempt_at END,
        lease_until = NULL,
        error = v.error,
        updated_at = v.at
    FROM v
    WHERE {_D}.id = v.id
      AND (({_D}.status = '{Status.SENDING}'
            AND (v.lease_until IS NULL OR {_D}.lease_until = v.lease_until))
           OR (v.status = '{Status.SENT}' AND {_D}.status = '{Status.UNCERTAIN}'))
    RETURNING {_D}.id
"""  # noqa: S608 (constants; values are parameters)
_SQL_PG = _SQL.format(rows=_PG_ROWS)


def write(changes: Sequence[Change]) -> set[int]:
    """Apply `changes` (RECORD_ROWS to a statement); the ids of the rows that changed.

    A row whose status is no longer the one the change expects is left as it is.
    """
    applied: set[int] = set()
    adapt = connection.ops.adapt_datetimefield_value
    for start in range(0, len(changes), RECORD_ROWS):
        part = changes[start : start + RECORD_ROWS]
        values = [
            (
                change.delivery_id,
                change.status,
                change.error,
                change.message_id,
                adapt(change.next_attempt_at),
                change.attempts_delta,
                adapt(change.at),
                adapt(change.lease_until),
            )
            for change in part
        ]
        if connection.vendor == "postgresql":
            sql, params = _SQL_PG, [list(column) for column in zip(*values, strict=True)]
        else:
            rows = "VALUES " + ", ".join([_SQLITE_ROW] * len(part))
            sql, params = _SQL.format(rows=rows), [value for row in values for value in row]
        with fast_cursor() as cursor:
            cursor.execute(sql, params)
            applied.update(found for (found,) in cursor.fetchall())
    return applied


def write_and_audit(
    batch: Sequence[tuple[Change, Delivery | SendRow]], *, campaign_id: int, incident
) -> set[int]:
    """`write`, and an audit entry for each delivery that became uncertain, in one transaction."""
    with transaction.atomic():
        applied = write([change for change, _ in batch])
        for change, delivery in batch:
            if change.status == Status.UNCERTAIN and change.delivery_id in applied:
                audit.record(
                    by=SENDER,
                    action="delivery.uncertain",
                    # A sending job's row (campaigns.sending.rows), not a model instance.
                    object_type=Delivery._meta.label_lower,
                    object_id=str(delivery.pk),
                    object_repr=str(delivery),
                    incident=incident,
                    after={"campaign": campaign_id, "reason": change.error},
                )
    return applied


class Recorder:
    """A writer thread that records the answers of one job's sending threads in batches.

    `put` never touches the database. `flush` waits until everything put
    before it is committed; `close` flushes and ends the thread (and its
    database connection).
    """

    def __init__(
        self,
        *,
        campaign_id: int,
        incident,
        on_failure: Callable[[], None] | None = None,
        rows: int = RECORD_ROWS,
        seconds: float = RECORD_SECONDS,
    ):
        self.campaign_id, self.incident = campaign_id, incident
        self.rows, self.seconds = rows, seconds
        self.on_failure = on_failure
        self.failed = False
        self.written = 0  # answers handed to the database (applied or not)
        self.batches = 0
        # Sending threads append here and go on: no lock, no wake-up per answer (waking
        # this thread for every answer cost more CPU than writing it). The writer looks
        # every `seconds`, or at once when `rows` have gathered or someone flushes.
        self._items: deque = deque()
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(
            target=self._run, name=f"recorder-{campaign_id}", daemon=True
        )
        self._thread.start()

    def put(self, change: Change, delivery: Delivery | SendRow) -> None:
        self._items.append((change, delivery))
        if len(self._items) >= self.rows:
            self._wake.set()

    def flush(self) -> bool:
        """Wait until every answer put so far is committed. False when the recorder gave up."""
        done = threading.Event()
        self._items.append(done)
        self._wake.set()
        while not done.wait(0.5):
            if not self._thread.is_alive():
                return False
        return not self.failed

    def close(self) -> bool:
        ok = self.flush()
        self._stopping = True
        self._wake.set()
        self._thread.join()
        return ok

    # -- the writer thread --
    def _run(self) -> None:
        try:
            while True:
                self._wake.wait(self.seconds)
                self._wake.clear()
                stopping = self._stopping  # read before draining: nothing is put after it
                batch, barriers = [], []
                while self._items:
                    item = self._items.popleft()
                    (barriers if isinstance(item, threading.Event) else batch).append(item)
                if batch:
                    self._write(batch)
                for barrier in barriers:
                    barrier.set()
                if stopping:
                    return
        finally:
            connections.close_all()  # this thread's own database connection

    def _write(self, batch: list) -> None:
        if self.failed:
            return  # rows stay `sending`: the sweeper decides about them
        for attempt in range(_WRITE_TRIES):
            try:
                write_and_audit(batch, campaign_id=self.campaign_id, incident=self.incident)
            except Exception:
                log.exception(
                    "campaign %s: recording %d answers failed (try %d of %d)",
                    self.campaign_id,
                    len(batch),
                    attempt + 1,
                    _WRITE_TRIES,
                )
                connection.close()  # a broken connection is opened afresh on the next try
                time.sleep(0.2 * 2**attempt)
                continue
            self.written += len(batch)
            self.batches += 1
            return
        self.failed = True
        if self.on_failure is not None:
            self.on_failure()
