"""Contact status from delivery events: a delivered apology reaches the person; a bounce does not.

The manual side (a phone call recorded, a waiver, follow-up) is
incidents/services/contact.py; this is the ESP's side, in bulk, called by the
apply job inside its chunk's transaction.

- delivered: the person is contacted (method email, at the event's time), unless
  already contacted; a waived or unreachable person becomes contacted too.
- hard bounce, rejection, final failure, a final soft bounce, a complaint
  before any delivery: the person is unreachable, when pending, or when their
  contact was this very email (a later bounce undoes it). A person contacted by
  phone, letter, ticket, in person or by another email is never touched.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from campaigns.tracking.bulk import bulk_insert, bulk_set
from incidents.models import AffectedPerson, ContactRecord
from incidents.models.contact import CONTACT_TRANSITIONS, ContactMethod, ContactStatus

LABEL = "system:tracking"


@dataclass(frozen=True)
class ContactChange:
    person_id: int
    incident_id: int
    delivery_id: int
    kind: str  # "delivered" | "unreachable"
    at: datetime
    note: str = ""


def contact_from_deliveries(*, changes: Iterable[ContactChange], now: datetime) -> dict:
    """Apply `changes` in order; returns {incident_id: {"contacted": [...], "unreachable": [...]}}.

    Locks the people first (in id order, like every other bulk writer), then
    writes their new status in one statement and one ContactRecord each.
    """
    changes = list(changes)
    if not changes:
        return {}
    people = {
        p.pk: p
        for p in AffectedPerson.objects.select_for_update()
        .filter(pk__in={c.person_id for c in changes})
        .order_by("pk")
        .only("pk", "incident_id", "contact_status", "contact_method", "contacted_at")
    }
    # Which email contacted each person already contacted by email: a bounce of that one
    # (and only that one) makes them unreachable again.
    by_email = [
        p.pk
        for p in people.values()
        if p.contact_status == ContactStatus.CONTACTED and p.contact_method == ContactMethod.EMAIL
    ]
    contacted_by: dict[int, int | None] = {}
    if by_email and any(c.kind == "unreachable" for c in changes):
        for person_id, delivery_id in (
            ContactRecord.objects.filter(person_id__in=by_email, status=ContactStatus.CONTACTED)
            .order_by("person_id", "recorded_at", "id")
            .values_list("person_id", "delivery_id")
        ):
            contacted_by[person_id] = delivery_id  # the latest wins
    records: list[ContactRecord] = []
    touched: dict[int, dict] = {}
    summary: dict[int, dict[str, list[int]]] = {}
    for change in changes:
        person = people.get(change.person_id)
        if person is None:
            continue
        status, method = person.contact_status, person.contact_method
        if change.kind == "delivered":
            if status == ContactStatus.CONTACTED:
                continue
            new, new_method, note = ContactStatus.CONTACTED, ContactMethod.EMAIL, ""
        else:
            if status == ContactStatus.CONTACTED and not (
                method == ContactMethod.EMAIL and contacted_by.get(person.pk) == change.delivery_id
            ):
                continue
            new, new_method, note = ContactStatus.UNREACHABLE, method, change.note
        if new not in CONTACT_TRANSITIONS[status]:
            continue  # e.g. waived stays waived when an email bounces
        person.contact_status, person.contact_method = new, new_method
        if new == ContactStatus.CONTACTED:
            person.contacted_at = change.at
            contacted_by[person.pk] = change.delivery_id
        touched[person.pk] = {
            "pk": person.pk,
            "contact_status": new,
            "contact_method": new_method,
            "contacted_at": person.contacted_at,
            "contact_note": note[:2000],
            "contact_updated_at": now,
        }
        records.append(
            ContactRecord(
                incident_id=person.incident_id,
                person_id=person.pk,
                status=new,
                previous_status=status,
                method=ContactMethod.EMAIL,
                note=note[:2000],
                contacted_at=change.at,
                delivery_id=change.delivery_id,
                recorded_by_label=LABEL,
                recorded_at=now,
            )
        )
        per = summary.setdefault(person.incident_id, {"contacted": [], "unreachable": []})
        per["contacted" if new == ContactStatus.CONTACTED else "unreachable"].append(person.pk)
    bulk_set(
        AffectedPerson,
        list(touched.values()),
        ["contact_status", "contact_method", "contacted_at", "contact_note", "contact_updated_at"],
    )
    bulk_insert(ContactRecord, records)
    return summary
