"""Contact recorded by people: another channel, unreachable, waived, assigned, in bulk."""

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from incidents import services
from incidents.actors import Actor
from incidents.models import AuditEntry, ContactRecord
from incidents.selectors_contact import contact_people
from tests.contact_data import campaign, delivery, people


def _by(user):
    return Actor.for_user(user)


@pytest.fixture
def four(incident, support_sam):
    return people(incident, support_sam, 4)


def test_a_phone_call_is_recorded_with_who_when_and_a_note(incident, support_sam, four):
    when = timezone.now() - timedelta(hours=3)
    record = services.contact_record(
        person=four[0], method="phone", contacted_at=when, note="Spoke to her", by=_by(support_sam)
    )
    person = four[0].__class__.objects.get(pk=four[0].pk)
    assert (person.contact_status, person.contact_method, person.contacted_at) == (
        "contacted",
        "phone",
        when,
    )
    assert (record.previous_status, record.status, record.recorded_by) == (
        "pending",
        "contacted",
        support_sam,
    )
    entry = AuditEntry.objects.filter(action="contact.recorded").get()
    assert entry.after["method"] == "phone" and entry.object_id == str(person.pk)


def test_email_cannot_be_recorded_by_hand(support_sam, four):
    with pytest.raises(ValidationError) as caught:
        services.contact_record(person=four[0], method="email", by=_by(support_sam))
    assert "method" in caught.value.message_dict
    assert not ContactRecord.objects.exists()


def test_a_contact_in_the_future_is_refused(support_sam, four):
    later = timezone.now() + timedelta(days=1)
    with pytest.raises(ValidationError) as caught:
        services.contact_record(
            person=four[0], method="letter", contacted_at=later, by=_by(support_sam)
        )
    assert "contacted_at" in caught.value.message_dict


def test_recording_a_contact_twice_is_refused_as_unchanged(support_sam, four):
    services.contact_record(person=four[0], method="ticket", by=_by(support_sam))
    with pytest.raises(ValidationError) as caught:
        services.contact_record(person=four[0], method="phone", by=_by(support_sam))
    assert caught.value.code == "unchanged"
    assert ContactRecord.objects.count() == 1


def test_waiving_needs_a_reason(comms_cleo, four):
    with pytest.raises(ValidationError) as caught:
        services.contact_waive(person=four[0], reason="   ", by=_by(comms_cleo))
    assert "reason" in caught.value.message_dict
    assert four[0].__class__.objects.get(pk=four[0].pk).contact_status == "pending"


def test_waiving_needs_the_comms_or_admin_role(support_sam, comms_cleo, admin_ada, four):
    with pytest.raises(ValidationError) as caught:
        services.contact_waive(person=four[0], reason="Account closed", by=_by(support_sam))
    assert caught.value.code == "waive_not_allowed"
    services.contact_waive(person=four[0], reason="Account closed", by=_by(comms_cleo))
    services.contact_waive(person=four[1], reason="Deceased", by=_by(admin_ada))
    statuses = set(
        four[0]
        .__class__.objects.filter(pk__in=[four[0].pk, four[1].pk])
        .values_list("contact_status", flat=True)
    )
    assert statuses == {"waived"}
    assert AuditEntry.objects.filter(action="contact.waived").count() == 2


def test_a_contacted_person_cannot_be_waived_or_marked_unreachable(support_sam, comms_cleo, four):
    services.contact_record(person=four[0], method="phone", by=_by(support_sam))
    for call in (
        lambda: services.contact_waive(person=four[0], reason="x", by=_by(comms_cleo)),
        lambda: services.contact_mark_unreachable(person=four[0], by=_by(support_sam)),
    ):
        with pytest.raises(ValidationError) as caught:
            call()
        assert caught.value.code == "illegal_contact_transition"


def test_an_unreachable_person_can_still_be_contacted_another_way(support_sam, four):
    services.contact_mark_unreachable(person=four[0], note="Mailbox full", by=_by(support_sam))
    services.contact_record(person=four[0], method="letter", by=_by(support_sam))
    ledger = list(four[0].contact_records.values_list("previous_status", "status"))
    assert ledger == [("pending", "unreachable"), ("unreachable", "contacted")]


def test_a_removed_person_cannot_be_contacted(support_sam, four):
    services.affected_remove(person=four[0], reason="Internal test address", by=_by(support_sam))
    with pytest.raises(ValidationError) as caught:
        services.contact_record(person=four[0], method="phone", by=_by(support_sam))
    assert caught.value.code == "person_removed"


def test_a_follow_up_is_assigned_only_to_someone_who_may_follow_up(support_sam, comms_cleo, four):
    services.contact_mark_unreachable(person=four[0], by=_by(support_sam))
    with pytest.raises(ValidationError) as caught:
        services.contact_assign(person=four[0], assignee=comms_cleo, by=_by(support_sam))
    assert "assignee" in caught.value.message_dict
    services.contact_assign(person=four[0], assignee=support_sam, by=_by(support_sam))
    services.contact_assign(person=four[0], assignee=support_sam, by=_by(support_sam))
    assert AuditEntry.objects.filter(action="contact.assigned").count() == 1  # twice = once


def test_bulk_assigns_the_filtered_unreachable_people_to_me(incident, support_sam, four):
    for person in four[:3]:
        services.contact_mark_unreachable(person=person, by=_by(support_sam))
    queue = contact_people(incident=incident, status="unreachable")
    result = services.contact_bulk(
        incident=incident, people=queue, action="assign", assignee=support_sam, by=_by(support_sam)
    )
    assert (result.changed, result.skipped) == (3, 0)
    mine = contact_people(
        incident=incident, status="unreachable", assignee="mine", user=support_sam
    )
    assert mine.count() == 3
    entry = AuditEntry.objects.get(action="contact.bulk_assign")
    assert entry.after["people"] == 3 and sorted(entry.after["person_ids"]) == [
        p.pk for p in four[:3]
    ]


def test_bulk_waiver_skips_people_already_contacted_and_writes_a_ledger_row_each(
    incident, support_sam, comms_cleo, four
):
    services.contact_record(person=four[0], method="phone", by=_by(support_sam))
    everyone = contact_people(incident=incident)
    result = services.contact_bulk(
        incident=incident,
        people=everyone,
        action="waive",
        note="Closed accounts",
        by=_by(comms_cleo),
    )
    assert (result.changed, result.skipped) == (3, 1)
    assert ContactRecord.objects.filter(status="waived", note="Closed accounts").count() == 3
    assert AuditEntry.objects.filter(action="contact.bulk_waive").count() == 1


def test_bulk_waiver_by_support_is_refused(incident, support_sam, four):
    with pytest.raises(ValidationError) as caught:
        services.contact_bulk(
            incident=incident,
            people=contact_people(incident=incident),
            action="waive",
            note="x",
            by=_by(support_sam),
        )
    assert caught.value.code == "waive_not_allowed"


def test_a_bulk_action_over_the_limit_is_refused_whole(incident, support_sam, four, settings):
    settings.CONTACT_BULK_MAX = 3
    with pytest.raises(ValidationError) as caught:
        services.contact_bulk(
            incident=incident,
            people=contact_people(incident=incident),
            action="record",
            method="letter",
            by=_by(support_sam),
        )
    assert caught.value.code == "too_many"
    assert not ContactRecord.objects.exists()


def test_the_queue_filters_by_reason_locale_and_failed_pending(incident, support_sam, four):
    camp = campaign(incident, four[0].segment, support_sam)
    delivery(camp, four[0], "bounced", bounce_kind="hard")
    delivery(camp, four[1], "failed")
    delivery(camp, four[2], "delivered")
    services.contact_mark_unreachable(person=four[0], by=_by(support_sam))
    services.contact_mark_unreachable(person=four[3], by=_by(support_sam))
    queue = contact_people(incident=incident, status="unreachable")
    assert [p.pk for p in queue] == [four[0].pk, four[3].pk]
    hard = contact_people(incident=incident, status="unreachable", reason="hard_bounce")
    assert [p.pk for p in hard] == [four[0].pk]
    no_email = contact_people(incident=incident, status="unreachable", reason="no_email")
    assert [p.pk for p in no_email] == [four[3].pk]
    wider = contact_people(incident=incident, status="unreachable", failed_pending=True)
    assert [p.pk for p in wider] == [four[0].pk, four[1].pk, four[3].pk]
    assert not contact_people(incident=incident, status="unreachable", locale="de").exists()


def test_two_people_recording_the_same_contact_at_once_make_one_ledger_row(
    transactional_audit, incident, support_sam, admin_ada
):
    """The row lock: the second waits for the first, then finds the person contacted."""
    import threading

    from django.db import connection

    [person] = people(incident, support_sam, 1)
    start, outcomes = threading.Barrier(2), []

    def record(user, method):
        try:
            start.wait()
            services.contact_record(person=person, method=method, by=_by(user))
            outcomes.append("recorded")
        except ValidationError as exc:
            outcomes.append(exc.code)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=record, args=(support_sam, "phone")),
        threading.Thread(target=record, args=(admin_ada, "letter")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes) == ["recorded", "unchanged"]
    assert ContactRecord.objects.filter(person=person).count() == 1
