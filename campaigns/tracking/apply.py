"""The apply job: stored events → deliveries, contact statuses, suppressions, the send log.

Events are taken in chunks (TRACKING_APPLY_CHUNK), each in one transaction
with a few queries: lock the chunk's unapplied events (SKIP LOCKED, so several
workers share the work), lock their deliveries in id order, work out every
change in memory (rules.py), then write deliveries, people, contact records,
events and audit entries in bulk, and stamp each event's `applied_at` and
outcome. A chunk that fails rolls back whole; its events are then tried one
at a time, so one bad event cannot hold the others back.
"""

import logging
from collections import Counter, defaultdict

from anymail.signals import EventType
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from campaigns.models import Campaign, Delivery, DeliveryEvent, Suppression
from campaigns.tracking.bulk import bulk_set
from campaigns.tracking.contact import ContactChange, contact_from_deliveries
from campaigns.tracking.normalise import clean_message_id
from campaigns.tracking.rules import Policy, Track, apply_event
from incidents import audit
from incidents.actors import Actor
from incidents.addresses import InvalidAddress, normalise
from incidents.models import Incident

log = logging.getLogger(__name__)
TRACKER = Actor.system("tracking")
Outcome = DeliveryEvent.Outcome

# anymail's event type → the send log's "latest status" (for mail that is not ours).
SENDLOG_STATUS = {
    EventType.SENT: "sent",
    EventType.DELIVERED: "delivered",
    EventType.DEFERRED: "deferred",
    EventType.BOUNCED: "bounced",
    EventType.REJECTED: "rejected",
    EventType.FAILED: "failed",
    EventType.COMPLAINED: "complained",
    EventType.OPENED: "opened",
    EventType.CLICKED: "clicked",
    EventType.UNSUBSCRIBED: "unsubscribed",
}
_TRACK_FIELDS = [
    "status",
    "esp_message_id",
    "last_event_at",
    "bounce_kind",
    "delivered_at",
    "sent_at",
    "opened",
    "clicked",
    "soft_bounces",
    "next_attempt_at",
    "error",
]


def policy() -> Policy:
    return Policy(
        soft_bounce_retries=settings.SOFT_BOUNCE_RETRIES,
        retry_delay_seconds=settings.SOFT_BOUNCE_RETRY_DELAY_SECONDS,
        deferral_retry=settings.DEFERRAL_RETRY,
    )


def apply_pending(*, chunk: int | None = None) -> dict:
    """Apply every stored event not applied yet. Returns counts of outcomes, for logs and tests."""
    chunk = chunk or settings.TRACKING_APPLY_CHUNK
    report: Counter = Counter()
    failing: set[int] = set()
    while True:
        try:
            with transaction.atomic():
                events = _claim(chunk, failing)
                if events:
                    _apply(events, report)
            if len(events) < chunk:
                # Drained. Events stored from now on queue a job of their own, which
                # gathers them first: chasing them one by one here would pay a chunk's
                # fixed cost for every few events.
                break
        except Exception:
            log.exception("Applying a chunk of events failed; trying them one at a time")
            ids = list(_pending(failing).values_list("pk", flat=True)[:chunk])
            for pk in ids:
                try:
                    with transaction.atomic():
                        _apply(_claim(1, failing, pk=pk), report)
                except Exception:
                    log.exception("Event %s could not be applied; it stays pending", pk)
                    failing.add(pk)
                    report["failed"] += 1
    return dict(report)


def _pending(failing: set[int]):
    return DeliveryEvent.objects.filter(applied_at__isnull=True).exclude(pk__in=failing)


def _claim(limit: int, failing: set[int], pk: int | None = None) -> list[DeliveryEvent]:
    rows = _pending(failing)
    if pk is not None:
        rows = rows.filter(pk=pk)
    return list(
        rows.select_for_update(skip_locked=True).defer("raw").order_by("received_at", "id")[:limit]
    )


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _match(events: list[DeliveryEvent]) -> dict[int, Delivery]:
    """Event id → its delivery, locked: by the delivery id in the metadata, else by message id.

    The metadata's delivery id counts only with the incident reference we sent
    beside it, so another system's "delivery_id" metadata cannot claim our rows.
    """
    ids = {i for e in events if (i := _int((e.metadata or {}).get("delivery_id")))}
    message_ids = {e.message_id for e in events if e.message_id}
    wanted = message_ids | {f"<{m}>" for m in message_ids}
    deliveries = {
        d.pk: d
        for d in Delivery.objects.select_for_update()
        .filter(Q(pk__in=ids) | Q(esp_message_id__in=wanted))
        .order_by("pk")
        .only("pk", "campaign_id", "incident_id", "person_id", *_TRACK_FIELDS)
    }
    references = dict(
        Incident.objects.filter(pk__in={d.incident_id for d in deliveries.values()}).values_list(
            "pk", "reference"
        )
    )
    by_message = {clean_message_id(d.esp_message_id): d for d in deliveries.values()}
    by_message.pop("", None)
    matched = {}
    for event in events:
        meta = event.metadata or {}
        delivery = deliveries.get(_int(meta.get("delivery_id")) or 0)
        if delivery is None or references.get(delivery.incident_id) != meta.get("incident"):
            delivery = by_message.get(event.message_id)
        if delivery is not None:
            matched[event.pk] = delivery
    return matched


def _apply(events: list[DeliveryEvent], report: Counter) -> None:
    if not events:
        return
    now = timezone.now()
    matched = _match(events)
    cancelled = set(
        Campaign.objects.filter(
            pk__in={d.campaign_id for d in matched.values()}, status=Campaign.Status.CANCELLED
        ).values_list("pk", flat=True)
    )
    rules, no_retry = policy(), Policy(0, 0, False)
    tracks: dict[int, Track] = {}
    per_delivery: dict[int, list[DeliveryEvent]] = defaultdict(list)
    for event in events:
        if (delivery := matched.get(event.pk)) is not None:
            per_delivery[delivery.pk].append(event)
    outcomes: dict[int, str] = {}
    for delivery_id, its_events in per_delivery.items():
        delivery = matched[its_events[0].pk]
        track = Track(**{name: getattr(delivery, name) for name in _TRACK_FIELDS})
        tracks[delivery_id] = track
        for event in sorted(its_events, key=lambda e: (e.occurred_at or e.received_at, e.pk)):
            outcomes[event.pk] = apply_event(
                track,
                event_type=event.event_type,
                occurred_at=event.occurred_at or event.received_at,
                message_id=event.message_id,
                bounce_kind=event.bounce_kind,
                reason=(event.description or event.mta_response or "")[:500],
                policy=no_retry if delivery.campaign_id in cancelled else rules,
                now=now,
            )
    deliveries = {d.pk: d for d in matched.values()}
    _write_deliveries(deliveries, tracks, now)
    contact = contact_from_deliveries(changes=_contact_changes(deliveries, tracks), now=now)
    _reopen_campaigns(deliveries, tracks)
    _suppress(events, matched)
    event_rows = []
    for event in events:
        delivery = matched.get(event.pk)
        outcome = _to_send_log(event) if delivery is None else outcomes[event.pk]
        report[outcome] += 1
        event_rows.append(
            {
                "pk": event.pk,
                "applied_at": now,
                "outcome": outcome,
                "delivery": delivery.pk if delivery else None,
                "incident": delivery.incident_id if delivery else None,
            }
        )
    bulk_set(DeliveryEvent, event_rows, ["applied_at", "outcome", "delivery", "incident"])
    _audit(events, matched, deliveries, tracks, contact, outcomes)


def _write_deliveries(deliveries: dict[int, Delivery], tracks: dict[int, Track], now) -> None:
    # A row an event moved out of `sending` loses its lease (the worker's answer, if it
    # comes, finds the row no longer `sending` and changes nothing). A flag on a row
    # still `sending` keeps it: the sweeper relies on the lease.
    moved, rest = [], []
    for pk, track in tracks.items():
        if not track.changed:
            continue
        row = {"pk": pk, "updated_at": now, "lease_until": None}
        row.update({name: getattr(track, name) for name in _TRACK_FIELDS})
        left = deliveries[pk].status == Delivery.Status.SENDING != track.status
        (moved if left else rest).append(row)
    bulk_set(Delivery, moved, [*_TRACK_FIELDS, "updated_at", "lease_until"])
    bulk_set(Delivery, rest, [*_TRACK_FIELDS, "updated_at"])


def _contact_changes(deliveries: dict[int, Delivery], tracks: dict[int, Track]):
    for pk, track in tracks.items():
        delivery = deliveries[pk]
        for kind, at, note in track.effects:
            if kind in ("delivered", "unreachable"):
                yield ContactChange(
                    person_id=delivery.person_id,
                    incident_id=delivery.incident_id,
                    delivery_id=pk,
                    kind=kind,
                    at=at,
                    note=note,
                )


def _reopen_campaigns(deliveries: dict[int, Delivery], tracks: dict[int, Track]) -> None:
    """A retried delivery is queued again: its completed campaign runs again (the sweeper sends)."""
    campaigns = {
        deliveries[pk].campaign_id
        for pk, t in tracks.items()
        if t.status == Delivery.Status.QUEUED and any(k == "retry" for k, _, _ in t.effects)
    }
    if campaigns:
        # Conditional, as the worker's moves are: COMPLETED → RUNNING (CAMPAIGN_TRANSITIONS).
        Campaign.objects.filter(pk__in=campaigns, status=Campaign.Status.COMPLETED).update(
            status=Campaign.Status.RUNNING, finished_at=None
        )


def _suppression_reason(event: DeliveryEvent) -> str | None:
    if event.event_type == EventType.BOUNCED and event.bounce_kind == "hard":
        return Suppression.Reason.HARD_BOUNCE
    if event.event_type == EventType.COMPLAINED:
        return Suppression.Reason.COMPLAINT
    if event.event_type == EventType.UNSUBSCRIBED:
        return Suppression.Reason.UNSUBSCRIBED
    return None


def _suppress(events: list[DeliveryEvent], matched: dict[int, Delivery]) -> None:
    from campaigns import services as campaign_services

    wanted: dict[str, DeliveryEvent] = {}
    for event in events:
        if _suppression_reason(event) is None:
            continue
        raw = matched[event.pk].address if event.pk in matched else event.recipient
        try:
            wanted.setdefault(normalise(raw), event)
        except InvalidAddress:
            continue
    if not wanted:
        return
    known = set(Suppression.objects.filter(address__in=wanted).values_list("address", flat=True))
    for address, event in wanted.items():
        if address in known:
            continue
        campaign_services.suppression_add(
            address=address,
            reason=_suppression_reason(event),
            source=Suppression.Source.WEBHOOK,
            note=f"{event.esp} {event.event_type}: {(event.description or '')[:200]}",
            by=Actor.system(f"webhook:{event.esp.lower().replace(' ', '_')}"),
        )


def _to_send_log(event: DeliveryEvent) -> str:
    """Mail that is not one of our deliveries: the company's send log takes it, as before."""
    from incidents.services import sendlog_record_event
    from incidents.services.sendlog import RowError

    status = SENDLOG_STATUS.get(event.event_type)
    if status is None or not event.message_id or not event.recipient:
        return Outcome.IGNORED
    try:
        with transaction.atomic():
            sendlog_record_event(
                message_id=event.message_id,
                recipient=event.recipient,
                status=status,
                timestamp=event.occurred_at or event.received_at,
                tags=event.tags or [],
                metadata=event.metadata or {},
                esp=event.esp,
            )
    except RowError as exc:
        log.warning("Unusable %s event %s for the send log: %s", event.esp, event.pk, exc)
    return Outcome.UNMATCHED


def _audit(events, matched, deliveries, tracks, contact, outcomes) -> None:
    per_incident: dict[int, dict] = {}
    for event in events:
        delivery = matched.get(event.pk)
        if delivery is None:
            continue
        entry = per_incident.setdefault(
            delivery.incident_id, {"events": Counter(), "deliveries": Counter(), "retried": []}
        )
        entry["events"][outcomes[event.pk]] += 1
    for pk, track in tracks.items():
        delivery = deliveries[pk]
        entry = per_incident[delivery.incident_id]
        if track.status != delivery.status:
            entry["deliveries"][track.status] += 1
        for kind, _, reason in track.effects:
            if kind == "retry":
                entry["retried"].append(pk)
                audit.record(
                    by=TRACKER,
                    action="delivery.soft_bounce_retried",
                    obj=delivery,
                    incident=Incident(pk=delivery.incident_id),
                    after={
                        "retry": track.soft_bounces,
                        "of": settings.SOFT_BOUNCE_RETRIES,
                        "not_before": track.next_attempt_at,
                        "reason": reason[:300],
                    },
                )
    for incident_id, entry in per_incident.items():
        people = contact.get(incident_id, {})
        audit.record(
            by=TRACKER,
            action="tracking.events_applied",
            object_type=DeliveryEvent._meta.label_lower,
            incident=Incident(pk=incident_id),
            after={
                "events": dict(entry["events"]),
                "deliveries_now": dict(entry["deliveries"]),
                "retried": entry["retried"],
                "contacted": people.get("contacted", []),
                "unreachable": people.get("unreachable", []),
            },
        )
