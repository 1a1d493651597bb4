"""Evidence packs: what the ledger holds, pseudonyms, integrity, the audit trail, the PDF."""

import csv
import json
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from campaigns.models import Approval, Campaign, Delivery, DeliveryEvent, Message, MessageVersion
from incidents import audit
from incidents.actors import Actor
from incidents.export import services as export_services
from incidents.export.csvsafe import unescape_cell
from incidents.export.pack import write_pack
from incidents.export.verify import verify_pack
from incidents.models import AffectedPerson, AuditEntry, ContactRecord, Incident, Segment
from incidents.pseudonym import address_ref
from tests.factories import T0, freeze_people

ADDRESSES = ["anna@example.com", "ben@example.org", "cleo@example.net", "dan@example.de"]


def make_evidence_incident(incident, author, approver) -> dict:
    """Four frozen people: one delivered and contacted, one bounced, one sent and
    still pending, one never sent and waived. Rows made directly (the contact and
    tracking services belong to other work); returns people by address."""
    rows = [
        (f"<m{i}@esp>", a.upper() if i == 0 else a, "en", {"first_name": f"Name{i}"})
        for i, a in enumerate(ADDRESSES)
    ]
    rows.append(("<m0-retry@esp>", ADDRESSES[0], "en", {"first_name": "Name0"}))
    people = freeze_people(incident, author, rows)
    segment = Segment.objects.get(incident=incident, is_default=True)
    # Text a spreadsheet would run as a formula, in the places staff type.
    Segment.objects.filter(pk=segment.pk).update(name="=HYPERLINK('http://evil')")
    message = Message.objects.create(
        incident=incident, segment=segment, sender_address="care@retailer.example"
    )
    version = MessageVersion(
        message=message,
        number=1,
        author=author,
        sender_address="care@retailer.example",
        fallback_locale="en",
        content={
            "en": {"subject": "We are sorry", "text": "Dear customer, sorry.", "html": ""},
            "de": {"subject": "Entschuldigung", "text": "Es tut uns leid, Jörg.", "html": ""},
        },
    )
    version.content_hash = version.compute_hash()
    version.save()
    Approval.objects.create(
        version=version,
        approver=approver,
        decision="approved",
        content_hash=version.content_hash,
    )
    campaign = Campaign.objects.create(
        incident=incident,
        segment=segment,
        version=version,
        content_hash=version.content_hash,
        status="completed",
        launched_at=T0,
    )
    a, b, c, d = (people[x] for x in ADDRESSES)
    deliveries = {}
    for person, status in ((a, "delivered"), (b, "bounced"), (c, "sent")):
        deliveries[person.address] = Delivery.objects.create(
            campaign=campaign,
            incident=incident,
            person=person,
            address=person.address,
            status=status,
            attempts=1,
            esp_message_id=f"<apology-{person.pk}@esp>",
            sent_at=T0 + timedelta(minutes=1),
            error=f"550 {person.address} does not exist" if status == "bounced" else "",
        )
    # Ben's apology bounced; he got it again, on purpose, from a "send again" campaign.
    resend = Campaign.objects.create(
        incident=incident,
        segment=segment,
        version=version,
        content_hash=version.content_hash,
        status="completed",
        is_resend=True,
        resend_reason="Bounced: corrected address on file",
        launched_at=T0 + timedelta(hours=2),
    )
    again = Delivery.objects.create(
        campaign=resend,
        incident=incident,
        person=b,
        address=b.address,
        status="delivered",
        attempts=1,
        resend=True,
        esp_message_id=f"<apology-again-{b.pk}@esp>",
        sent_at=T0 + timedelta(hours=2),
    )
    DeliveryEvent.objects.create(
        esp="postmark",
        event_key="k-again",
        event_type="delivered",
        message_id=again.esp_message_id,
        recipient=b.address,
        occurred_at=T0 + timedelta(hours=2, minutes=1),
        delivery=again,
        incident=incident,
        outcome="applied",
        raw={"Recipient": b.address},
    )
    events = [
        (a, "delivered", 2),
        (a, "opened", 30),
        (b, "bounced", 3),
        (c, "deferred", 5),
    ]
    for n, (person, kind, minutes) in enumerate(events):
        DeliveryEvent.objects.create(
            esp="postmark",
            event_key=f"k{n}",
            event_type=kind,
            message_id=deliveries[person.address].esp_message_id,
            recipient=person.address,
            occurred_at=T0 + timedelta(minutes=minutes),
            delivery=deliveries[person.address],
            incident=incident,
            outcome="applied",
            raw={"Recipient": person.address},
        )
    changes = [
        (a, "contacted", "email", "", deliveries[a.address]),
        (b, "unreachable", "", "hard bounce", deliveries[b.address]),
        (d, "waived", "", "-Customer asked not to be emailed", None),
    ]
    for person, status, method, note, delivery in changes:
        person.set_contact_status(status, method=method, note=note, now=T0 + timedelta(hours=1))
        ContactRecord.objects.create(
            incident=incident,
            person=person,
            status=status,
            previous_status="pending",
            method=method,
            note=note,
            contacted_at=T0 + timedelta(hours=1) if status == "contacted" else None,
            delivery=delivery,
            recorded_by_label="system:tracking" if delivery else "comms_cleo",
            recorded_at=T0 + timedelta(hours=1),
        )
    return {p.address: p for p in AffectedPerson.objects.filter(incident=incident)}


@pytest.fixture
def evidence(incident, support_sam, comms_cleo):
    make_evidence_incident(incident, support_sam, comms_cleo)
    return incident


def _export(incident, tmp_path, fmt="csv", pii=False, reason="", name="pack"):
    return export_services.export_to_directory(
        incident=incident,
        directory=tmp_path / name,
        fmt=fmt,
        pii=pii,
        reason=reason,
        by=Actor.system("tests"),
    )


def _csv_rows(path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return [{k: unescape_cell(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _jsonl_rows(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# --- The ledger -------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_the_ledger_has_one_row_per_affected_person_with_every_event(evidence, tmp_path, fmt):
    _export(evidence, tmp_path, fmt=fmt)
    path = tmp_path / "pack" / f"ledger.{fmt}"
    rows = _csv_rows(path) if fmt == "csv" else _jsonl_rows(path)
    people = AffectedPerson.objects.filter(incident=evidence)
    assert sorted(int(r["person_id"]) for r in rows) == sorted(p.pk for p in people)

    def nested(value):
        return json.loads(value) if isinstance(value, str) else value

    by_ref = {r["person_ref"]: r for r in rows}
    anna = by_ref[address_ref("anna@example.com")]
    version = MessageVersion.objects.get(message__incident=evidence)
    events = anna["events"].split("; ")
    assert [e.split()[0] for e in events] == ["delivered", "opened"]
    assert events[0] == "delivered 2026-11-28 09:02:00+00 applied"
    assert int(anna["event_count"]) == 2
    assert sorted(nested(anna["sendlog_message_ids"])) == ["<m0-retry@esp>", "<m0@esp>"]
    assert anna["contact_status"] == "contacted" and anna["contact_method"] == "email"
    assert anna["delivery_status"] == "delivered" and anna["sent_at"] == "2026-11-28 09:01:00+00"
    assert int(anna["version_id"]) == version.pk and anna["content_hash"] == version.content_hash
    assert anna["contact_history"] == "contacted email 2026-11-28 10:00:00+00 system:tracking"
    assert anna["identified_by"] == "query" and anna["query_id"]
    assert nested(anna["resends"]) == []
    ben = by_ref[address_ref("ben@example.org")]
    assert ben["events"] == (
        "bounced 2026-11-28 09:03:00+00 applied; delivered 2026-11-28 11:01:00+00 applied"
    )
    assert ben["delivery_error"] == "550 [address] does not exist"
    [again] = nested(ben["resends"])
    assert again["status"] == "delivered" and again["content_hash"] == version.content_hash
    dan = by_ref[address_ref("dan@example.de")]
    assert dan["contact_status"] == "waived"
    assert dan["contact_note"] == "-Customer asked not to be emailed"
    assert dan["delivery_id"] in ("", None) and dan["events"] == "" and int(dan["event_count"]) == 0
    total_events = sum(int(r["event_count"]) for r in rows)
    assert total_events == DeliveryEvent.objects.filter(incident=evidence).count()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="parallel COPY streams")
@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_ledger_written_in_parallel_streams_is_the_same_file_as_one_written_in_one(
    transactional_audit, evidence, tmp_path, settings, fmt
):
    # The streams read on connections of their own, so the data is committed here.
    from incidents.export.files import HashedFile
    from incidents.export.ledger import write_ledger

    def ledger(name: str) -> tuple[bytes, int]:
        out = HashedFile(tmp_path / name)
        rows = write_ledger(evidence, out, fmt=fmt, pii=False)
        out.close()
        return (tmp_path / name).read_bytes(), rows

    settings.EXPORT_STREAMS = 1
    alone, people = ledger("one")
    settings.EXPORT_STREAMS, settings.EXPORT_STREAMS_MIN_PEOPLE = 3, 1
    settings.EXPORT_CHUNK_PEOPLE = 1  # and several COPYs a stream
    together, rows = ledger("three")

    assert rows == people == AffectedPerson.objects.filter(incident=evidence).count() > 3
    assert together == alone
    assert sorted(tmp_path.iterdir()) == [tmp_path / "one", tmp_path / "three"]  # no spool left


def test_a_pseudonymised_export_contains_no_address(evidence, tmp_path):
    for fmt in ("csv", "jsonl", "pdf"):
        _export(evidence, tmp_path, fmt=fmt, name=fmt)
        for path in (tmp_path / fmt).iterdir():
            text = path.read_bytes().decode("utf-8", errors="replace").lower()
            for address in ADDRESSES:
                assert address not in text, (fmt, path.name, address)
                assert address.split("@")[0] + "@" not in text
            assert "name0" not in text  # names in the metadata stay out too


def test_a_pii_export_holds_the_addresses_and_its_reason(evidence, tmp_path):
    result = _export(evidence, tmp_path, fmt="csv", pii=True, reason="Regulator request R-17")
    rows = _csv_rows(tmp_path / "pack" / "ledger.csv")
    assert sorted(r["address"] for r in rows) == sorted(ADDRESSES)
    assert "ANNA@EXAMPLE.COM" in {r["original_address"] for r in rows}
    assert result.manifest["pseudonymised"] is False
    assert result.manifest["reason"] == "Regulator request R-17"


def test_approvals_and_the_approved_text_are_in_the_pack(evidence, tmp_path):
    _export(evidence, tmp_path, fmt="csv")
    [approval] = _csv_rows(tmp_path / "pack" / "approvals.csv")
    version = MessageVersion.objects.get(message__incident=evidence)
    assert approval["approver"] == "comms_cleo" and approval["decision"] == "approved"
    assert approval["approved_hash"] == version.content_hash
    assert approval["hash_still_matches"] == "True"
    content = {r["locale"]: r for r in _csv_rows(tmp_path / "pack" / "content.csv")}
    assert content["de"]["text"] == "Es tut uns leid, Jörg."
    assert content["en"]["subject"] == "We are sorry"


def test_the_timeline_holds_every_audit_entry_of_the_incident_with_its_chain_fields(
    evidence, tmp_path
):
    result = _export(evidence, tmp_path, fmt="jsonl")
    rows = _jsonl_rows(tmp_path / "pack" / "timeline.jsonl")
    head = result.manifest["audit_head"]["seq"]
    expected = AuditEntry.objects.filter(incident=evidence, seq__lte=head).order_by("seq")
    assert [r["seq"] for r in rows] == [e.seq for e in expected]
    assert [r["hash"] for r in rows] == [e.hash for e in expected]
    assert all(len(r["prev_hash"]) == 64 for r in rows)


# --- Integrity --------------------------------------------------------------------------


def test_a_fresh_pack_verifies(evidence, tmp_path):
    _export(evidence, tmp_path, fmt="csv")
    report = verify_pack(tmp_path / "pack")
    assert report.ok, report.problems
    assert report.files_checked == 7 and report.timeline_checked > 0


def test_an_edited_pack_file_fails_verification(evidence, tmp_path):
    _export(evidence, tmp_path, fmt="csv")
    ledger = tmp_path / "pack" / "ledger.csv"
    ledger.write_text(ledger.read_text().replace("waived", "contacted"))
    report = verify_pack(tmp_path / "pack")
    assert not report.ok
    assert any("ledger.csv" in p for p in report.problems)


def test_a_pack_whose_manifest_was_rewritten_to_match_fails_verification(evidence, tmp_path):
    _export(evidence, tmp_path, fmt="jsonl")
    pack = tmp_path / "pack"
    ledger = pack / "ledger.jsonl"
    ledger.write_text(ledger.read_text().replace("waived", "contacted"))
    manifest = json.loads((pack / "manifest.json").read_text())
    from incidents.export.pack import file_sha256

    for entry in manifest["files"]:
        entry["sha256"] = file_sha256(pack / entry["name"])
        entry["bytes"] = (pack / entry["name"]).stat().st_size
    (pack / "manifest.json").write_text(json.dumps(manifest))
    report = verify_pack(pack)
    assert not report.ok
    assert any("manifest" in p for p in report.problems)


def _tamper_with(entry: AuditEntry) -> None:
    table = AuditEntry._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # The append-only triggers refuse this, which is the point; a tamperer would
            # first have to switch them off, so the test does (after the deferred
            # foreign-key checks, which ALTER TABLE will not run beside).
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            cursor.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
        cursor.execute(
            f"UPDATE {table} SET actor_label = %s WHERE seq = %s", ["mallory", entry.seq]
        )
        if connection.vendor == "postgresql":
            cursor.execute(f"ALTER TABLE {table} ENABLE TRIGGER USER")


def test_a_tampered_audit_row_fails_verification(evidence, tmp_path, capsys):
    _export(evidence, tmp_path, fmt="csv")
    entry = AuditEntry.objects.filter(incident=evidence).order_by("seq").first()
    _tamper_with(entry)
    report = verify_pack(tmp_path / "pack")
    assert not report.ok
    assert any(f"#{entry.seq}" in p for p in report.problems)
    with pytest.raises(CommandError, match="FAILED"):
        call_command("verify_export", str(tmp_path / "pack"))
    assert f"#{entry.seq}" in capsys.readouterr().err


def test_verify_export_says_ok_for_a_good_pack(evidence, tmp_path, capsys):
    _export(evidence, tmp_path, fmt="pdf")
    call_command("verify_export", str(tmp_path / "pack"))
    assert "verified" in capsys.readouterr().out


# --- Audit ------------------------------------------------------------------------------


def test_every_export_is_audited_with_its_manifest_hash(evidence, tmp_path):
    result = _export(evidence, tmp_path, fmt="csv", pii=True, reason="Board review")
    entry = AuditEntry.objects.filter(action="evidence.exported").get()
    assert entry.incident_id == evidence.pk
    assert entry.after["manifest_sha256"] == result.manifest_sha256
    assert entry.after["pii"] is True and entry.after["reason"] == "Board review"
    assert entry.seq > result.manifest["audit_head"]["seq"]
    assert audit.verify_chain().ok


# --- The printable report ---------------------------------------------------------------


def _pdf_text(path) -> str:
    from pypdf import PdfReader

    return "\n".join(page.extract_text() for page in PdfReader(str(path)).pages)


def test_the_pdf_opens_and_shows_the_demo_incident_summary(db, settings, tmp_path):
    settings.REDIS_URL = ""
    call_command("seed_demo", verbosity=0)
    from incidents import demo

    incident = Incident.objects.get(title=demo.DEMO_TITLE)
    write_pack(
        incident=incident,
        directory=tmp_path / "pdf",
        fmt="pdf",
        pii=False,
        reason="",
        by_label="tests",
    )
    pdf = tmp_path / "pdf" / "report.pdf"
    assert pdf.read_bytes().startswith(b"%PDF-")
    text = _pdf_text(pdf)
    assert incident.reference in text
    assert "Completion" in text and "Approvals" in text and "Timeline" in text
    people = AffectedPerson.objects.filter(incident=incident, removed_at__isnull=True).count()
    assert f"of {people:,} affected people" in text
    html = (tmp_path / "pdf" / "report.html").read_text()
    assert incident.reference in html and "comms_cleo" in html
