"""The contact API: people by status, one person's ledger, recording, waiving, bulk, reports."""

from incidents import services
from incidents.actors import Actor
from incidents.models import AffectedPerson, AuditEntry
from tests.contact_data import campaign, delivery, people


def _api(incident, path=""):
    return f"/api/incidents/{incident.reference}/{path}"


def _post(client, url, data):
    return client.post(url, data, content_type="application/json")


def test_support_records_a_letter_and_a_second_record_is_a_409(client, incident, support_sam):
    [person] = people(incident, support_sam, 1)
    client.force_login(support_sam)
    url = _api(incident, f"contact/people/{person.pk}/record/")
    first = _post(client, url, {"method": "letter", "note": "Posted 1 Dec"})
    assert first.status_code == 200
    body = first.json()
    assert (body["contact_status"], body["contact_method"]) == ("contacted", "letter")
    assert [row["status"] for row in body["history"]] == ["contacted"]
    again = _post(client, url, {"method": "phone"})
    assert (again.status_code, again.json()["error"]["code"]) == (409, "unchanged")


def test_email_is_not_a_method_a_person_can_record(client, incident, support_sam):
    [person] = people(incident, support_sam, 1)
    client.force_login(support_sam)
    response = _post(
        client, _api(incident, f"contact/people/{person.pk}/record/"), {"method": "email"}
    )
    assert response.status_code == 400 and "method" in response.json()["error"]["fields"]


def test_waiving_needs_a_reason_and_the_comms_or_admin_role(
    client, incident, support_sam, comms_cleo
):
    [person] = people(incident, support_sam, 1)
    url = _api(incident, f"contact/people/{person.pk}/waive/")
    client.force_login(support_sam)
    refused = _post(client, url, {"reason": "Closed"})
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "permission_denied")
    client.force_login(comms_cleo)
    empty = _post(client, url, {"reason": ""})
    assert empty.status_code == 400 and "reason" in empty.json()["error"]["fields"]
    assert AffectedPerson.objects.get(pk=person.pk).contact_status == "pending"
    assert _post(client, url, {"reason": "Closed"}).json()["contact_status"] == "waived"


def test_a_contacted_person_cannot_be_waived(client, incident, support_sam, comms_cleo):
    [person] = people(incident, support_sam, 1)
    services.contact_record(person=person, method="phone", by=Actor.for_user(support_sam))
    client.force_login(comms_cleo)
    response = _post(client, _api(incident, f"contact/people/{person.pk}/waive/"), {"reason": "x"})
    assert (response.status_code, response.json()["error"]["code"]) == (
        409,
        "illegal_contact_transition",
    )


def test_the_queue_lists_my_unreachable_people_by_cursor(client, incident, support_sam):
    crowd = people(incident, support_sam, 3)
    for person in crowd[:2]:
        services.contact_mark_unreachable(person=person, by=Actor.for_user(support_sam))
    client.force_login(support_sam)
    assigned = _post(
        client, _api(incident, f"contact/people/{crowd[0].pk}/assign/"), {"assignee": "me"}
    )
    assert assigned.json()["followup_assignee"] == "support_sam"
    mine = client.get(
        _api(incident, "contact/people/"), {"status": "unreachable", "assignee": "mine"}
    )
    assert [row["id"] for row in mine.json()["results"]] == [crowd[0].pk]
    free = client.get(
        _api(incident, "contact/people/"), {"status": "unreachable", "assignee": "none"}
    )
    assert [row["reason"] for row in free.json()["results"]] == ["no_email"]
    bad = client.get(_api(incident, "contact/people/"), {"status": "lost"})
    assert bad.status_code == 400


def test_bulk_assign_by_filters_and_the_limit(client, incident, support_sam, settings):
    crowd = people(incident, support_sam, 3)
    client.force_login(support_sam)
    response = _post(
        client,
        _api(incident, "contact/bulk/"),
        {"action": "assign", "assignee": "me", "filters": {"status": "pending"}},
    )
    assert response.json() == {"changed": 3, "skipped": 0}
    settings.CONTACT_BULK_MAX = 2
    too_many = _post(
        client,
        _api(incident, "contact/bulk/"),
        {"action": "record", "method": "letter", "filters": {}},
    )
    assert (too_many.status_code, too_many.json()["error"]["code"]) == (400, "too_many")
    two = _post(
        client,
        _api(incident, "contact/bulk/"),
        {"action": "record", "method": "letter", "ids": [crowd[0].pk, crowd[1].pk]},
    )
    assert two.json() == {"changed": 2, "skipped": 0}
    assert AuditEntry.objects.filter(action="contact.bulk_record").count() == 1


def test_bulk_waive_is_for_comms(client, incident, support_sam, comms_cleo):
    crowd = people(incident, support_sam, 2)
    body = {"reason": "Duplicate accounts", "ids": [p.pk for p in crowd]}
    client.force_login(support_sam)
    assert _post(client, _api(incident, "contact/bulk-waive/"), body).status_code == 403
    client.force_login(comms_cleo)
    assert _post(client, _api(incident, "contact/bulk-waive/"), body).json() == {
        "changed": 2,
        "skipped": 0,
    }


def test_the_dashboard_and_unconfirmed_deliveries_are_readable_by_an_auditor(
    client, incident, support_sam, auditor_abe
):
    crowd = people(incident, support_sam, 2)
    camp = campaign(incident, crowd[0].segment, support_sam)
    old = delivery(camp, crowd[0], "sent", sent_minutes_ago=240)
    client.force_login(auditor_abe)
    board = client.get(_api(incident, "dashboard/")).json()
    assert board["funnel"] == {"affected": 2, "sent": 1, "delivered": 0, "contacted": 0}
    assert board["unconfirmed"] == 1 and board["as_of"]
    unconfirmed = client.get(_api(incident, "unconfirmed/")).json()["results"]
    assert [(row["id"], row["person"]) for row in unconfirmed] == [(old.pk, crowd[0].pk)]
    person = client.get(_api(incident, f"contact/people/{crowd[1].pk}/")).json()
    assert person["contact_status"] == "pending" and person["history"] == []
