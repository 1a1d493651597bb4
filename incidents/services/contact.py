"""Contact workflows done by people: record a contact another way, mark unreachable, waive,
assign a follow-up, and the same for many people at once.

Each is one transaction that locks the person rows it changes, moves them with the
rules of AffectedPerson.set_contact_status (CONTACT_TRANSITIONS), appends a
ContactRecord per change and writes one audit entry. ESP events (delivered →
contacted, bounced → unreachable) are applied by campaigns/tracking, not here.

Refusals are ValidationErrors with a `code` the API maps to a status
(incidents/api_common.py): `unchanged` and `illegal_contact_transition` (409),
`waive_not_allowed` (403), `contact_done` (409), `person_removed` (409),
`too_many` (400); a missing reason or a bad field is a field error (400).
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from incidents import audit
from incidents.actors import Actor
from incidents.models import AffectedPerson, ContactRecord, Incident
from incidents.models.contact import CONTACT_TRANSITIONS, DONE, ContactMethod, ContactStatus
from incidents.pseudonym import pseudonymise_addresses

WAIVE_PERM = "incidents.waive_contact"
FOLLOW_UP_PERM = "incidents.record_contact"
# Ways a person records a contact. Email is not one: "delivered" comes from the ESP.
MANUAL_METHODS = (
    ContactMethod.PHONE,
    ContactMethod.LETTER,
    ContactMethod.TICKET,
    ContactMethod.IN_PERSON,
)

# A browser's clock may run a little ahead: "just now" must not count as the future.
CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class BulkResult:
    changed: int
    skipped: int  # matched, but the action does not apply to them (already done, say)
    person_ids: list[int] = field(default_factory=list)


# --- Helpers -------------------------------------------------------------------------------


def _locked(person: AffectedPerson) -> AffectedPerson:
    # Lock the row: an ESP event applying at the same moment waits, then sees our change.
    person = AffectedPerson.objects.select_for_update().get(pk=person.pk)
    if person.removed_at is not None:
        raise ValidationError(
            "This person was removed from the list; there is nothing to record.",
            code="person_removed",
        )
    return person


def _status_label(status: str) -> str:
    return ContactStatus(status).label.lower()


def _refuse_same(person: AffectedPerson, status: str) -> None:
    if person.contact_status == status:
        raise ValidationError(
            f"Nothing changed: this person is already {_status_label(status)}.", code="unchanged"
        )


def _check_waiver(by: Actor) -> None:
    # Views and API check the permission first; this keeps every other caller honest.
    if by.user is not None and not by.user.has_perm(WAIVE_PERM):
        raise ValidationError(
            "Only Comms or an Admin may waive contacting a person.", code="waive_not_allowed"
        )


def _clean_when(contacted_at: datetime | None, now: datetime) -> datetime:
    if contacted_at is None:
        return now
    if contacted_at > now + CLOCK_SKEW:
        raise ValidationError({"contacted_at": "The contact cannot be in the future."})
    return contacted_at


def _record(
    person: AffectedPerson, previous: str, by: Actor, *, now: datetime, delivery=None
) -> ContactRecord:
    return ContactRecord.objects.create(
        incident_id=person.incident_id,
        person=person,
        status=person.contact_status,
        previous_status=previous,
        method=person.contact_method if person.contact_status == ContactStatus.CONTACTED else "",
        note=person.contact_note,
        contacted_at=person.contacted_at
        if person.contact_status == ContactStatus.CONTACTED
        else None,
        delivery=delivery,
        recorded_by=by.user,
        recorded_by_label=by.label[:150],
        recorded_at=now,
    )


def _audit_change(by: Actor, action: str, person: AffectedPerson, previous: str, **after) -> None:
    # What staff typed may name an address; the audit trail keeps its pseudonym only.
    for key in ("note", "reason"):
        if key in after:
            after[key] = pseudonymise_addresses(after[key])
    audit.record(
        by=by,
        action=action,
        obj=person,
        incident=Incident(pk=person.incident_id),
        before={"contact_status": previous},
        after={"contact_status": person.contact_status, **after},
    )


# --- One person ---------------------------------------------------------------------------


@transaction.atomic
def contact_record(
    *,
    person: AffectedPerson,
    method: str,
    note: str = "",
    contacted_at: datetime | None = None,
    by: Actor,
) -> ContactRecord:
    """Record that a person was reached by phone, letter, support ticket or in person."""
    if method not in MANUAL_METHODS:
        raise ValidationError(
            {"method": "Choose phone, letter, support ticket or in person (email is tracked)."}
        )
    now = timezone.now()
    when = _clean_when(contacted_at, now)
    person = _locked(person)
    _refuse_same(person, ContactStatus.CONTACTED)
    previous = person.set_contact_status(
        ContactStatus.CONTACTED, method=method, note=note.strip(), contacted_at=when, now=now
    )
    record = _record(person, previous, by, now=now)
    _audit_change(
        by,
        "contact.recorded",
        person,
        previous,
        method=method,
        contacted_at=when.isoformat(),
        note=note.strip(),
    )
    return record


@transaction.atomic
def contact_mark_unreachable(*, person: AffectedPerson, note: str = "", by: Actor) -> ContactRecord:
    """Mark a pending person unreachable: someone must follow them up another way.

    A contacted person becomes unreachable only when their email bounces after
    delivery (tracking does that); a person cannot undo a recorded contact.
    """
    person = _locked(person)
    _refuse_same(person, ContactStatus.UNREACHABLE)
    if person.contact_status != ContactStatus.PENDING:
        raise ValidationError(
            f"Only a pending person can be marked unreachable; this one is "
            f"{_status_label(person.contact_status)}.",
            code="illegal_contact_transition",
        )
    now = timezone.now()
    previous = person.set_contact_status(ContactStatus.UNREACHABLE, note=note.strip(), now=now)
    record = _record(person, previous, by, now=now)
    _audit_change(by, "contact.marked_unreachable", person, previous, note=note.strip())
    return record


@transaction.atomic
def contact_waive(*, person: AffectedPerson, reason: str, by: Actor) -> ContactRecord:
    """Decide that a person need not be contacted, and why. Comms or Admin only."""
    _check_waiver(by)
    reason = reason.strip()
    if not reason:
        raise ValidationError({"reason": "Say why this person does not need to be contacted."})
    person = _locked(person)
    _refuse_same(person, ContactStatus.WAIVED)
    now = timezone.now()
    previous = person.set_contact_status(ContactStatus.WAIVED, note=reason, now=now)
    record = _record(person, previous, by, now=now)
    _audit_change(by, "contact.waived", person, previous, reason=reason)
    return record


def _check_assignee(assignee) -> None:
    if assignee is not None and not (assignee.is_active and assignee.has_perm(FOLLOW_UP_PERM)):
        raise ValidationError(
            {"assignee": f"{assignee.get_username()} cannot follow people up (Support or Admin)."}
        )


@transaction.atomic
def contact_assign(*, person: AffectedPerson, assignee, by: Actor) -> AffectedPerson:
    """Give a person's follow-up to `assignee` (a user who may record contacts), or to nobody."""
    _check_assignee(assignee)
    person = _locked(person)
    if person.contact_status in DONE and assignee is not None:
        raise ValidationError(
            f"This person is already {_status_label(person.contact_status)}: "
            "there is nothing to follow up.",
            code="contact_done",
        )
    before = person.followup_assignee_id
    after = assignee.pk if assignee is not None else None
    if before == after:
        return person  # pressing "assign to me" twice changes nothing, and records nothing
    person.followup_assignee = assignee
    person.save(update_fields=["followup_assignee"])
    audit.record(
        by=by,
        action="contact.assigned" if assignee is not None else "contact.unassigned",
        obj=person,
        incident=Incident(pk=person.incident_id),
        before={"followup_assignee": before},
        after={"followup_assignee": after},
    )
    return person


# --- Many people at once ------------------------------------------------------------------

BULK_ACTIONS = ("assign", "unassign", "record", "unreachable", "waive")


def _bulk_targets(action: str) -> tuple[str, tuple[str, ...]]:
    """The new status and the statuses that may move to it (CONTACT_TRANSITIONS)."""
    status = {
        "record": ContactStatus.CONTACTED,
        "unreachable": ContactStatus.UNREACHABLE,
        "waive": ContactStatus.WAIVED,
    }[action]
    sources = tuple(s for s, moves in CONTACT_TRANSITIONS.items() if status in moves)
    if action == "unreachable":
        sources = (ContactStatus.PENDING,)  # as for one person: never undo a contact
    return status, sources


@transaction.atomic
def contact_bulk(
    *,
    incident: Incident,
    people: QuerySet[AffectedPerson],
    action: str,
    by: Actor,
    assignee=None,
    method: str = "",
    note: str = "",
    contacted_at: datetime | None = None,
    description: str = "",
) -> BulkResult:
    """Apply one action to every person in `people` (a filtered list of the incident).

    Changes at most CONTACT_BULK_MAX people; more is refused whole (`too_many`), so
    a click never half-applies. People the action does not fit (a waiver for someone
    already contacted) are skipped and counted. One ContactRecord per changed person
    and one audit entry for the lot, listing their ids.

    The rows are changed with one UPDATE each, not set_contact_status per row (10,000
    saves would take seconds), under the same transition table, checked per row in SQL.
    """
    if action not in BULK_ACTIONS:
        raise ValidationError({"action": f"Choose one of {', '.join(BULK_ACTIONS)}."})
    if action == "waive":
        _check_waiver(by)
        if not note.strip():
            raise ValidationError({"reason": "Say why these people do not need to be contacted."})
    if action == "record" and method not in MANUAL_METHODS:
        raise ValidationError(
            {"method": "Choose phone, letter, support ticket or in person (email is tracked)."}
        )
    if action == "assign":
        if assignee is None:
            raise ValidationError({"assignee": "Choose who follows these people up."})
        _check_assignee(assignee)
    now = timezone.now()
    when = _clean_when(contacted_at, now) if action == "record" else None
    limit = settings.CONTACT_BULK_MAX
    # Lock in id order (every bulk action does), so two bulk actions cannot deadlock.
    ids = list(
        AffectedPerson.objects.select_for_update()
        .filter(incident=incident, removed_at__isnull=True, pk__in=people.order_by().values("pk"))
        .order_by("pk")
        .values_list("pk", flat=True)[: limit + 1]
    )
    if len(ids) > limit:
        raise ValidationError(
            f"This would change more than {limit:,} people at once. Narrow the filters "
            "(a segment, a locale, a reason) and repeat.",
            code="too_many",
        )
    rows = AffectedPerson.objects.filter(pk__in=ids)
    note = note.strip()
    if action in ("assign", "unassign"):
        open_rows = rows.exclude(contact_status__in=DONE) if action == "assign" else rows
        target = assignee.pk if action == "assign" else None
        changed_ids = list(
            open_rows.exclude(followup_assignee_id=target).values_list("pk", flat=True)
            if target is not None
            else open_rows.filter(followup_assignee__isnull=False).values_list("pk", flat=True)
        )
        AffectedPerson.objects.filter(pk__in=changed_ids).update(followup_assignee_id=target)
        after = {"followup_assignee": target}
    else:
        status, sources = _bulk_targets(action)
        movable = rows.filter(contact_status__in=sources)
        previous_of = dict(movable.values_list("pk", "contact_status"))
        changed_ids = sorted(previous_of)
        fields = {"contact_status": status, "contact_note": note, "contact_updated_at": now}
        if status == ContactStatus.CONTACTED:
            fields |= {"contact_method": method, "contacted_at": when}
        elif status == ContactStatus.WAIVED:
            fields |= {"contact_method": ""}
        AffectedPerson.objects.filter(pk__in=changed_ids).update(**fields)
        ContactRecord.objects.bulk_create(
            [
                ContactRecord(
                    incident=incident,
                    person_id=pk,
                    status=status,
                    previous_status=previous_of[pk],
                    method=method if status == ContactStatus.CONTACTED else "",
                    note=note,
                    contacted_at=when if status == ContactStatus.CONTACTED else None,
                    recorded_by=by.user,
                    recorded_by_label=by.label[:150],
                    recorded_at=now,
                )
                for pk in changed_ids
            ],
            batch_size=1000,
        )
        after = {"contact_status": status, "method": method, "note": pseudonymise_addresses(note)}
        if when is not None:
            after["contacted_at"] = when.isoformat()
    if changed_ids:
        audit.record(
            by=by,
            action=f"contact.bulk_{action}",
            incident=incident,
            object_type="incidents.affectedperson",
            object_id=f"{len(changed_ids)} people",
            after={
                **after,
                "people": len(changed_ids),
                "skipped": len(ids) - len(changed_ids),
                "filters": description,
                "person_ids": changed_ids,
            },
        )
    return BulkResult(
        changed=len(changed_ids), skipped=len(ids) - len(changed_ids), person_ids=changed_ids
    )
