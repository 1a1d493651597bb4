import threading

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction

from incidents import audit, services
from incidents.actors import Actor
from incidents.models import AuditEntry, Incident
from tests.conftest import requires_postgres


def _tamper(sql: str, params=()) -> None:
    """Change the table behind the application's back, as an attacker with DB access would."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Deferred foreign-key checks from this test's inserts must run first.
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            cursor.execute("ALTER TABLE incidents_auditentry DISABLE TRIGGER USER")
        cursor.execute(sql, params)
        if connection.vendor == "postgresql":
            cursor.execute("ALTER TABLE incidents_auditentry ENABLE TRIGGER USER")


def test_every_incident_action_writes_one_audit_entry(support_sam, comms_cleo):
    sam, cleo = Actor.for_user(support_sam, ip="192.0.2.7"), Actor.for_user(comms_cleo)
    before = AuditEntry.objects.count()

    incident = services.incident_open(by=sam, title="Wrong email", summary="Oops")
    services.incident_update(incident=incident, by=sam, severity="SEV1")
    services.incident_add_note(incident=incident, body="Paused the job.", by=cleo)
    services.incident_transition(incident=incident, to_status="investigating", by=cleo)

    entries = list(AuditEntry.objects.filter(seq__gt=before).order_by("seq"))
    assert [e.action for e in entries] == [
        "incident.opened",
        "incident.updated",
        "incident.note_added",
        "incident.transitioned",
    ]
    opened, updated, noted, moved = entries
    assert opened.actor == support_sam and opened.ip == "192.0.2.7"
    assert opened.incident == incident and opened.after["title"] == "Wrong email"
    assert updated.before == {"severity": "SEV3"} and updated.after == {"severity": "SEV1"}
    assert noted.actor_label == "comms_cleo"
    assert moved.before == {"status": "open"} and moved.after["status"] == "investigating"


def test_a_refused_action_leaves_no_audit_entry(incident, support_sam):
    count = AuditEntry.objects.count()
    with pytest.raises(Exception, match="cannot go from Open to Resolved"):
        services.incident_transition(
            incident=incident, to_status="resolved", by=Actor.for_user(support_sam)
        )
    assert AuditEntry.objects.count() == count
    assert Incident.objects.get(pk=incident.pk).status == "open"


def test_entries_form_one_chain_that_verifies(incident, support_sam):
    services.incident_add_note(incident=incident, body="one", by=Actor.for_user(support_sam))
    report = audit.verify_chain()
    assert report.ok
    assert report.checked == AuditEntry.objects.count()
    assert report.head_hash == AuditEntry.objects.order_by("-seq").first().hash


def test_verify_audit_names_an_edited_entry(incident, support_sam):
    services.incident_add_note(incident=incident, body="later", by=Actor.for_user(support_sam))
    victim = AuditEntry.objects.get(action="incident.opened")
    _tamper(
        "UPDATE incidents_auditentry SET actor_label = %s WHERE id = %s",
        ["someone_else", victim.id],
    )

    with pytest.raises(CommandError, match=rf"broken at entry #{victim.seq}: .*edited"):
        call_command("verify_audit")


def test_verify_audit_names_a_deleted_entry(incident, support_sam):
    services.incident_add_note(incident=incident, body="later", by=Actor.for_user(support_sam))
    victim = AuditEntry.objects.get(action="incident.opened")
    _tamper("DELETE FROM incidents_auditentry WHERE id = %s", [victim.id])

    with pytest.raises(CommandError, match=rf"broken at entry #{victim.seq}: .*missing"):
        call_command("verify_audit")


def test_verify_audit_reports_an_intact_chain(incident, capsys):
    call_command("verify_audit")
    assert "Audit chain intact" in capsys.readouterr().out


@requires_postgres
@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE incidents_auditentry SET action = 'forged'",
        "DELETE FROM incidents_auditentry",
        "TRUNCATE incidents_auditentry CASCADE",
    ],
)
def test_postgres_refuses_to_change_or_remove_audit_entries(incident, statement):
    count = AuditEntry.objects.count()
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(statement)
    assert AuditEntry.objects.count() == count
    assert audit.verify_chain().ok


def test_concurrent_writers_never_fork_the_chain(transactional_audit, support_sam):
    threads, per_thread = 20, 50
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def writer(n: int) -> None:
        try:
            start.wait()
            for i in range(per_thread):
                with transaction.atomic():
                    audit.record(
                        by=Actor.system(f"thread-{n}"),
                        action="test.append",
                        object_type="test",
                        object_id=f"{n}-{i}",
                    )
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    before = AuditEntry.objects.count()
    workers = [threading.Thread(target=writer, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)

    assert errors == []
    assert AuditEntry.objects.count() == before + threads * per_thread
    report = audit.verify_chain()
    assert report.ok, report.broken
    assert report.checked == before + threads * per_thread
