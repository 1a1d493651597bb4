"""Taking events in: fast, and nothing twice.

anymail parses a webhook request and sends one signal per event. While a
request is being handled (webhook_urls wraps every tracking view in
`collecting()`), the signal receiver only appends rows to the request's batch;
after the view, `events_store` writes the whole batch in ONE INSERT that skips
keys already stored (ON CONFLICT DO NOTHING), then queues the apply job. If
the insert fails the ESP gets a 500 and sends the batch again: events already
stored are skipped by their key, events already applied by `applied_at`.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from anymail.signals import AnymailTrackingEvent
from django.utils import timezone

from campaigns.models import DeliveryEvent
from campaigns.tracking.bulk import bulk_insert
from campaigns.tracking.normalise import to_row

_batch: ContextVar[list[DeliveryEvent] | None] = ContextVar("tracking_batch", default=None)


@contextmanager
def collecting() -> Iterator[list[DeliveryEvent]]:
    """Within the block, tracking signals add their rows to the yielded list, unsaved."""
    rows: list[DeliveryEvent] = []
    token = _batch.set(rows)
    try:
        yield rows
    finally:
        _batch.reset(token)


def events_store(*, rows: list[DeliveryEvent]) -> None:
    """Store `rows` in one INSERT, skipping keys already stored; queue the apply job.

    Raises on a database error, so the webhook answers 500 and the ESP retries.
    """
    if not rows:
        return
    from campaigns.jobs import enqueue_apply

    bulk_insert(DeliveryEvent, rows, conflict="event_key")
    enqueue_apply()


def events_ingest(*, events: list[AnymailTrackingEvent], esp_name: str) -> None:
    """Store anymail events that did not come through a webhook view (the sandbox)."""
    now = timezone.now()
    events_store(rows=[to_row(event, esp_name, received_at=now) for event in events])


def on_tracking(sender, event, esp_name, **kwargs) -> None:
    """anymail's tracking signal receiver: a row for the request's batch, nothing more."""
    row = to_row(event, esp_name, received_at=timezone.now())
    batch = _batch.get()
    if batch is not None:
        batch.append(row)
    else:  # a signal sent outside a webhook view: store it on its own
        events_store(rows=[row])
