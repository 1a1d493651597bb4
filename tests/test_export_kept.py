"""The kept ledger: later exports of a large incident read finished lines, and say the same.

PostgreSQL only (the lines are kept up to date by triggers). Every test here
compares a kept export with the live one, written by COPY from the same data:
the two files must be the same bytes, whatever changed in between.
"""

from datetime import timedelta

import pytest
from django.db import connection

from campaigns.models import Delivery, DeliveryEvent
from incidents.actors import Actor
from incidents.export import ledger_kept
from incidents.export.files import HashedFile
from incidents.export.ledger import write_ledger
from incidents.export.retention import purge_incident
from incidents.export.services import export_to_directory
from incidents.models import (
    AffectedPerson,
    ContactRecord,
    Incident,
    LedgerCache,
    LedgerLine,
    LedgerMark,
    Segment,
)
from tests.factories import T0
from tests.test_export import make_evidence_incident

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL-only behaviour"),
]

# A note as staff type it: commas, quotes, line breaks, a formula and non-ASCII text.
AWKWARD_NOTE = '=1+1, she said "no, thanks"\r\nthen: Jörg; 中文 ,'


@pytest.fixture
def kept(transactional_audit, incident, support_sam, comms_cleo, settings):
    """An evidence incident, committed (exports read on connections of their own)."""
    make_evidence_incident(incident, support_sam, comms_cleo)
    AffectedPerson.objects.filter(incident=incident, address="cleo@example.net").update(
        contact_note=AWKWARD_NOTE
    )
    settings.EXPORT_KEEP_MIN_PEOPLE = 0
    settings.EXPORT_STREAMS, settings.EXPORT_STREAMS_MIN_PEOPLE = 2, 1
    return incident


def _ledger(incident, tmp_path, name: str, *, fmt: str, pii: bool = False) -> bytes:
    out = HashedFile(tmp_path / name)
    write_ledger(incident, out, fmt=fmt, pii=pii)
    out.close()
    return (tmp_path / name).read_bytes()


def _kept_and_live(incident, tmp_path, settings, fmt: str) -> tuple[bytes, bytes]:
    """The ledger read from kept lines, and written live from the same data."""
    cache = LedgerCache.objects.get(incident=incident, fmt=fmt)
    assert cache.built_at and cache.fingerprint == ledger_kept.fingerprint(fmt)
    settings.EXPORT_KEEP_MIN_PEOPLE = 0
    kept = _ledger(incident, tmp_path, "kept", fmt=fmt)
    settings.EXPORT_KEEP_MIN_PEOPLE = 10**9
    live = _ledger(incident, tmp_path, "live", fmt=fmt)
    settings.EXPORT_KEEP_MIN_PEOPLE = 0
    return kept, live


def _pack(incident, tmp_path, name: str, *, fmt: str, pii: bool = False) -> bytes:
    export_to_directory(
        incident=incident,
        directory=tmp_path / name,
        fmt=fmt,
        pii=pii,
        reason="The regulator asked for the addresses" if pii else "",
        by=Actor.system("tests"),
    )
    return (tmp_path / name / f"ledger.{fmt}").read_bytes()


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_kept_ledger_is_the_same_file_as_the_live_one(kept, tmp_path, settings, fmt):
    ledger_kept.keep(kept, fmt=fmt)
    first, live = _kept_and_live(kept, tmp_path, settings, fmt)
    people = AffectedPerson.objects.filter(incident=kept).count()

    assert first == live
    assert AWKWARD_NOTE.split(",")[0].encode() in live
    assert LedgerLine.objects.filter(incident=kept, fmt=fmt).count() == people
    again, _ = _kept_and_live(kept, tmp_path, settings, fmt)
    assert again == live


def test_the_first_export_is_live_and_queues_keeping_its_ledger_for_the_next(
    kept, tmp_path, run_jobs
):
    with run_jobs():
        first = _pack(kept, tmp_path, "first", fmt="jsonl")
    people = AffectedPerson.objects.filter(incident=kept).count()
    assert LedgerLine.objects.filter(incident=kept, fmt="jsonl").count() == people
    AffectedPerson.objects.filter(incident=kept).update(contact_note="changed since")

    with run_jobs():
        second = _pack(kept, tmp_path, "second", fmt="jsonl")

    assert second != first and second.count(b'"contact_note":"changed since"') == people
    assert not LedgerMark.objects.filter(incident_id=kept.pk).exists()  # folded by the job
    lines = LedgerLine.objects.filter(incident=kept, fmt="jsonl").values_list("line", flat=True)
    assert all('"contact_note":"changed since"' in line for line in lines)


def test_blocks_read_in_turn_by_several_readers_make_the_same_file(
    kept, tmp_path, settings, monkeypatch
):
    ledger_kept.keep(kept, fmt="csv")
    AffectedPerson.objects.filter(incident=kept, address__startswith="b").update(
        contact_note="marked, so computed by its reader"
    )
    monkeypatch.setattr(ledger_kept, "BLOCK_PEOPLE", 1)  # a block per person
    settings.EXPORT_STREAMS = 3

    kept_file, live = _kept_and_live(kept, tmp_path, settings, "csv")

    assert kept_file == live and b"marked, so computed by its reader" in live


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_what_changes_after_the_lines_are_kept_is_in_the_next_export(kept, tmp_path, settings, fmt):
    ledger_kept.keep(kept, fmt=fmt)
    before, _ = _kept_and_live(kept, tmp_path, settings, fmt)
    cleo = AffectedPerson.objects.get(incident=kept, address="cleo@example.net")
    delivery = Delivery.objects.get(person=cleo)
    # A webhook event, a status change with its record, a renamed segment, a late person.
    DeliveryEvent.objects.create(
        esp="postmark",
        event_key="k-late",
        event_type="delivered",
        message_id=delivery.esp_message_id,
        recipient=cleo.address,
        occurred_at=T0 + timedelta(days=1),
        delivery=delivery,
        incident=kept,
        outcome="applied",
    )
    Delivery.objects.filter(pk=delivery.pk).update(status="delivered")
    cleo.set_contact_status("contacted", method="email", now=T0 + timedelta(days=1))
    ContactRecord.objects.create(
        incident=kept,
        person=cleo,
        status="contacted",
        previous_status="pending",
        method="email",
        delivery=delivery,
        recorded_by_label="system:tracking",
        recorded_at=T0 + timedelta(days=1),
    )
    Segment.objects.filter(incident=kept).update(name="Renamed, after the export")
    AffectedPerson.objects.create(
        incident=kept, address="late@example.com", segment=cleo.segment, source="manual"
    )

    after, live = _kept_and_live(kept, tmp_path, settings, fmt)

    assert after == live != before  # the changed people computed while reading
    assert b"Renamed, after the export" in after and b"2026-11-29 09:00:00+00" in after
    assert LedgerMark.objects.filter(incident_id=kept.pk).exists()
    ledger_kept.keep(kept, fmt=fmt)  # what the export queues: the fold
    assert not LedgerMark.objects.filter(incident_id=kept.pk).exists()
    folded, _ = _kept_and_live(kept, tmp_path, settings, fmt)
    assert folded == live


@pytest.mark.parametrize("whole_above", [0, 10**9])
def test_a_fold_of_many_or_few_people_keeps_the_same_lines(
    kept, tmp_path, settings, monkeypatch, whole_above
):
    ledger_kept.keep(kept, fmt="jsonl")
    AffectedPerson.objects.filter(incident=kept).update(contact_note="changed, all of them")
    monkeypatch.setattr(ledger_kept, "FOLD_WHOLE_ABOVE", whole_above)

    assert ledger_kept.fold(kept) == AffectedPerson.objects.filter(incident=kept).count()
    folded, live = _kept_and_live(kept, tmp_path, settings, "jsonl")
    assert folded == live and live.count(b"changed, all of them") == len(live.splitlines())


def test_with_too_many_marked_an_export_is_written_live_and_the_job_folds_them(
    kept, tmp_path, settings, monkeypatch, run_jobs
):
    ledger_kept.keep(kept, fmt="csv")
    AffectedPerson.objects.filter(incident=kept).update(contact_note="changed, all of them")
    monkeypatch.setattr(ledger_kept, "MERGE_MAX", 1)
    monkeypatch.setattr(ledger_kept, "write", lambda *a, **k: pytest.fail("read kept lines"))
    marks = LedgerMark.objects.filter(incident_id=kept.pk).count()

    with run_jobs():
        exported = _pack(kept, tmp_path, "many", fmt="csv")

    assert marks > 1 and not LedgerMark.objects.filter(incident_id=kept.pk).exists()
    settings.EXPORT_KEEP_MIN_PEOPLE = 10**9
    assert exported == _ledger(kept, tmp_path, "live", fmt="csv")
    lines = LedgerLine.objects.filter(incident=kept, fmt="csv").values_list("line", flat=True)
    assert all("changed, all of them" in line for line in lines)


def test_changes_to_an_incident_whose_ledger_is_not_kept_leave_no_marks(kept):
    AffectedPerson.objects.filter(incident=kept).update(contact_note="changed")
    Segment.objects.filter(incident=kept).update(name="changed")

    assert not LedgerMark.objects.exists()


def test_a_pii_ledger_is_never_kept(kept, tmp_path, run_jobs):
    with run_jobs():
        _pack(kept, tmp_path, "pii", fmt="csv", pii=True)
        _pack(kept, tmp_path, "pii-again", fmt="csv", pii=True)

    assert not LedgerCache.objects.exists() and not LedgerLine.objects.exists()


def test_a_new_pseudonym_key_builds_the_kept_lines_again(kept, tmp_path, settings):
    ledger_kept.keep(kept, fmt="jsonl")
    old, _ = _kept_and_live(kept, tmp_path, settings, "jsonl")
    settings.PSEUDONYM_KEY = "a-new-key-after-rotation"
    stale = _ledger(kept, tmp_path, "stale", fmt="jsonl")  # not read from the old lines

    ledger_kept.keep(kept, fmt="jsonl")
    new, live = _kept_and_live(kept, tmp_path, settings, "jsonl")

    assert new == live == stale != old


def test_retention_forgets_the_kept_lines_of_the_incident(kept):
    ledger_kept.keep(kept, fmt="csv")

    purge_incident(incident=kept, by=Actor.system("tests"))

    assert not LedgerLine.objects.filter(incident=kept).exists()
    assert not LedgerCache.objects.filter(incident=kept).exists()
    assert not LedgerMark.objects.filter(incident_id=kept.pk).exists()


def test_kept_lines_that_miss_a_person_stop_the_export(kept, tmp_path):
    ledger_kept.keep(kept, fmt="csv")
    with connection.cursor() as cursor:  # lost without a trace: no trigger, no mark
        cursor.execute(
            "DELETE FROM incidents_ledgerline WHERE person_id = %s",
            [AffectedPerson.objects.filter(incident=kept).first().pk],
        )

    with pytest.raises(ledger_kept.LedgerOutOfStep, match="lines for"):
        _ledger(kept, tmp_path, "short", fmt="csv")


def test_kept_lines_emptied_by_a_crash_restart_are_not_read_and_are_built_again(
    kept, tmp_path, settings
):
    ledger_kept.keep(kept, fmt="csv")
    with connection.cursor() as cursor:  # what a crash restart does to an UNLOGGED table
        cursor.execute("TRUNCATE incidents_ledgerline")
    settings.EXPORT_KEEP_MIN_PEOPLE = 10**9
    live = _ledger(kept, tmp_path, "live", fmt="csv")
    settings.EXPORT_KEEP_MIN_PEOPLE = 0

    assert _ledger(kept, tmp_path, "after-crash", fmt="csv") == live
    ledger_kept.keep(kept, fmt="csv")
    people = AffectedPerson.objects.filter(incident=kept).count()
    assert LedgerLine.objects.filter(incident=kept).count() == people


def test_resolving_a_large_incident_keeps_its_csv_ledger_for_the_auditors(
    kept, tmp_path, settings, support_sam, run_jobs
):
    from incidents import services

    AffectedPerson.objects.filter(incident=kept).exclude(contact_status="contacted").update(
        contact_status="waived", contact_note="Reached by phone"
    )
    Incident.objects.filter(pk=kept.pk).update(status="monitoring")

    with run_jobs():
        services.incident_transition(
            incident=kept, to_status="resolved", by=Actor.for_user(support_sam)
        )

    people = AffectedPerson.objects.filter(incident=kept).count()
    assert LedgerLine.objects.filter(incident=kept, fmt="csv").count() == people
    first, live = _kept_and_live(kept, tmp_path, settings, "csv")  # the first export: kept
    assert first == live
