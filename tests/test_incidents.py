import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from incidents import services
from incidents.actors import Actor
from incidents.models import IllegalTransition, Incident, TimelineEntry


def _by(user):
    return Actor.for_user(user)


def test_incidents_get_consecutive_yearly_references(support_sam):
    year = timezone.now().year
    first = services.incident_open(by=_by(support_sam), title="A", summary="a")
    second = services.incident_open(by=_by(support_sam), title="B", summary="b")
    assert first.reference == f"INC-{year}-0001"
    assert second.reference == f"INC-{year}-0002"


def test_an_incident_walks_the_whole_lifecycle_to_resolved(incident, support_sam):
    for status in ["investigating", "contacting", "monitoring", "resolved"]:
        incident = services.incident_transition(
            incident=incident, to_status=status, by=_by(support_sam)
        )
    incident.refresh_from_db()
    assert incident.status == "resolved"
    assert incident.resolved_at is not None
    moves = [e.data for e in incident.timeline.filter(kind=TimelineEntry.Kind.STATUS)]
    assert [m["to"] for m in moves] == ["investigating", "contacting", "monitoring", "resolved"]


def test_an_illegal_transition_is_refused_with_a_clear_message(incident, support_sam):
    with pytest.raises(IllegalTransition) as refused:
        services.incident_transition(incident=incident, to_status="resolved", by=_by(support_sam))
    assert "cannot go from Open to Resolved" in refused.value.messages[0]
    assert "Investigating" in refused.value.messages[0]
    incident.refresh_from_db()
    assert incident.status == "open"
    assert not incident.timeline.filter(kind=TimelineEntry.Kind.STATUS).exists()


def test_an_unknown_status_is_refused(incident, support_sam):
    with pytest.raises(IllegalTransition, match="not an incident status"):
        services.incident_transition(incident=incident, to_status="done", by=_by(support_sam))


def test_the_same_transition_twice_is_refused_the_second_time(incident, support_sam):
    services.incident_transition(incident=incident, to_status="investigating", by=_by(support_sam))
    with pytest.raises(IllegalTransition):
        services.incident_transition(
            incident=incident, to_status="investigating", by=_by(support_sam)
        )


def test_a_resolved_incident_can_be_reopened_for_investigation(incident, support_sam):
    for status in ["investigating", "contacting", "monitoring", "resolved", "investigating"]:
        services.incident_transition(incident=incident, to_status=status, by=_by(support_sam))
    incident.refresh_from_db()
    assert incident.status == "investigating" and incident.resolved_at is None


def test_exposed_personal_data_needs_the_time_we_became_aware(support_sam):
    with pytest.raises(ValidationError, match="became aware"):
        services.incident_open(
            by=_by(support_sam), title="A", summary="a", personal_data_exposed=True
        )
    assert not Incident.objects.exists()


def test_the_sending_window_must_end_after_it_starts(support_sam):
    now = timezone.now()
    with pytest.raises(ValidationError, match="must end after it starts"):
        services.incident_open(
            by=_by(support_sam),
            title="A",
            summary="a",
            sent_from=now,
            sent_until=now - timezone.timedelta(hours=1),
        )


@pytest.mark.parametrize(
    ("hours_since_aware", "level"), [(1, "ok"), (50, "warning"), (73, "overdue")]
)
def test_the_regulator_clock_warns_as_the_72_hour_deadline_nears(
    support_sam, hours_since_aware, level
):
    aware = timezone.now() - timezone.timedelta(hours=hours_since_aware)
    incident = services.incident_open(
        by=_by(support_sam),
        title="A",
        summary="a",
        personal_data_exposed=True,
        became_aware_at=aware,
    )
    clock = incident.regulator_clock()
    assert clock["deadline"] == aware + timezone.timedelta(hours=72)
    assert clock["level"] == level


def test_no_regulator_clock_without_exposed_personal_data(incident):
    assert incident.regulator_clock() is None


def test_an_update_records_only_the_changed_fields_on_the_timeline(incident, support_sam):
    services.incident_update(
        incident=incident, by=_by(support_sam), severity="SEV1", title=incident.title
    )
    entry = incident.timeline.last()
    assert entry.data == {"changed": ["severity"]}
    assert "severity" in entry.body


def test_an_update_that_changes_nothing_writes_nothing(incident, support_sam):
    count = incident.timeline.count()
    services.incident_update(incident=incident, by=_by(support_sam), title=incident.title)
    assert incident.timeline.count() == count


def test_an_empty_note_is_refused(incident, support_sam):
    with pytest.raises(ValidationError, match="cannot be empty"):
        services.incident_add_note(incident=incident, body="   ", by=_by(support_sam))


def test_recording_the_regulator_notification_stops_the_clock(support_sam):
    by = _by(support_sam)
    aware = timezone.now() - timezone.timedelta(hours=80)
    incident = services.incident_open(
        by=by, title="A", summary="a", personal_data_exposed=True, became_aware_at=aware
    )
    assert incident.regulator_clock()["level"] == "overdue"
    incident = services.incident_record_regulator_notification(
        incident=incident,
        notified_at=aware + timezone.timedelta(hours=70),
        reference="ICO-123",
        by=by,
    )
    assert incident.regulator_clock()["level"] == "notified"
    assert "ICO-123" in incident.timeline.last().body
    assert "after the 72-hour deadline" not in incident.timeline.last().body


def test_a_repeated_status_change_says_the_incident_is_already_there(incident, support_sam):
    services.incident_transition(incident=incident, to_status="investigating", by=_by(support_sam))
    with pytest.raises(IllegalTransition, match="already Investigating"):
        services.incident_transition(
            incident=incident, to_status="investigating", by=_by(support_sam)
        )
