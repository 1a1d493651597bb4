"""The follow-up queue and one person's contact page, as Support, Comms and auditors use them."""

from django.urls import reverse

from incidents import services
from incidents.actors import Actor
from incidents.models import AffectedPerson, AuditEntry
from tests.contact_data import campaign, delivery, people


def _url(name, incident, **kwargs):
    return reverse(f"incidents:{name}", kwargs={"reference": incident.reference, **kwargs})


def _status(person) -> str:
    return AffectedPerson.objects.get(pk=person.pk).contact_status


def test_the_queue_lists_the_unreachable_people_with_their_reason(client, incident, support_sam):
    crowd = people(incident, support_sam, 3)
    camp = campaign(incident, crowd[0].segment, support_sam)
    delivery(camp, crowd[0], "bounced", bounce_kind="hard")
    services.contact_mark_unreachable(person=crowd[0], by=Actor.for_user(support_sam))
    client.force_login(support_sam)
    html = client.get(_url("followup", incident)).content.decode()
    assert crowd[0].address in html and "Hard bounce" in html
    assert crowd[1].address not in html  # pending: not in the queue
    everyone = client.get(_url("followup", incident), {"status": ""}).content.decode()
    assert all(p.address in everyone for p in crowd)


def test_the_queue_pages_by_id_without_offsets(client, incident, support_sam):
    crowd = people(incident, support_sam, 55)
    client.force_login(support_sam)
    first = client.get(_url("followup", incident), {"status": "pending"})
    assert first.context["page"].next_after == crowd[49].pk
    second = client.get(_url("followup", incident), {"status": "pending", "after": crowd[49].pk})
    assert [p.pk for p in second.context["people"]] == [p.pk for p in crowd[50:]]


def test_support_records_a_phone_call_from_the_person_page(client, incident, support_sam):
    [person] = people(incident, support_sam, 1)
    client.force_login(support_sam)
    page = client.get(_url("contact-person", incident, person_id=person.pk)).content.decode()
    assert "Record a contact" in page and "Waive contacting" not in page
    response = client.post(
        _url("contact-record", incident, person_id=person.pk),
        {"method": "phone", "note": "Called, apologised"},
    )
    assert response.status_code == 302
    assert _status(person) == "contacted"
    ledger = client.get(_url("contact-person", incident, person_id=person.pk)).content.decode()
    assert "Called, apologised" in ledger and "Pending → <strong>Contacted</strong>" in ledger


def test_a_waiver_without_a_reason_is_shown_again_with_the_error(
    client, incident, comms_cleo, support_sam
):
    [person] = people(incident, support_sam, 1)
    client.force_login(comms_cleo)
    response = client.post(_url("contact-waive", incident, person_id=person.pk), {"reason": " "})
    assert response.status_code == 200
    assert "Say why this person does not need to be contacted." in response.content.decode()
    assert _status(person) == "pending"


def test_support_cannot_waive_from_the_ui(client, incident, support_sam):
    [person] = people(incident, support_sam, 1)
    client.force_login(support_sam)
    response = client.post(_url("contact-waive", incident, person_id=person.pk), {"reason": "x"})
    assert response.status_code == 403
    assert _status(person) == "pending"


def test_assign_all_matching_unreachable_people_to_me(client, incident, support_sam):
    crowd = people(incident, support_sam, 3)
    for person in crowd[:2]:
        services.contact_mark_unreachable(person=person, by=Actor.for_user(support_sam))
    client.force_login(support_sam)
    response = client.post(
        _url("followup-bulk", incident),
        {"action": "assign_me", "scope": "all", "status": "unreachable"},
        follow=True,
    )
    assert "Assign to me: 2 people changed." in response.content.decode()
    assert set(
        AffectedPerson.objects.filter(followup_assignee=support_sam).values_list("pk", flat=True)
    ) == {crowd[0].pk, crowd[1].pk}
    assert AuditEntry.objects.filter(action="contact.bulk_assign").count() == 1


def test_comms_waives_the_ticked_people_with_one_reason(client, incident, support_sam, comms_cleo):
    crowd = people(incident, support_sam, 3)
    client.force_login(comms_cleo)
    client.post(
        _url("followup-bulk", incident),
        {
            "action": "waive",
            "scope": "selected",
            "ids": [crowd[0].pk, crowd[2].pk],
            "note": "Accounts closed before the email",
            "status": "",
        },
    )
    assert [_status(p) for p in crowd] == ["waived", "pending", "waived"]


def test_an_auditor_reads_the_queue_without_any_buttons(client, incident, support_sam, auditor_abe):
    [person] = people(incident, support_sam, 1)
    client.force_login(auditor_abe)
    queue = client.get(_url("followup", incident), {"status": "pending"}).content.decode()
    assert person.address in queue and "Act on several people" not in queue
    page = client.get(_url("contact-person", incident, person_id=person.pk)).content.decode()
    assert "Record the contact" not in page and "Mark unreachable" not in page


def test_unconfirmed_deliveries_are_flagged_after_the_window(
    client, incident, support_sam, settings
):
    settings.RECONCILE_UNCONFIRMED_AFTER_MINUTES = 60
    crowd = people(incident, support_sam, 3)
    camp = campaign(incident, crowd[0].segment, support_sam)
    old = delivery(camp, crowd[0], "sent", sent_minutes_ago=61)
    delivery(camp, crowd[1], "sent", sent_minutes_ago=59)  # still inside the window
    delivery(camp, crowd[2], "delivered", sent_minutes_ago=120)  # confirmed
    client.force_login(support_sam)
    page = client.get(_url("unconfirmed", incident))
    assert [d.pk for d in page.context["deliveries"]] == [old.pk]
    csv_text = b"".join(client.get(_url("unconfirmed-csv", incident)).streaming_content).decode()
    lines = csv_text.strip().splitlines()
    assert lines[0].startswith("delivery_id,campaign_id,person_id,address")
    assert len(lines) == 2 and lines[1].startswith(f"{old.pk},{camp.pk},{crowd[0].pk},")


def test_the_unconfirmed_csv_escapes_spreadsheet_formulas(client, incident, support_sam):
    [person] = people(incident, support_sam, 1)
    AffectedPerson.objects.filter(pk=person.pk).update(customer_id="=HYPERLINK(1)")
    camp = campaign(incident, person.segment, support_sam)
    delivery(camp, person, "sent", sent_minutes_ago=600, esp_message_id="@cmd")
    client.force_login(support_sam)
    body = b"".join(client.get(_url("unconfirmed-csv", incident)).streaming_content).decode()
    assert ",'=HYPERLINK(1)," in body and ",'@cmd," in body
