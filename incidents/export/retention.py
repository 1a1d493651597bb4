"""Retention: remove personal data from incidents resolved long ago, keeping the evidence.

For each incident resolved more than N days ago, in one transaction per incident:
- affected people keep their keyed pseudonym as `address` (so the ledger, the
  audit trail and later packs still refer to the same person); the address as
  received, the customer id and the metadata (names) are cleared; in contact
  notes (current and in every status change) and removal reasons, the person's
  own address becomes "[address]" and any other address its pseudonym;
- deliveries hold the pseudonym instead of the address, and their ESP errors
  lose the address;
- ESP events lose their recipient, raw payload, MTA response and metadata;
- the sandbox outbox's copies of the apologies are deleted;
- the send-log rows of the messages that reached these people are deleted.
Counts, not data, go into one audit entry per incident. Audit entries never
held raw addresses (notes and reasons enter them pseudonymised), so the chain
still verifies.
"""

from dataclasses import asdict, dataclass
from datetime import timedelta

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from campaigns.models import Delivery, DeliveryEvent, OutboxMessage
from incidents import audit
from incidents.actors import Actor
from incidents.export import ledger_kept
from incidents.models import AffectedPerson, ContactRecord, Incident, SendLogEntry
from incidents.pseudonym import address_ref, pseudonymise_addresses

_CHUNK = 2000
# What retention rewrites of each person.
_PERSON_FIELDS = (
    "address",
    "original_address",
    "customer_id",
    "metadata",
    "contact_note",
    "removed_reason",
)
MASK = "[address]"


@dataclass
class PurgeResult:
    reference: str
    people: int = 0
    deliveries: int = 0
    events: int = 0
    outbox_messages: int = 0
    sendlog_entries: int = 0

    @property
    def changed(self) -> bool:
        counts = (self.people, self.deliveries, self.events, self.outbox_messages)
        return any((*counts, self.sendlog_entries))


def _scrub(text: str, addresses: tuple[str, ...]) -> str:
    """The person's own addresses masked; any other address typed in, pseudonymised."""
    for address in addresses:
        if address and address in text:
            text = text.replace(address, MASK)
    return pseudonymise_addresses(text)


def _in_chunks(rows):
    """`rows` in id order, _CHUNK at a time (keyset, so updating them does not shift pages)."""
    last = 0
    while chunk := list(rows.filter(id__gt=last).order_by("id")[:_CHUNK]):
        yield chunk
        last = chunk[-1].pk


def _people(incident: Incident, result: PurgeResult, message_ids: set[str]) -> dict[int, tuple]:
    """Pseudonymise the people; returns {person id: (address, original, ref)}."""
    seen: dict[int, tuple] = {}
    people = AffectedPerson.objects.filter(incident=incident, address__contains="@")
    while chunk := list(people.order_by("id")[:_CHUNK]):
        for p in chunk:
            ref = address_ref(p.address)
            seen[p.pk] = (p.address, p.original_address, ref)
            message_ids.update(p.message_ids or [])
            p.contact_note = _scrub(p.contact_note, (p.original_address, p.address))
            p.removed_reason = _scrub(p.removed_reason, (p.original_address, p.address))
            p.address, p.original_address, p.customer_id, p.metadata = ref, "", "", {}
        AffectedPerson.objects.bulk_update(chunk, _PERSON_FIELDS)
        result.people += len(chunk)
    return seen


def _contact_records(incident: Incident, seen: dict[int, tuple]) -> None:
    """Notes of every contact status change: as the person's current note."""
    records = ContactRecord.objects.filter(incident=incident, note__contains="@").only(
        "id", "person_id", "note"
    )
    for chunk in _in_chunks(records):
        for record in chunk:
            address, original, _ = seen.get(record.person_id) or ("", "", "")
            record.note = _scrub(record.note, (original, address))
        ContactRecord.objects.bulk_update(chunk, ["note"])


def _deliveries(incident: Incident, seen: dict[int, tuple], result: PurgeResult) -> list[str]:
    esp_ids: list[str] = []
    deliveries = Delivery.objects.filter(incident=incident).only(
        "id", "person_id", "address", "error", "esp_message_id"
    )
    for chunk in _in_chunks(deliveries):
        changed = []
        for d in chunk:
            esp_ids.append(d.esp_message_id)
            if "@" not in d.address:
                continue
            address, original, ref = seen.get(d.person_id) or (
                d.address,
                "",
                address_ref(d.address),
            )
            d.error = _scrub(d.error, (d.address, original, address))
            d.address = ref
            changed.append(d)
        Delivery.objects.bulk_update(changed, ["address", "error"])
        result.deliveries += len(changed)
    return [i for i in esp_ids if i]


@transaction.atomic
def purge_incident(*, incident: Incident, by: Actor) -> PurgeResult:
    """Remove the personal data of one incident (resolved or not: the caller decides)."""
    result = PurgeResult(incident.reference)
    message_ids: set[str] = set()
    seen = _people(incident, result, message_ids)
    _contact_records(incident, seen)
    esp_ids = _deliveries(incident, seen, result)
    ledger_kept.forget(incident)  # kept ledger lines may quote addresses in notes
    result.events = (
        DeliveryEvent.objects.filter(Q(incident=incident) | Q(delivery__incident=incident))
        .exclude(recipient="", raw={}, mta_response="", metadata={})
        .update(recipient="", raw={}, mta_response="", metadata={})
    )
    for start in range(0, len(esp_ids), _CHUNK):
        result.outbox_messages += OutboxMessage.objects.filter(
            message_id__in=esp_ids[start : start + _CHUNK]
        ).delete()[0]
    ids = sorted(message_ids)
    for start in range(0, len(ids), _CHUNK):
        result.sendlog_entries += SendLogEntry.objects.filter(
            message_id__in=ids[start : start + _CHUNK]
        ).delete()[0]
    if not result.changed:
        return result  # purged before: nothing to record
    audit.record(
        by=by,
        action="incident.personal_data_purged",
        obj=incident,
        incident=incident,
        after={k: v for k, v in asdict(result).items() if k != "reference"},
    )
    return result


def purge_personal_data(*, days: int, by: Actor, now=None) -> list[PurgeResult]:
    """Purge every incident resolved more than `days` days ago; one transaction each."""
    if days < 1:
        raise ValidationError("Keep at least one day after an incident is resolved.")
    cutoff = (now or timezone.now()) - timedelta(days=days)
    due = Incident.objects.filter(status=Incident.Status.RESOLVED, resolved_at__lt=cutoff)
    results = [purge_incident(incident=incident, by=by) for incident in due.order_by("id")]
    return [r for r in results if r.changed]
