"""The audience, send log and suppression pages, tested as a person using them would notice."""

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from campaigns import services as campaign_services
from campaigns.models import Suppression
from incidents import services
from incidents.actors import Actor
from incidents.models import (
    AffectedPerson,
    AudienceQuery,
    AuditEntry,
    Incident,
    Segment,
    SendLogEntry,
    SendLogImport,
    TimelineEntry,
)
from tests.conftest import SETUP

User = get_user_model()

# Yesterday 09:00 UTC: recent enough for the template suggestions (last 30 days).
T0 = (
    (timezone.now() - timedelta(days=1))
    .astimezone(UTC)
    .replace(hour=9, minute=0, second=0, microsecond=0)
)


def url(name: str, incident: Incident, **kwargs) -> str:
    return reverse(f"incidents:{name}", kwargs={"reference": incident.reference, **kwargs})


def text(response) -> str:
    """The page as a reader sees it: tags dropped, whitespace collapsed."""
    html = response.content.decode()
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def minute(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")


def _row(message_id, recipient, *, minutes=0, template="registry-gift-purchased", **extra):
    return {
        "message_id": message_id,
        "recipient": recipient,
        "template": template,
        "sent_at": (T0 + timedelta(minutes=minutes)).isoformat(),
        **extra,
    }


@pytest.fixture
def sendlog(db):
    """Seven messages through the real ingest: six of the mis-sent template to three people."""
    services.sendlog_ingest_rows(
        rows=[
            _row("m1", "Cust1@Example.com", locale="en", metadata={"has_registry": False}),
            _row("m2", "cust1@example.com", minutes=5, locale="en", customer_id="C-1"),
            _row(
                "m3", "cust1@EXAMPLE.COM", minutes=9, locale="en", metadata={"has_registry": False}
            ),
            _row("m4", "anna@example.de", locale="de", metadata={"has_registry": True}),
            _row("m5", "ANNA@example.de", minutes=3, locale="de", metadata={"has_registry": True}),
            _row("m6", "bob@example.org", locale="en", metadata={"has_registry": True}),
            _row("m7", "carol@example.org", template="weekly-newsletter"),
        ],
        by=SETUP,
    )


@pytest.fixture
def mis_sent(support_sam):
    """An incident whose mis-sent message fields describe the send log above."""
    return services.incident_open(
        by=Actor.for_user(support_sam),
        title="Registry gift notice to the wrong customers",
        summary="Sent to customers without a registry.",
        original_template="registry-gift-purchased",
        sent_from=T0,
        sent_until=T0 + timedelta(minutes=30),
    )


QUERY = {"preview": "1", "template": "registry-gift-purchased"}


def freeze_data(response) -> dict:
    """What the preview's freeze form posts, with the box ticked."""
    form = response.context["freeze_form"]
    return {
        **{name: form.initial[name] for name in ("filters", "people", "queries_seen")},
        "confirm": "on",
    }


def frozen(incident, user) -> AudienceQuery:
    from incidents.filters import AudienceFilter

    return services.audience_freeze(
        incident=incident,
        filters=AudienceFilter.from_dict({"template": "registry-gift-purchased"}),
        by=Actor.for_user(user),
    )


def test_a_large_freeze_runs_in_the_background_and_the_page_follows_it(
    login, support_sam, sendlog, mis_sent, settings, run_jobs
):
    settings.AUDIENCE_FREEZE_INLINE_MAX_MESSAGES = 2
    client = login(support_sam)
    preview = client.get(url("audience", mis_sent), QUERY)
    with run_jobs():
        response = client.post(url("audience-freeze", mis_sent), freeze_data(preview), follow=True)
        assert messages_of(response) == [
            "Freezing 6 messages in the background. This page refreshes until the list is ready."
        ]
        assert 'http-equiv="refresh"' in response.content.decode()
        assert "Queued…" in text(response)
    page = client.get(url("audience", mis_sent))
    assert 'http-equiv="refresh"' not in page.content.decode()
    query = AudienceQuery.objects.get(incident=mis_sent)
    assert (query.status, query.people_count) == ("done", 3)


# --- Finding who received it ------------------------------------------------------------


def test_the_query_form_starts_from_the_incidents_template_and_window_in_utc(
    login, support_sam, sendlog, mis_sent
):
    response = login(support_sam).get(url("audience", mis_sent))

    html = response.content.decode()
    assert 'value="registry-gift-purchased"' in html
    assert f'value="{minute(T0)}"' in html
    assert f'value="{minute(T0 + timedelta(minutes=30))}"' in html
    assert "Sent from (UTC)" in text(response)
    assert '<datalist id="recent-templates">' in html
    assert '<option value="weekly-newsletter">' in html
    assert "Nothing frozen yet." in text(response)


def test_support_previews_then_freezes_and_sees_the_counts(login, support_sam, sendlog, mis_sent):
    client = login(support_sam)

    preview = client.get(url("audience", mis_sent), QUERY)

    page = text(preview)
    assert "This query finds 6 messages to 3 distinct people." in page
    assert "Freeze 3 people into the affected list" in page
    assert preview.context["preview"]["by_locale"] == [
        {"locale": "en", "people": 2, "messages": 4},
        {"locale": "de", "people": 1, "messages": 2},
    ]
    assert "Cust1@Example.com" in page  # the sample, as received
    assert not AffectedPerson.objects.exists()  # a preview changes nothing

    response = client.post(url("audience-freeze", mis_sent), freeze_data(preview), follow=True)

    assert response.redirect_chain[-1][0] == url("audience", mis_sent) + "#frozen"
    assert messages_of(response) == [
        "Froze 3 people from 6 messages: 3 added to the affected list."
    ]
    query = AudienceQuery.objects.get(incident=mis_sent)
    assert (query.message_count, query.people_count, query.people_added) == (6, 3, 3)
    assert query.created_by == support_sam
    page = text(response)
    assert query.list_hash in page
    assert "Template registry-gift-purchased" in page
    assert "3 people on the list" in page
    assert AffectedPerson.objects.filter(incident=mis_sent).count() == 3


def test_the_preview_updates_in_place_with_htmx(login, support_sam, sendlog, mis_sent):
    response = login(support_sam).get(url("audience", mis_sent), QUERY, HTTP_HX_REQUEST="true")

    html = response.content.decode()
    assert html.lstrip().startswith('<div id="finder">')
    assert "<html" not in html
    assert "This query finds 6 messages" in text(response)
    assert "HX-Request" in response["Vary"]


@pytest.mark.parametrize("role_user", ["comms_cleo", "auditor_abe"])
def test_the_freeze_is_refused_for_comms_and_auditors_and_nothing_changes(
    request, login, support_sam, sendlog, mis_sent, role_user
):
    client = login(request.getfixturevalue(role_user))
    preview = client.get(url("audience", mis_sent), QUERY)
    assert "Your role can preview but not freeze." in text(preview)
    assert url("audience-freeze", mis_sent) not in preview.content.decode()
    audit_before = AuditEntry.objects.count()

    response = client.post(url("audience-freeze", mis_sent), freeze_data(preview))

    assert response.status_code == 403
    assert not AudienceQuery.objects.exists()
    assert not AffectedPerson.objects.exists()
    assert AuditEntry.objects.count() == audit_before


def test_a_filter_that_describes_nothing_shows_the_error_on_the_form(
    login, support_sam, sendlog, mis_sent
):
    response = login(support_sam).get(
        url("audience", mis_sent), {"preview": "1", "template": "", "locale": "en"}
    )

    assert (
        "Describe the mis-sent email with at least a template, a tag or a sending window."
        in text(response)
    )
    assert response.context["preview"] is None
    assert "Freeze" not in text(response)


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"domain": "not a domain"}, "domain", "is not a valid domain name"),
        (
            {"sent_from": "2026-03-02T10:00", "sent_until": "2026-03-02T09:00"},
            "sent_until",
            "The window must end after it starts.",
        ),
        (
            {"meta_key_0": "has registry", "meta_value_0": "true"},
            "meta_key_0",
            "is not a metadata key",
        ),
        ({"meta_value_1": "true"}, "meta_key_1", "Name the metadata key for this value."),
        ({"status": "lost"}, "status", "Select a valid choice."),
    ],
)
def test_a_bad_filter_shows_the_error_next_to_its_field(
    login, support_sam, sendlog, mis_sent, params, field, message
):
    response = login(support_sam).get(url("audience", mis_sent), {**QUERY, **params})

    form = response.context["form"]
    assert message in " ".join(form.errors[field])
    assert message in text(response)
    assert 'aria-invalid="true"' in response.content.decode()
    assert response.context["preview"] is None


def test_metadata_values_are_matched_as_json_when_they_parse(login, support_sam, sendlog, mis_sent):
    response = login(support_sam).get(
        url("audience", mis_sent), {**QUERY, "meta_key_0": "has_registry", "meta_value_0": "true"}
    )

    assert "This query finds 3 messages to 2 distinct people." in text(response)


def test_freezing_twice_from_the_same_preview_freezes_once(login, support_sam, sendlog, mis_sent):
    client = login(support_sam)
    data = freeze_data(client.get(url("audience", mis_sent), QUERY))
    client.post(url("audience-freeze", mis_sent), data, follow=True)
    audit_before = AuditEntry.objects.count()

    again = client.post(url("audience-freeze", mis_sent), data, follow=True)

    [message] = messages_of(again)
    assert message.startswith("Nothing was frozen: the list changed since this preview")
    assert AudienceQuery.objects.count() == 1
    assert AuditEntry.objects.count() == audit_before


def test_freezing_without_ticking_the_box_shows_the_preview_again_and_changes_nothing(
    login, support_sam, sendlog, mis_sent
):
    client = login(support_sam)
    data = freeze_data(client.get(url("audience", mis_sent), QUERY))
    del data["confirm"]

    response = client.post(url("audience-freeze", mis_sent), data, follow=True)

    assert messages_of(response) == ["Tick the box to confirm before freezing."]
    assert "This query finds 6 messages to 3 distinct people." in text(response)
    assert not AudienceQuery.objects.exists()


# --- Segments ----------------------------------------------------------------------------


def rule_data(name, *rules, position=""):
    data = {"name": name, "position": position}
    for i, (field, key, op, value) in enumerate(rules):
        data |= {
            f"rule_field_{i}": field,
            f"rule_key_{i}": key,
            f"rule_op_{i}": op,
            f"rule_value_{i}": value,
        }
    return data


def test_creating_a_segment_shows_counts_per_segment_and_every_person_in_exactly_one(
    login, support_sam, sendlog, mis_sent
):
    frozen(mis_sent, support_sam)
    campaign_services.suppression_add(
        address="bob@example.org", reason="complaint", source="manual", by=SETUP
    )
    client = login(support_sam)

    response = client.post(
        url("segment-create", mis_sent),
        rule_data("Has a registry", ("metadata", "has_registry", "eq", "true")),
        follow=True,
    )

    assert messages_of(response) == ["Segment “Has a registry” created; the list is re-split."]
    rows = {
        row["segment"].name: (row["people"], row["suppressed"]) for row in response.context["rows"]
    }
    assert rows == {"Has a registry": (2, 1), "Everyone else": (1, 0)}
    assert [row["segment"].name for row in response.context["rows"]][-1] == "Everyone else"
    page = text(response)
    assert "metadata… is true" not in page
    assert "Everyone on the list, each in exactly one segment 3 1" in page
    people = AffectedPerson.objects.filter(incident=mis_sent)
    assert sum(people.filter(segment=s).count() for s in Segment.objects.all()) == people.count()


def test_a_bad_rule_shows_its_error_and_creates_nothing(login, support_sam, sendlog, mis_sent):
    frozen(mis_sent, support_sam)
    client = login(support_sam)

    response = client.post(
        url("segment-create", mis_sent),
        rule_data(
            "Heavy",
            ("locale", "", "eq", "en"),
            ("message_count", "", "gte", "lots"),
            ("metadata", "", "eq", "x"),
        ),
    )

    assert response.status_code == 200
    form = response.context["form"]
    assert form.errors["rule_value_1"] == ["Messages received is a whole number, such as 2."]
    assert form.errors["rule_key_2"] == ["Name the metadata key."]
    assert "Please correct the fields marked below." in text(response)
    assert not Segment.objects.filter(name="Heavy").exists()


def test_a_duplicate_segment_name_is_refused(login, support_sam, sendlog, mis_sent):
    frozen(mis_sent, support_sam)
    client = login(support_sam)
    data = rule_data("German", ("locale", "", "eq", "de"))
    client.post(url("segment-create", mis_sent), data)

    response = client.post(url("segment-create", mis_sent), data)

    assert "This incident already has a segment called “German”." in text(response)
    assert Segment.objects.filter(name="German").count() == 1


def test_editing_a_segment_changes_its_rules_and_order(login, support_sam, sendlog, mis_sent):
    frozen(mis_sent, support_sam)
    by = Actor.for_user(support_sam)
    german = services.segment_save(
        incident=mis_sent,
        name="German",
        rules=[{"field": "locale", "op": "eq", "value": "de"}],
        by=by,
    )
    services.segment_save(
        incident=mis_sent,
        name="Registry",
        rules=[{"field": "metadata.has_registry", "op": "eq", "value": True}],
        by=by,
    )
    client = login(support_sam)
    form = client.get(url("segment-edit", mis_sent, segment_id=german.pk))
    assert 'value="de"' in form.content.decode()

    response = client.post(
        url("segment-edit", mis_sent, segment_id=german.pk),
        rule_data("German speakers", ("locale", "", "in", "de, at"), position="5"),
        follow=True,
    )

    assert messages_of(response) == ["Segment “German speakers” saved."]
    names = [row["segment"].name for row in response.context["rows"]]
    assert names == ["Registry", "German speakers", "Everyone else"]
    assert "locale is one of de, at" in text(response)


def test_deleting_a_segment_asks_first_and_moves_its_people(login, support_sam, sendlog, mis_sent):
    frozen(mis_sent, support_sam)
    german = services.segment_save(
        incident=mis_sent,
        name="German",
        rules=[{"field": "locale", "op": "eq", "value": "de"}],
        by=Actor.for_user(support_sam),
    )
    client = login(support_sam)

    ask = client.get(url("segment-delete", mis_sent, segment_id=german.pk))
    assert "“German” holds 1 person." in text(ask)
    assert Segment.objects.filter(pk=german.pk).exists()

    response = client.post(
        url("segment-delete", mis_sent, segment_id=german.pk), {"confirm": "delete"}, follow=True
    )

    assert messages_of(response) == ["Segment “German” deleted; its people moved on."]
    assert not Segment.objects.filter(pk=german.pk).exists()
    rows = {row["segment"].name: row["people"] for row in response.context["rows"]}
    assert rows == {"Everyone else": 3}

    again = client.post(
        url("segment-delete", mis_sent, segment_id=german.pk), {"confirm": "delete"}, follow=True
    )
    assert messages_of(again) == ["That segment no longer exists: it was deleted already."]


def test_everyone_else_cannot_be_deleted_and_is_offered_no_delete_link(
    login, support_sam, sendlog, mis_sent
):
    frozen(mis_sent, support_sam)
    everyone = Segment.objects.get(incident=mis_sent, is_default=True)
    client = login(support_sam)

    page = client.get(url("segments", mis_sent))
    assert url("segment-delete", mis_sent, segment_id=everyone.pk) not in page.content.decode()

    response = client.post(
        url("segment-delete", mis_sent, segment_id=everyone.pk), {"confirm": "delete"}, follow=True
    )

    assert messages_of(response) == [
        "The default segment cannot be deleted: it catches everyone else."
    ]
    assert Segment.objects.filter(pk=everyone.pk).exists()


def test_comms_sees_segments_but_cannot_change_them(
    login, comms_cleo, support_sam, sendlog, mis_sent
):
    frozen(mis_sent, support_sam)
    client = login(comms_cleo)

    page = client.get(url("segments", mis_sent))

    assert page.status_code == 200
    assert "New segment" not in text(page)
    response = client.post(
        url("segment-create", mis_sent), rule_data("X", ("locale", "", "eq", "de"))
    )
    assert response.status_code == 403
    assert not Segment.objects.filter(name="X").exists()


# --- The affected list --------------------------------------------------------------------


def test_the_list_shows_each_persons_details(login, support_sam, sendlog, mis_sent):
    frozen(mis_sent, support_sam)

    response = login(support_sam).get(url("people", mis_sent))

    page = text(response)
    assert "3 people match." in page
    cust = AffectedPerson.objects.get(address="cust1@example.com")
    row = re.search(r"<tr>\s*<td>cust1@EXAMPLE.COM</td>.*?</tr>", response.content.decode(), re.S)
    assert row is not None
    cells = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", row.group(0)))
    assert "cust1@example.com" in cells
    assert "Everyone else" in cells
    assert f" {cust.message_count} " in cells and cust.message_count == 3
    assert T0.strftime("%-d %b %Y, %H:%M") in cells


def test_suppressed_people_are_flagged_in_the_list(login, support_sam, sendlog, mis_sent):
    frozen(mis_sent, support_sam)
    campaign_services.suppression_add(
        address="ANNA@example.de", reason="unsubscribed", source="manual", by=SETUP
    )
    client = login(support_sam)

    html = client.get(url("people", mis_sent)).content.decode()
    [anna_row] = [r for r in re.findall(r"<tr>.*?</tr>", html, re.S) if "anna@example.de" in r]
    assert "Suppressed</span>" in anna_row
    assert html.count("flag--suppressed") == 1

    only = client.get(url("people", mis_sent), {"suppressed": "yes"})
    assert [p.address for p in only.context["people"]] == ["anna@example.de"]
    assert "1 person matches." in text(only)


def test_the_list_searches_by_address_and_customer_id(login, support_sam, sendlog, mis_sent):
    frozen(mis_sent, support_sam)
    AffectedPerson.objects.filter(address="bob@example.org").update(customer_id="C-77")
    client = login(support_sam)

    by_address = client.get(url("people", mis_sent), {"q": "ANNA"})
    by_customer = client.get(url("people", mis_sent), {"q": "C-77"})

    assert [p.address for p in by_address.context["people"]] == ["anna@example.de"]
    assert [p.address for p in by_customer.context["people"]] == ["bob@example.org"]


def test_the_list_pages_by_fifty_and_keeps_the_filters(login, support_sam, mis_sent):
    csv_text = "address\n" + "".join(f"p{n:03}@example.com\n" for n in range(55))
    services.affected_add_from_csv(incident=mis_sent, text=csv_text, by=SETUP)
    client = login(support_sam)

    first = client.get(url("people", mis_sent), {"q": "example.com"})
    assert len(first.context["people"]) == 50
    assert "55 people match." in text(first)
    next_link = re.search(r'href="([^"]+)" rel="next"', first.content.decode()).group(1)
    assert "q=example.com" in next_link

    second = client.get(url("people", mis_sent) + next_link.replace("&amp;", "&"))
    assert [p.address for p in second.context["people"]] == [
        f"p{n:03}@example.com" for n in range(50, 55)
    ]
    assert 'rel="next"' not in second.content.decode()
    assert 'rel="prev"' in second.content.decode()


def test_the_list_costs_the_same_queries_for_few_people_or_many(
    login, support_sam, mis_sent, django_assert_max_num_queries
):
    services.affected_add_from_csv(incident=mis_sent, text="address\na@example.com\n", by=SETUP)
    client = login(support_sam)
    client.get(url("people", mis_sent))
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as few:
        client.get(url("people", mis_sent))
    csv_text = "address\n" + "".join(f"p{n:03}@example.com\n" for n in range(60))
    services.affected_add_from_csv(incident=mis_sent, text=csv_text, by=SETUP)
    with django_assert_max_num_queries(len(few)):
        client.get(url("people", mis_sent))


def test_removing_without_a_reason_is_refused(login, support_sam, sendlog, mis_sent):
    frozen(mis_sent, support_sam)
    person = AffectedPerson.objects.get(address="bob@example.org")
    client = login(support_sam)
    audit_before = AuditEntry.objects.count()

    response = client.post(url("person-remove", mis_sent, person_id=person.pk), {"reason": "   "})

    assert response.status_code == 200
    assert "Say why this person is removed from the list." in text(response)
    person.refresh_from_db()
    assert person.removed_at is None
    assert AuditEntry.objects.count() == audit_before


def test_removing_with_a_reason_moves_the_person_to_removed_people(
    login, support_sam, sendlog, mis_sent
):
    frozen(mis_sent, support_sam)
    person = AffectedPerson.objects.get(address="bob@example.org")
    client = login(support_sam)
    ask = client.get(url("person-remove", mis_sent, person_id=person.pk))
    assert "Remove from the list?" in text(ask)

    response = client.post(
        url("person-remove", mis_sent, person_id=person.pk),
        {"reason": "Internal test address"},
        follow=True,
    )

    assert messages_of(response) == ["Removed bob@example.org from the list."]
    assert "bob@example.org" not in [p.address for p in response.context["people"]]
    removed = client.get(url("people", mis_sent), {"show": "removed"})
    page = text(removed)
    assert "bob@example.org" in page
    assert "by support_sam: Internal test address" in page
    assert AuditEntry.objects.filter(action="audience.person_removed").count() == 1

    again = client.post(
        url("person-remove", mis_sent, person_id=person.pk), {"reason": "again"}, follow=True
    )
    assert messages_of(again) == ["bob@example.org was already removed from the list."]
    assert AuditEntry.objects.filter(action="audience.person_removed").count() == 1


def test_comms_cannot_remove_anyone_and_sees_no_remove_link(
    login, comms_cleo, support_sam, sendlog, mis_sent
):
    frozen(mis_sent, support_sam)
    person = AffectedPerson.objects.get(address="bob@example.org")
    client = login(comms_cleo)

    page = client.get(url("people", mis_sent)).content.decode()
    assert url("person-remove", mis_sent, person_id=person.pk) not in page
    response = client.post(url("person-remove", mis_sent, person_id=person.pk), {"reason": "x"})

    assert response.status_code == 403
    person.refresh_from_db()
    assert person.removed_at is None


def test_extra_people_from_a_csv_are_added_with_problems_by_line(
    login, support_sam, sendlog, mis_sent
):
    frozen(mis_sent, support_sam)
    upload = SimpleUploadedFile(
        "extra.csv",
        b"address,customer_id,locale\nnew@example.com,C-9,fr\nbob@example.org,,\nnot-an-address,,\n",
        content_type="text/csv",
    )

    response = login(support_sam).post(
        url("people-add", mis_sent), {"file": upload, "note": "Support tickets"}
    )

    page = text(response)
    assert "1 added" in page
    assert "1 already on the list" in page
    assert "1 line with problems" in page
    assert re.search(r"4 the address has no local part, @ and domain", page)
    new = AffectedPerson.objects.get(address="new@example.com")
    assert (new.customer_id, new.locale, new.source) == ("C-9", "fr", "csv")


def test_a_file_without_an_address_column_is_refused_clearly(login, support_sam, mis_sent):
    upload = SimpleUploadedFile("extra.csv", b"name,locale\nAnna,de\n", content_type="text/csv")

    response = login(support_sam).post(url("people-add", mis_sent), {"file": upload})

    assert "The file needs an “address” (or “email”) column." in text(response)
    assert not AffectedPerson.objects.exists()


# --- The incident overview ----------------------------------------------------------------


def test_the_overview_shows_the_audience_and_the_next_step(login, support_sam, sendlog, mis_sent):
    client = login(support_sam)

    before = text(client.get(mis_sent.get_absolute_url()))
    assert "0 people on the list" in before
    assert (
        "Next step: find everyone who received the mis-sent email. Find who received it" in before
    )

    frozen(mis_sent, support_sam)
    after = client.get(mis_sent.get_absolute_url())
    assert "3 people on the list" in text(after)
    assert "Split into segments" in text(after)
    for tab in ("audience", "segments", "people"):
        assert f'href="{url(tab, mis_sent)}"' in after.content.decode()


def test_a_resolved_incidents_overview_suggests_no_more_steps(
    login, support_sam, sendlog, mis_sent
):
    frozen(mis_sent, support_sam)
    Incident.objects.filter(pk=mis_sent.pk).update(status="resolved")

    page = text(login(support_sam).get(mis_sent.get_absolute_url()))

    assert "3 people on the list" in page
    assert "Next step" not in page
    assert "Split into segments" not in page


def test_with_an_empty_send_log_the_next_step_is_to_import_it(login, support_sam, mis_sent):
    page = login(support_sam).get(mis_sent.get_absolute_url())

    assert "the send log is empty" in text(page)
    assert f'href="{reverse("incidents:sendlog-imports")}"' in page.content.decode()


# --- Regulator notification ----------------------------------------------------------------


@pytest.fixture
def exposed(support_sam):
    return services.incident_open(
        by=Actor.for_user(support_sam),
        title="Registry names shown to strangers",
        summary="Gift buyers' names were in the email.",
        personal_data_exposed=True,
        became_aware_at=timezone.now() - timedelta(hours=10),
    )


def test_recording_the_regulator_notification_stops_the_clock(login, support_sam, exposed):
    client = login(support_sam)
    form_page = client.get(exposed.get_absolute_url())
    assert "Record the regulator notification" in text(form_page)
    notified = (timezone.now() - timedelta(hours=1)).replace(second=0, microsecond=0)

    response = client.post(
        url("regulator-notification", exposed),
        {"notified_at": minute(notified), "reference": "ICO-2026-118"},
        follow=True,
    )

    page = text(response)
    assert "Regulator notification recorded. The 72-hour clock is stopped." in messages_of(response)
    assert (
        f"Regulator notified at {notified.strftime('%-d %b %Y, %H:%M')} UTC (ref ICO-2026-118)."
        in page
    )
    assert "Record the regulator notification" not in page
    exposed.refresh_from_db()
    assert exposed.regulator_notified_at == notified
    assert AuditEntry.objects.filter(action="incident.regulator_notified").count() == 1

    again = client.post(
        url("regulator-notification", exposed), {"notified_at": minute(notified)}, follow=True
    )
    assert messages_of(again)[0].startswith("Nothing changed: the regulator notification")
    assert AuditEntry.objects.filter(action="incident.regulator_notified").count() == 1


def test_a_notification_in_the_future_or_without_a_time_is_refused(login, support_sam, exposed):
    client = login(support_sam)

    future = client.post(
        url("regulator-notification", exposed),
        {"notified_at": minute(timezone.now() + timedelta(days=1))},
        follow=True,
    )
    empty = client.post(url("regulator-notification", exposed), {"notified_at": ""}, follow=True)

    assert messages_of(future) == ["The notification cannot be in the future."]
    assert messages_of(empty) == ["Say when the regulator was notified."]
    exposed.refresh_from_db()
    assert exposed.regulator_notified_at is None


def test_comms_cannot_record_the_regulator_notification(login, comms_cleo, exposed):
    client = login(comms_cleo)

    assert "Record the regulator notification" not in text(client.get(exposed.get_absolute_url()))
    response = client.post(
        url("regulator-notification", exposed), {"notified_at": minute(timezone.now())}
    )

    assert response.status_code == 403
    exposed.refresh_from_db()
    assert exposed.regulator_notified_at is None
    assert not TimelineEntry.objects.filter(body__startswith="Regulator notified").exists()


# --- Send log imports ----------------------------------------------------------------------

IMPORTS = reverse("incidents:sendlog-imports")
UPLOAD = reverse("incidents:sendlog-import-start")
SENDLOG_CSV = (
    "MessageID,Email,SentAt,Template\n"
    f"x1,one@example.com,{T0.isoformat()},registry-gift-purchased\n"
    f"x2,two@example.com,{T0.isoformat()},registry-gift-purchased\n"
    "x3,not-an-address,yesterday,registry-gift-purchased\n"
).encode()


@pytest.fixture
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


def upload_data(client, content=SENDLOG_CSV, **overrides) -> dict:
    token = client.get(IMPORTS).context["form"].initial["token"]
    return {
        "file": SimpleUploadedFile("export.csv", content, content_type="text/csv"),
        "file_format": "",
        "map_message_id": "MessageID",
        "map_recipient": "Email",
        "map_sent_at": "SentAt",
        "map_template": "Template",
        "token": token,
        **overrides,
    }


def test_the_import_upload_runs_and_the_progress_page_shows_done_with_counts(
    login, support_sam, media, run_jobs
):
    client = login(support_sam)
    with run_jobs():
        response = client.post(UPLOAD, upload_data(client))

    imp = SendLogImport.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("incidents:sendlog-import", kwargs={"import_id": imp.pk})
    page = client.get(response["Location"])
    assert page.context["finished"] is True
    visible = text(page)
    assert "Done Finished" in visible
    assert "Rows read 3" in visible
    assert "Added to the send log 2" in visible
    assert "Rejected 1" in visible
    assert "Download the error report (CSV)" in visible
    assert 'hx-trigger="every 1s"' not in page.content.decode()
    assert imp.column_map == {
        "message_id": "MessageID",
        "recipient": "Email",
        "sent_at": "SentAt",
        "template": "Template",
    }
    assert SendLogEntry.objects.filter(message_id__in=["x1", "x2"]).count() == 2
    listing = text(client.get(IMPORTS))
    assert "export.csv" in listing and "Done" in listing


def test_the_progress_page_polls_every_second_while_the_import_runs(login, support_sam):
    imp = SendLogImport.objects.create(
        file_name="big.csv", file_format="csv", file_size=1000, bytes_read=250, status="running"
    )
    client = login(support_sam)
    page_url = reverse("incidents:sendlog-import", kwargs={"import_id": imp.pk})

    full = client.get(page_url)
    fragment = client.get(page_url, HTTP_HX_REQUEST="true")

    assert "Importing: 25% of the file read." in text(full)
    assert '<progress class="progress" max="100" value="25"' in full.content.decode()
    assert 'http-equiv="refresh"' in full.content.decode()  # inside <noscript>
    html = fragment.content.decode()
    assert html.lstrip().startswith('<section class="panel" id="progress"')
    assert f'hx-get="{page_url}" hx-trigger="every 1s" hx-swap="outerHTML"' in html


def test_a_file_whose_header_does_not_fit_is_refused_and_nothing_is_stored(
    login, support_sam, media
):
    client = login(support_sam)
    data = upload_data(
        client,
        content=b"Name,When\nAnna,today\n",
        map_message_id="",
        map_recipient="",
        map_sent_at="",
        map_template="",
    )

    response = client.post(UPLOAD, data)

    assert response.status_code == 200
    assert "The file has no message_id or recipient or sent_at column." in text(response)
    assert not SendLogImport.objects.exists()
    assert not any(media.rglob("*.csv"))


def test_a_mapping_naming_a_missing_column_is_refused(login, support_sam, media):
    client = login(support_sam)

    response = client.post(UPLOAD, upload_data(client, map_recipient="E-mail address"))

    assert "The file has no column “E-mail address” (for recipient)." in text(response)
    assert not SendLogImport.objects.exists()


def test_sending_the_upload_form_twice_imports_once(login, support_sam, media, run_jobs):
    client = login(support_sam)
    data = upload_data(client)
    with run_jobs():
        client.post(UPLOAD, data)

    data["file"] = SimpleUploadedFile("export.csv", SENDLOG_CSV, content_type="text/csv")
    again = client.post(UPLOAD, data)

    assert "This form was sent already, so the file was not imported again." in text(again)
    assert SendLogImport.objects.count() == 1


def test_the_error_report_download_needs_the_import_permission(
    login, client, support_sam, comms_cleo, media, run_jobs
):
    login(support_sam)
    with run_jobs():
        client.post(UPLOAD, upload_data(client))
    imp = SendLogImport.objects.get()
    report = reverse("incidents:sendlog-import-errors", kwargs={"import_id": imp.pk})

    response = client.get(report)
    assert response.status_code == 200
    assert response["Content-Disposition"] == (
        f'attachment; filename="sendlog-import-{imp.pk}-errors.csv"'
    )
    body = b"".join(response.streaming_content).decode()
    assert body.startswith("line,reason,excerpt")
    assert "\n4," in body

    client.logout()
    login(comms_cleo)
    page = client.get(reverse("incidents:sendlog-import", kwargs={"import_id": imp.pk}))
    assert "your role cannot download it" in text(page)
    assert report not in page.content.decode()
    assert client.get(report).status_code == 403


def test_comms_sees_imports_but_no_upload_form(login, comms_cleo):
    client = login(comms_cleo)

    page = client.get(IMPORTS)

    assert page.status_code == 200
    assert "Import a file" not in text(page)
    assert client.post(UPLOAD, {}).status_code == 403


# --- Suppressions ---------------------------------------------------------------------------

SUPPRESSIONS = reverse("campaigns:suppressions")


def lift_url(suppression) -> str:
    return reverse("campaigns:suppression-lift", kwargs={"suppression_id": suppression.pk})


def test_support_suppresses_an_address_by_hand(login, support_sam):
    client = login(support_sam)

    response = client.post(
        reverse("campaigns:suppression-add"),
        {"address": " Anna@Example.DE ", "reason": "do_not_contact", "note": "Ticket 4411"},
        follow=True,
    )

    assert messages_of(response) == ["anna@example.de is suppressed."]
    assert "Do-not-contact request" in text(response)
    again = client.post(
        reverse("campaigns:suppression-add"),
        {"address": "anna@example.de", "reason": "complaint"},
        follow=True,
    )
    assert messages_of(again) == [
        "anna@example.de was already suppressed (Do-not-contact request); nothing changed."
    ]
    assert Suppression.objects.get().reason == "do_not_contact"


def test_a_bad_address_is_refused_on_the_form(login, support_sam):
    response = login(support_sam).post(
        reverse("campaigns:suppression-add"), {"address": "anna", "reason": "complaint"}
    )

    assert response.status_code == 200
    assert "the address has no local part, @ and domain" in text(response)
    assert not Suppression.objects.exists()


def test_the_list_searches_and_filters_by_reason(login, support_sam):
    for address, reason in [
        ("a@x.com", "complaint"),
        ("b@x.com", "hard_bounce"),
        ("c@y.com", "complaint"),
    ]:
        campaign_services.suppression_add(address=address, reason=reason, source="manual", by=SETUP)
    client = login(support_sam)

    by_search = client.get(SUPPRESSIONS, {"q": "x.com"})
    by_reason = client.get(SUPPRESSIONS, {"reason": "complaint"})

    assert [s.address for s in by_search.context["suppressions"]] == ["b@x.com", "a@x.com"]
    assert [s.address for s in by_reason.context["suppressions"]] == ["c@y.com", "a@x.com"]
    assert "2 suppressions match." in text(by_reason)


def test_comms_cannot_add_a_suppression(login, comms_cleo):
    client = login(comms_cleo)

    assert "Suppress an address" not in text(client.get(SUPPRESSIONS))
    response = client.post(
        reverse("campaigns:suppression-add"), {"address": "a@example.com", "reason": "complaint"}
    )

    assert response.status_code == 403
    assert not Suppression.objects.exists()


def test_a_suppression_file_is_imported_with_problems_by_line(login, support_sam):
    upload = SimpleUploadedFile(
        "unsubs.csv", b"email,reason\na@example.com,\nb@example.com,complaint\nnope,\n"
    )

    response = login(support_sam).post(
        reverse("campaigns:suppression-import"), {"file": upload, "default_reason": "unsubscribed"}
    )

    page = text(response)
    assert "2 added" in page and "0 already suppressed" in page and "1 line with problems" in page
    assert dict(Suppression.objects.values_list("address", "reason")) == {
        "a@example.com": "unsubscribed",
        "b@example.com": "complaint",
    }


def test_only_an_admin_lifts_a_suppression_and_only_with_a_reason(
    login, client, support_sam, admin_ada
):
    suppression, _ = campaign_services.suppression_add(
        address="anna@example.de", reason="complaint", source="manual", by=SETUP
    )
    login(support_sam)
    assert "Lift" not in text(client.get(SUPPRESSIONS))
    assert client.post(lift_url(suppression), {"reason": "asked"}).status_code == 403
    client.logout()

    login(admin_ada)
    assert f'href="{lift_url(suppression)}"' in client.get(SUPPRESSIONS).content.decode()
    refused = client.post(lift_url(suppression), {"reason": " "})
    assert "Say why this address may be e-mailed again." in text(refused)
    assert Suppression.objects.filter(pk=suppression.pk).exists()

    response = client.post(
        lift_url(suppression), {"reason": "Re-subscribed, ticket 12"}, follow=True
    )

    assert messages_of(response) == ["anna@example.de may be e-mailed again."]
    assert not Suppression.objects.exists()
    entry = AuditEntry.objects.get(action="suppression.removed")
    assert entry.actor == admin_ada and entry.after == {"why": "Re-subscribed, ticket 12"}
    again = client.post(lift_url(suppression), {"reason": "again"}, follow=True)
    assert messages_of(again) == ["That suppression is not on the list: it was lifted already."]


# --- Layout ------------------------------------------------------------------------------------


def test_the_nav_links_to_the_send_log_and_suppressions_for_roles_that_can_see_them(
    login, client, support_sam
):
    html = login(support_sam).get(reverse("incidents:list")).content.decode()
    assert f'href="{IMPORTS}"' in html
    assert f'href="{SUPPRESSIONS}"' in html

    client.logout()
    nobody = User.objects.create_user("nobody")
    html = login(nobody).get(reverse("incidents:list")).content.decode()
    assert f'href="{IMPORTS}"' not in html
    assert f'href="{SUPPRESSIONS}"' not in html


def _nonce(response) -> str:
    return re.search(r"'nonce-([^']+)'", response["Content-Security-Policy"]).group(1)


def test_every_audience_page_renders_without_inline_styles_or_unnonced_scripts(
    login,
    support_sam,
    admin_ada,
    sendlog,
    mis_sent,
    exposed,
    media,
    run_jobs,
):
    frozen(mis_sent, support_sam)
    segment = services.segment_save(
        incident=mis_sent,
        name="German",
        rules=[{"field": "locale", "op": "eq", "value": "de"}],
        by=SETUP,
    )
    person = AffectedPerson.objects.get(address="bob@example.org")
    suppression, _ = campaign_services.suppression_add(
        address="bob@example.org", reason="complaint", source="manual", by=SETUP
    )
    client = login(support_sam)
    with run_jobs():
        client.post(UPLOAD, upload_data(client))
    imp = SendLogImport.objects.get()
    running = SendLogImport.objects.create(file_name="b.csv", file_format="csv", status="running")

    pages = [
        client.get(mis_sent.get_absolute_url()),
        client.get(exposed.get_absolute_url()),
        client.get(url("audience", mis_sent)),
        client.get(url("audience", mis_sent), QUERY),
        client.get(url("audience", mis_sent), {"preview": "1"}),
        client.get(url("audience", mis_sent), QUERY, HTTP_HX_REQUEST="true"),
        client.get(url("segments", mis_sent)),
        client.post(url("segment-create", mis_sent), rule_data("", ("locale", "", "gte", ""))),
        client.get(url("segment-edit", mis_sent, segment_id=segment.pk)),
        client.get(url("segment-delete", mis_sent, segment_id=segment.pk)),
        client.get(url("people", mis_sent)),
        client.get(url("people", mis_sent), {"show": "removed", "q": "nobody"}),
        client.get(url("person-remove", mis_sent, person_id=person.pk)),
        client.get(url("people-add", mis_sent)),
        client.get(IMPORTS),
        client.post(UPLOAD, {}),
        client.get(reverse("incidents:sendlog-import", kwargs={"import_id": imp.pk})),
        client.get(reverse("incidents:sendlog-import", kwargs={"import_id": running.pk})),
        client.get(SUPPRESSIONS),
        client.post(reverse("campaigns:suppression-add"), {"address": "x"}),
    ]
    client.logout()
    login(admin_ada)
    pages.append(client.get(lift_url(suppression)))

    assert all(p.status_code == 200 for p in pages), [p.status_code for p in pages]
    for page in pages:
        html = page.content.decode()
        where = page.request["PATH_INFO"]
        assert not re.search(r"\sstyle\s*=", html, re.IGNORECASE), where
        assert "<style" not in html, where
        assert "{#" not in html and "{%" not in html, where
        for tag in re.findall(r"<script[^>]*>", html):
            assert f'nonce="{_nonce(page)}"' in tag, where
            assert 'src="/static/' in tag, where
        assert not re.search(r"<script[^>]*>\s*[^<\s]", html), f"inline script on {where}"
        assert re.search(r"\shx-on|\son[a-z]+\s*=", html) is None, where


def test_everyone_else_can_be_renamed_but_takes_no_rules(login, support_sam, sendlog, mis_sent):
    frozen(mis_sent, support_sam)
    everyone = Segment.objects.get(incident=mis_sent, is_default=True)
    client = login(support_sam)

    form = client.get(url("segment-edit", mis_sent, segment_id=everyone.pk))
    assert "is the default segment: it takes everyone no other segment takes" in text(form)
    assert "rule_field_0" not in form.content.decode()

    response = client.post(
        url("segment-edit", mis_sent, segment_id=everyone.pk),
        {"name": "Everyone else (EN)", "rule_field_0": "locale", "rule_value_0": "de"},
        follow=True,
    )

    everyone.refresh_from_db()
    assert (everyone.name, everyone.rules) == ("Everyone else (EN)", [])
    assert [row["segment"].name for row in response.context["rows"]] == ["Everyone else (EN)"]


def test_a_file_that_is_not_utf8_is_refused_clearly(login, support_sam):
    upload = SimpleUploadedFile("unsubs.csv", "address\nmüller@example.de\n".encode("latin-1"))

    response = login(support_sam).post(
        reverse("campaigns:suppression-import"), {"file": upload, "default_reason": "complaint"}
    )

    assert "The file is not UTF-8 text: save or export it as CSV (UTF-8)." in text(response)
    assert not Suppression.objects.exists()
