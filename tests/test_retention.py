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
from incidents.models import AffectedPerson, AuditEntry, Incident, SendLogEntry
from incidents.pseudonym import address_ref
from tests.factories import freeze_people
from tests.test_export import ADDRESSES, make_evidence_incident


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
    AffectedPerson.objects.filter(incident=incident, address=ADDRESSES[3]).update(
        contact_note=f"Waived: {ADDRESSES[3]} asked us by phone not to email"
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
        ]
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
    out = io.StringIO()
    call_command("purge_personal_data", "--days", "30", stdout=out)
    assert "Purged 1 incident(s)" in out.getvalue()

    assert audit.verify_chain().ok
    text = _everything_about(old_incident)
    for address in ADDRESSES:
        assert address not in text
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
        assert not any(address in content for address in ADDRESSES), path.name
    ledger = (tmp_path / "after" / "ledger.jsonl").read_text()
    assert address_ref(ADDRESSES[0]) in ledger


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
