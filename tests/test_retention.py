"""Retention: personal data leaves long-resolved incidents; the evidence and the chain stay."""

import io
import json
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from campaigns.models import Delivery, DeliveryEvent, OutboxMessage
from incidents import audit, services
from incidents.actors import Actor
from incidents.export.services import export_to_directory
from incidents.export.verify import verify_pack
from incidents.models import AffectedPerson, AuditEntry, ContactRecord, Incident, SendLogEntry
from incidents.pseudonym import address_ref
from tests.factories import freeze_people
from tests.test_export import ADDRESSES, make_evidence_incident

TYPED = "Partner.Of.Someone@Example.net"  # an address staff typed into a note


def _resolve(incident, days_ago: int) -> None:
    Incident.objects.filter(pk=incident.pk).update(
        status="resolved", resolved_at=timezone.now() - timedelta(days=days_ago)
    )


@pytest.fixture
def old_incident(incident, support_sam, comms_cleo):
    make_evidence_incident(incident, support_sam, comms_cleo)
    for d in Delivery.objects.filter(incident=incident):
        OutboxMessage.objects.create(
            message_id=d.esp_message_id,
            from_email="care@retailer.example",
            to=[d.address],
            subject="We are sorry",
            text=f"Dear {d.address}",
        )
    # Staff type addresses into what they write: the person's own, and someone else's.
    waived = AffectedPerson.objects.get(incident=incident, address=ADDRESSES[3])
    if waived.contact_status != "waived":
        services.contact_waive(
            person=waived,
            reason=f"{ADDRESSES[3]} asked us by phone not to email; so did {TYPED}",
            by=Actor.for_user(comms_cleo),
        )
    AffectedPerson.objects.filter(pk=waived.pk).update(
        contact_note=f"Waived: {ADDRESSES[3]} asked us by phone not to email ({TYPED})"
    )
    _resolve(incident, days_ago=40)
    return incident


@pytest.fixture
def recent_incident(support_sam):
    other = services.incident_open(
        by=Actor.for_user(support_sam), title="Recent", summary="Still within retention."
    )
    freeze_people(other, support_sam, [("<r1@esp>", "zoe@example.com", "en", {})], template="t2")
    _resolve(other, days_ago=5)
    return other


def _everything_about(incident) -> str:
    """Every stored text that could hold an address of this incident's people."""
    parts = []
    for p in AffectedPerson.objects.filter(incident=incident):
        parts += [
            p.address,
            p.original_address,
            p.customer_id,
            json.dumps(p.metadata),
            p.contact_note,
            p.removed_reason,
        ]
    parts += ContactRecord.objects.filter(incident=incident).values_list("note", flat=True)
    for d in Delivery.objects.filter(incident=incident):
        parts += [d.address, d.error]
    for e in DeliveryEvent.objects.filter(incident=incident):
        parts += [e.recipient, json.dumps(e.raw), e.mta_response, json.dumps(e.metadata)]
    for o in OutboxMessage.objects.all():
        parts += [json.dumps(o.to), o.text]
    for s in SendLogEntry.objects.all():
        parts += [s.recipient, s.address]
    for a in AuditEntry.objects.filter(incident=incident):
        parts += [a.canonical_content()]
    return "\n".join(parts).lower()


def test_retention_removes_every_raw_address_and_the_chain_still_verifies(
    old_incident, recent_incident, tmp_path
):
    before = export_to_directory(
        incident=old_incident, directory=tmp_path / "before", fmt="csv", by=Actor.system("t")
    )
    assert any(a in _everything_about(old_incident) for a in ADDRESSES)
    assert TYPED.lower() in _everything_about(old_incident)
    out = io.StringIO()
    call_command("purge_personal_data", "--days", "30", stdout=out)
    assert "Purged 1 incident(s)" in out.getvalue()

    assert audit.verify_chain().ok
    text = _everything_about(old_incident)
    for address in (*ADDRESSES, TYPED.lower()):
        assert address not in text
    # Someone else's address typed into a note stays only as its pseudonym.
    assert address_ref(TYPED.lower()) in text
    # The recent incident keeps its data (and its send-log row).
    assert AffectedPerson.objects.get(incident=recent_incident).address == "zoe@example.com"
    assert SendLogEntry.objects.filter(message_id="<r1@esp>").exists()
    # People keep their pseudonym, so packs before and after name the same person.
    refs = set(
        AffectedPerson.objects.filter(incident=old_incident).values_list("address", flat=True)
    )
    assert refs == {address_ref(a) for a in ADDRESSES}
    entry = AuditEntry.objects.get(action="incident.personal_data_purged")
    assert entry.incident_id == old_incident.pk
    assert entry.after["people"] == 4 and entry.after["sendlog_entries"] == 5
    assert entry.after["outbox_messages"] == 4 and entry.after["events"] == 5
    # A pack made before still verifies; one made after holds no address, even with PII.
    assert verify_pack(before.directory).ok
    after = export_to_directory(
        incident=old_incident,
        directory=tmp_path / "after",
        fmt="jsonl",
        pii=True,
        reason="after retention",
        by=Actor.system("t"),
    )
    assert verify_pack(after.directory).ok
    for path in after.directory.iterdir():
        content = path.read_text(encoding="utf-8").lower()
        assert not any(address in content for address in (*ADDRESSES, TYPED.lower())), path.name
    ledger = (tmp_path / "after" / "ledger.jsonl").read_text()
    assert address_ref(ADDRESSES[0]) in ledger


def test_an_address_typed_into_a_waiver_enters_the_audit_trail_only_as_its_pseudonym(
    incident, support_sam, comms_cleo
):
    freeze_people(incident, support_sam, [("<w1@esp>", "ann@example.com", "en", {})], template="w")
    person = AffectedPerson.objects.get(incident=incident)
    services.contact_waive(
        person=person,
        reason=f"Her partner ({TYPED}) called: she must not be emailed",
        by=Actor.for_user(comms_cleo),
    )
    entry = AuditEntry.objects.get(action="contact.waived")
    assert entry.after["reason"] == (
        f"Her partner ({address_ref(TYPED.lower())}) called: she must not be emailed"
    )
    assert TYPED.lower() not in entry.canonical_content().lower()
    # The person's own record keeps what was typed until retention.
    assert TYPED in AffectedPerson.objects.get(pk=person.pk).contact_note


def test_retention_run_again_changes_and_records_nothing(old_incident):
    call_command("purge_personal_data", "--days", "30", stdout=io.StringIO())
    count = AuditEntry.objects.count()
    out = io.StringIO()
    call_command("purge_personal_data", "--days", "30", stdout=out)
    assert "Purged 0 incident(s)" in out.getvalue()
    assert AuditEntry.objects.count() == count


def test_retention_leaves_incidents_that_are_not_resolved(incident, support_sam, comms_cleo):
    make_evidence_incident(incident, support_sam, comms_cleo)
    call_command("purge_personal_data", "--days", "1", stdout=io.StringIO())
    assert AffectedPerson.objects.filter(incident=incident, address__contains="@").count() == 4
