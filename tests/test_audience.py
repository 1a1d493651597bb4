from datetime import UTC, datetime, timedelta

import pytest
from django.core.exceptions import ValidationError

from campaigns.models import Suppression
from incidents import selectors, services
from incidents.actors import Actor
from incidents.addresses import normalise
from incidents.filters import AudienceFilter
from incidents.models import AffectedPerson, AuditEntry, SendLogEntry
from incidents.models.audience import list_digest

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
MIS_SENT = {"template": "registry-gift-purchased"}


def _send(message_id, recipient, *, minutes=0, template="registry-gift-purchased", **extra):
    return SendLogEntry.objects.create(
        message_id=message_id,
        recipient=recipient,
        address=normalise(recipient),
        template=template,
        sent_at=T0 + timedelta(minutes=minutes),
        **extra,
    )


@pytest.fixture
def sendlog(db):
    _send("m1", "Cust1@Example.com", locale="en", metadata={"has_registry": False})
    _send("m2", " cust1@example.com ", minutes=5, locale="en", metadata={"has_registry": False})
    _send("m3", "cust1@EXAMPLE.COM", minutes=9, locale="en", metadata={"has_registry": False})
    _send("m4", "anna@bücher.de", locale="de", metadata={"has_registry": True})
    _send("m5", "ANNA@xn--bcher-kva.de", minutes=3, locale="de", metadata={"has_registry": True})
    _send("m6", "bob@example.org", locale="en", metadata={"has_registry": True}, status="clicked")
    _send("m7", "carol@example.org", template="weekly-newsletter")


def _freeze(incident, user, **filters):
    return services.audience_freeze(
        incident=incident,
        filters=AudienceFilter.from_dict(filters or MIS_SENT),
        by=Actor.for_user(user),
    )


def test_preview_counts_messages_people_and_locales(sendlog):
    preview = selectors.audience_preview(filters=AudienceFilter.from_dict(MIS_SENT))
    assert preview["messages"] == 6
    assert preview["people"] == 3
    assert {row["locale"]: row["people"] for row in preview["by_locale"]} == {"en": 2, "de": 1}
    assert [row["message_id"] for row in preview["sample"]][:2] == ["m1", "m4"]


def test_case_whitespace_and_idn_variants_are_one_person(sendlog, incident, support_sam):
    query = _freeze(incident, support_sam)
    people = {p.address: p for p in AffectedPerson.objects.filter(incident=incident)}
    assert set(people) == {"cust1@example.com", "anna@xn--bcher-kva.de", "bob@example.org"}
    cust = people["cust1@example.com"]
    assert cust.message_count == 3
    assert sorted(cust.message_ids) == ["m1", "m2", "m3"]
    assert people["anna@xn--bcher-kva.de"].message_count == 2
    assert query.people_count == 3 and query.message_count == 6 and query.people_added == 3


def test_the_person_keeps_the_details_of_the_latest_message(sendlog, incident, support_sam):
    _freeze(incident, support_sam)
    cust = AffectedPerson.objects.get(incident=incident, address="cust1@example.com")
    assert cust.original_address == "cust1@EXAMPLE.COM"
    assert cust.first_sent_at == T0
    assert cust.metadata == {"has_registry": False}


def test_a_frozen_list_does_not_change_when_the_send_log_does(sendlog, incident, support_sam):
    query = _freeze(incident, support_sam)
    _send("m8", "late@example.com", minutes=30)
    SendLogEntry.objects.filter(message_id="m6").delete()
    SendLogEntry.objects.filter(message_id="m1").update(recipient="changed@example.com")

    people = AffectedPerson.objects.filter(incident=incident)
    assert sorted(people.values_list("address", flat=True)) == [
        "anna@xn--bcher-kva.de",
        "bob@example.org",
        "cust1@example.com",
    ]
    assert query.list_hash == list_digest(sorted(people.values_list("address", flat=True)))


def test_freezing_again_adds_only_new_people_and_merges_messages(sendlog, incident, support_sam):
    _freeze(incident, support_sam)
    _send("m9", "cust1@example.com", minutes=40)
    _send("m10", "dave@example.net", minutes=41)
    second = _freeze(incident, support_sam)
    assert second.people_added == 1
    cust = AffectedPerson.objects.get(incident=incident, address="cust1@example.com")
    assert cust.message_count == 4
    assert sorted(cust.message_ids) == ["m1", "m2", "m3", "m9"]
    assert AffectedPerson.objects.filter(incident=incident).count() == 4


def test_freezing_is_audited_with_the_query_counts_and_list_hash(sendlog, incident, support_sam):
    query = _freeze(incident, support_sam)
    entry = AuditEntry.objects.get(action="audience.frozen")
    assert entry.incident == incident and entry.actor == support_sam
    assert entry.after["filters"] == {"template": "registry-gift-purchased"}
    assert entry.after["people_count"] == 3 and entry.after["message_count"] == 6
    assert entry.after["list_hash"] == query.list_hash
    assert "cust1@example.com" not in str(entry.after)


def test_every_person_is_in_exactly_one_segment(sendlog, incident, support_sam):
    _freeze(incident, support_sam)
    by = Actor.for_user(support_sam)
    registry = services.segment_save(
        incident=incident,
        name="Has a registry",
        rules=[{"field": "metadata.has_registry", "op": "eq", "value": True}],
        by=by,
    )
    clicked = services.segment_save(
        incident=incident,
        name="Clicked",
        rules=[{"field": "latest_status", "op": "eq", "value": "clicked"}],
        by=by,
    )
    counts = {
        row["segment"].name: row["people"] for row in selectors.segment_counts(incident=incident)
    }
    # bob has a registry and clicked: the first matching segment wins.
    assert counts == {"Has a registry": 2, "Clicked": 0, "Everyone else": 1}
    assert not AffectedPerson.objects.filter(incident=incident, segment__isnull=True).exists()

    services.segment_delete(segment=registry, by=by)
    counts = {
        row["segment"].name: row["people"] for row in selectors.segment_counts(incident=incident)
    }
    assert counts == {"Clicked": 1, "Everyone else": 2}
    assert clicked.people.count() == 1


def test_a_segment_with_a_bad_rule_is_refused_and_nothing_changes(sendlog, incident, support_sam):
    _freeze(incident, support_sam)
    with pytest.raises(ValidationError, match="Rule 1"):
        services.segment_save(
            incident=incident,
            name="Hack",
            rules=[{"field": "metadata.x__contains", "op": "eq", "value": 1}],
            by=Actor.for_user(support_sam),
        )
    assert incident.segments.count() == 1


def test_suppressed_people_stay_on_the_list_flagged(sendlog, incident, support_sam):
    _freeze(incident, support_sam)
    Suppression.objects.create(address="bob@example.org", reason="hard_bounce", source="manual")
    people = selectors.affected_list(incident=incident)
    flags = {p.address: p.is_suppressed for p in people}
    assert flags == {
        "cust1@example.com": False,
        "anna@xn--bcher-kva.de": False,
        "bob@example.org": True,
    }
    assert sum(row["suppressed"] for row in selectors.segment_counts(incident=incident)) == 1


def test_a_person_is_removed_only_with_a_reason_and_it_is_audited(sendlog, incident, support_sam):
    _freeze(incident, support_sam)
    person = AffectedPerson.objects.get(incident=incident, address="bob@example.org")
    with pytest.raises(ValidationError, match="Say why"):
        services.affected_remove(person=person, reason=" ", by=Actor.for_user(support_sam))
    services.affected_remove(
        person=person, reason="Internal test account", by=Actor.for_user(support_sam)
    )
    assert selectors.affected_list(incident=incident).count() == 2
    entry = AuditEntry.objects.get(action="audience.person_removed")
    assert entry.after["reason"] == "Internal test account"
    assert entry.after["list_size"] == 2
    assert "bob@" not in str(entry.after)


def test_extra_people_come_from_a_csv_with_bad_rows_reported(sendlog, incident, support_sam):
    _freeze(incident, support_sam)
    text = "address,customer_id,locale\nnew@example.com,C9,fr\nnot-an-address,C10,en\nBOB@example.org,,\n"
    result = services.affected_add_from_csv(
        incident=incident, text=text, by=Actor.for_user(support_sam)
    )
    assert result.added == 1 and result.already_listed == 1
    assert [(p.line, "@" in p.reason or "local part" in p.reason) for p in result.problems] == [
        (3, True)
    ]
    added = AffectedPerson.objects.get(incident=incident, address="new@example.com")
    assert added.source == "csv" and added.locale == "fr" and added.segment.is_default
    assert AuditEntry.objects.filter(action="audience.extended_from_file").count() == 1


@pytest.mark.parametrize(
    ("filters", "people"),
    [
        ({"template": "registry-gift-purchased", "locale": "de"}, 1),
        ({"template": "registry-gift-purchased", "domain": "EXAMPLE.org"}, 1),
        ({"template": "registry-gift-purchased", "metadata": {"has_registry": "false"}}, 1),
        ({"template": "registry-gift-purchased", "status": "clicked"}, 1),
        ({"sent_from": "2026-11-28T09:04:00Z", "sent_until": "2026-11-28T09:06:00Z"}, 1),
    ],
)
def test_each_filter_narrows_the_audience(sendlog, filters, people):
    assert selectors.audience_preview(filters=AudienceFilter.from_dict(filters))["people"] == people


def test_a_query_without_template_tag_or_window_is_refused(db):
    with pytest.raises(ValidationError, match="at least a template"):
        AudienceFilter.from_dict({"locale": "en"})


def test_hostile_metadata_keys_are_refused(db):
    with pytest.raises(ValidationError, match="not a metadata key"):
        AudienceFilter.from_dict({"template": "x", "metadata": {"a__regex": ".*"}})


def test_preview_and_freeze_agree_on_a_person_whose_locale_changed(incident, support_sam):
    _send("x1", "eva@example.com", minutes=1, locale="en")
    _send("x2", "Eva@Example.com", minutes=50, locale="de")
    preview = selectors.audience_preview(filters=AudienceFilter.from_dict(MIS_SENT))
    assert {row["locale"]: row["people"] for row in preview["by_locale"]} == {"de": 1}
    _freeze(incident, support_sam)
    assert AffectedPerson.objects.get(incident=incident).locale == "de"


def test_a_segment_with_an_apology_cannot_be_deleted(sendlog, incident, support_sam):
    from campaigns import services as campaign_services

    _freeze(incident, support_sam)
    by = Actor.for_user(support_sam)
    segment = services.segment_save(
        incident=incident,
        name="Has a registry",
        rules=[{"field": "metadata.has_registry", "op": "eq", "value": True}],
        by=by,
    )
    campaign_services.version_create(
        segment=segment,
        by=by,
        sender_address="care@retailer.example",
        content={
            "en": {"subject": "Sorry", "text": "We are sorry.", "html": "<p>We are sorry.</p>"}
        },
    )
    with pytest.raises(ValidationError, match="has an apology"):
        services.segment_delete(segment=segment, by=by)
    assert incident.segments.filter(pk=segment.pk).exists()


def test_a_large_freeze_runs_in_the_background_and_shows_its_status(
    sendlog, incident, support_sam, settings, run_jobs
):
    settings.AUDIENCE_FREEZE_INLINE_MAX_MESSAGES = 2
    with run_jobs():
        query = services.audience_freeze_start(
            incident=incident,
            filters=AudienceFilter.from_dict(MIS_SENT),
            by=Actor.for_user(support_sam),
        )
        assert query.status == "queued" and query.message_count == 6
        assert not AffectedPerson.objects.filter(incident=incident).exists()
    query.refresh_from_db()
    assert query.status == "done" and query.people_count == 3 and query.list_hash
    assert AffectedPerson.objects.filter(incident=incident, added_by_query=query).count() == 3
    actions = list(AuditEntry.objects.filter(incident=incident).values_list("action", flat=True))
    assert actions[-2:] == ["audience.freeze_queued", "audience.frozen"]


def test_a_small_freeze_happens_at_once(sendlog, incident, support_sam):
    query = services.audience_freeze_start(
        incident=incident,
        filters=AudienceFilter.from_dict(MIS_SENT),
        by=Actor.for_user(support_sam),
    )
    assert query.status == "done" and query.people_count == 3
