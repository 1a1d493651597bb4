"""The contact ledger on databases without COPY (the embedded SQLite): chunked reads.

The same columns and the same text as the PostgreSQL statement in ledger.py:
people 2,000 at a time, and for each chunk one query each for their
deliveries, events and contact records.
"""

from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC

from campaigns.models import Delivery, DeliveryEvent
from incidents.export.files import iso
from incidents.models import AffectedPerson, ContactRecord, Incident

CHUNK = 2000
SEPARATOR = "; "

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
_DELIVERY_FIELDS = [
    "id",
    "person_id",
    "campaign_id",
    "campaign__version_id",
    "campaign__content_hash",
    "status",
    "attempts",
    "resend",
    "esp_message_id",
    "sent_at",
    "delivered_at",
    "bounce_kind",
    "error",
    "address",
]


def pg_text(value) -> str | None:
    """A timestamp as PostgreSQL prints a timestamptz in UTC: '2026-11-28 09:00:00.5+00'."""
    if value is None:
        return None
    value = value.astimezone(UTC)
    fraction = f".{value.microsecond:06d}".rstrip("0") if value.microsecond else ""
    return f"{value:%Y-%m-%d %H:%M:%S}{fraction}+00"


def _error(d: dict, pii: bool) -> str:
    return d["error"] if pii else d["error"].replace(d["address"], "[address]")


def _resend(d: dict, pii: bool) -> dict:
    item = {
        "delivery": d["id"],
        "campaign": d["campaign_id"],
        "version": d["campaign__version_id"],
        "content_hash": d["campaign__content_hash"],
        "status": d["status"],
        "attempts": d["attempts"],
        "esp_message_id": d["esp_message_id"],
        "sent_at": iso(d["sent_at"]) or None,
        "delivered_at": iso(d["delivered_at"]) or None,
        "bounce_kind": d["bounce_kind"],
        "error": _error(d, pii),
    }
    if pii:
        item["address"] = d["address"]
    return item


def _event_text(e: dict) -> str:
    text = f"{e['event_type']} {pg_text(e['occurred_at']) or 'unknown time'} {e['outcome']}"
    return f"{text} {e['bounce_kind']}" if e["bounce_kind"] else text


def _history_text(r: dict) -> str:
    method = f" {r['method']}" if r["method"] else ""
    return f"{r['status']}{method} {pg_text(r['recorded_at'])} {r['recorded_by_label']}"


def _related(incident: Incident, ids: list[int]):
    primary, resends = {}, defaultdict(list)
    person_of = {}
    deliveries = Delivery.objects.filter(incident=incident, person_id__in=ids).order_by("id")
    for d in deliveries.values(*_DELIVERY_FIELDS):
        person_of[d["id"]] = d["person_id"]
        if d["resend"]:
            resends[d["person_id"]].append(d)
        else:
            primary[d["person_id"]] = d
    events = defaultdict(list)
    if person_of:
        found = DeliveryEvent.objects.filter(delivery_id__in=list(person_of)).order_by(
            "occurred_at", "id"
        )
        for e in found.values("delivery_id", "event_type", "occurred_at", "outcome", "bounce_kind"):
            events[person_of[e["delivery_id"]]].append(_event_text(e))
    history = defaultdict(list)
    records = ContactRecord.objects.filter(incident=incident, person_id__in=ids)
    for r in records.order_by("recorded_at", "id").values(
        "person_id", "status", "method", "recorded_at", "recorded_by_label"
    ):
        history[r["person_id"]].append(_history_text(r))
    return primary, resends, events, history


def rows(incident: Incident, *, names: list[str], pii: bool, person_ref, on_chunk) -> Iterator:
    """The ledger's rows as lists of values in the order of `names`."""
    last, done = 0, 0
    people = AffectedPerson.objects.filter(incident=incident).order_by("id")
    while chunk := list(people.filter(id__gt=last).values(*_PERSON_FIELDS)[:CHUNK]):
        ids = [p["id"] for p in chunk]
        primary, resends, events, history = _related(incident, ids)
        for p in chunk:
            d = primary.get(p["id"]) or {}
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
                "first_sent_at": pg_text(p["first_sent_at"]),
                "segment_id": p["segment_id"],
                "segment": p["segment__name"],
                "added_at": pg_text(p["added_at"]),
                "removed_at": pg_text(p["removed_at"]),
                "removed_reason": p["removed_reason"],
                "delivery_id": d.get("id"),
                "campaign_id": d.get("campaign_id"),
                "version_id": d.get("campaign__version_id"),
                "content_hash": d.get("campaign__content_hash"),
                "delivery_status": d.get("status"),
                "attempts": d.get("attempts"),
                "esp_message_id": d.get("esp_message_id"),
                "sent_at": pg_text(d.get("sent_at")),
                "delivered_at": pg_text(d.get("delivered_at")),
                "bounce_kind": d.get("bounce_kind"),
                "delivery_error": _error(d, pii) if d else None,
                "delivery_address": d.get("address"),
                "resends": [_resend(r, pii) for r in resends.get(p["id"], [])],
                "event_count": len(events.get(p["id"], [])),
                "events": SEPARATOR.join(events.get(p["id"], [])),
                "contact_status": p["contact_status"],
                "contact_method": p["contact_method"],
                "contacted_at": pg_text(p["contacted_at"]),
                "contact_note": p["contact_note"],
                "contact_history": SEPARATOR.join(history.get(p["id"], [])),
            }
            yield [values[name] for name in names]
        last, done = ids[-1], done + len(chunk)
        on_chunk(done)
