"""The completion gate: resolved only when every active affected person is contacted or waived."""

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from incidents import services
from incidents.actors import Actor
from incidents.models import Incident
from tests.contact_data import people


def _by(user):
    return Actor.for_user(user)


def _to_monitoring(incident, user):
    for status in ("investigating", "contacting", "monitoring"):
        services.incident_transition(incident=incident, to_status=status, by=_by(user))


@pytest.fixture
def monitoring(incident, support_sam):
    _to_monitoring(incident, support_sam)
    return incident


def _status(incident) -> str:
    return Incident.objects.get(pk=incident.pk).status


def test_an_incident_with_one_pending_person_cannot_be_resolved(monitoring, support_sam):
    people(monitoring, support_sam, 1)
    with pytest.raises(ValidationError) as caught:
        services.incident_transition(incident=monitoring, to_status="resolved", by=_by(support_sam))
    assert caught.value.code == "contact_incomplete"
    assert caught.value.params == {"blocking": {"pending": 1}}
    assert "1 pending" in caught.value.messages[0]
    assert _status(monitoring) == "monitoring"


def test_the_refusal_counts_each_blocking_status(monitoring, support_sam):
    crowd = people(monitoring, support_sam, 3)
    services.contact_mark_unreachable(person=crowd[0], by=_by(support_sam))
    with pytest.raises(ValidationError) as caught:
        services.incident_transition(incident=monitoring, to_status="resolved", by=_by(support_sam))
    assert caught.value.params == {"blocking": {"pending": 2, "unreachable": 1}}


def test_once_everyone_is_contacted_or_waived_the_incident_resolves(
    monitoring, support_sam, comms_cleo
):
    crowd = people(monitoring, support_sam, 2)
    services.contact_record(person=crowd[0], method="phone", by=_by(support_sam))
    services.contact_waive(person=crowd[1], reason="Account closed", by=_by(comms_cleo))
    services.incident_transition(incident=monitoring, to_status="resolved", by=_by(support_sam))
    assert _status(monitoring) == "resolved"


def test_removed_people_do_not_block_resolving(monitoring, support_sam):
    crowd = people(monitoring, support_sam, 2)
    services.contact_record(person=crowd[0], method="letter", by=_by(support_sam))
    services.affected_remove(person=crowd[1], reason="Internal test address", by=_by(support_sam))
    services.incident_transition(incident=monitoring, to_status="resolved", by=_by(support_sam))
    assert _status(monitoring) == "resolved"


# --- The web UI ------------------------------------------------------------------------------


def test_the_resolve_page_shows_what_blocks_it_with_a_link_to_each_list(
    client, monitoring, support_sam
):
    crowd = people(monitoring, support_sam, 3)
    services.contact_mark_unreachable(person=crowd[0], by=_by(support_sam))
    client.force_login(support_sam)
    url = reverse("incidents:transition", args=[monitoring.reference])
    html = client.post(url, {"to_status": "resolved"}).content.decode()
    followup = reverse("incidents:followup", args=[monitoring.reference])
    assert f'href="{followup}?status=pending"><strong>2</strong> pending' in html
    assert f'href="{followup}?status=unreachable"><strong>1</strong> unreachable' in html
    assert "Resolve incident</button>" not in html


def test_resolving_with_one_pending_person_is_refused_in_the_ui(client, monitoring, support_sam):
    people(monitoring, support_sam, 1)
    client.force_login(support_sam)
    url = reverse("incidents:transition", args=[monitoring.reference])
    response = client.post(
        url, {"to_status": "resolved", "step": "confirm", "confirm": "on"}, follow=True
    )
    assert "Not everyone affected has been contacted or waived: 1 pending." in (
        response.content.decode()
    )
    assert _status(monitoring) == "monitoring"


def test_the_ui_resolves_once_everyone_is_contacted(client, monitoring, support_sam):
    crowd = people(monitoring, support_sam, 1)
    services.contact_record(person=crowd[0], method="phone", by=_by(support_sam))
    client.force_login(support_sam)
    url = reverse("incidents:transition", args=[monitoring.reference])
    assert (
        "Resolve incident</button>" in client.post(url, {"to_status": "resolved"}).content.decode()
    )
    client.post(url, {"to_status": "resolved", "step": "confirm", "confirm": "on"})
    assert _status(monitoring) == "resolved"


# --- The API ---------------------------------------------------------------------------------


def test_resolving_with_one_pending_person_is_refused_by_the_api(client, monitoring, support_sam):
    people(monitoring, support_sam, 1)
    client.force_login(support_sam)
    response = client.post(
        f"/api/incidents/{monitoring.reference}/transition/",
        {"status": "resolved"},
        content_type="application/json",
    )
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "contact_incomplete"
    assert error["details"] == {"pending": 1}
    completion = client.get(f"/api/incidents/{monitoring.reference}/completion/").json()
    assert completion["complete"] is False
    [blocker] = completion["blocking"]
    assert (blocker["status"], blocker["people"]) == ("pending", 1)
    assert blocker["api_url"].endswith(
        f"/api/incidents/{monitoring.reference}/contact/people/?status=pending"
    )
    assert client.get(blocker["api_url"]).json()["results"][0]["contact_status"] == "pending"


def test_the_api_resolves_once_everyone_is_contacted_or_waived(
    client, monitoring, support_sam, comms_cleo
):
    crowd = people(monitoring, support_sam, 1)
    client.force_login(comms_cleo)
    waived = client.post(
        f"/api/incidents/{monitoring.reference}/contact/people/{crowd[0].pk}/waive/",
        {"reason": "Asked never to be contacted"},
        content_type="application/json",
    )
    assert waived.status_code == 200 and waived.json()["contact_status"] == "waived"
    assert client.get(f"/api/incidents/{monitoring.reference}/completion/").json() == {
        "complete": True,
        "blocking": [],
    }
    response = client.post(
        f"/api/incidents/{monitoring.reference}/transition/",
        {"status": "resolved"},
        content_type="application/json",
    )
    assert response.status_code == 200 and response.json()["status"] == "resolved"
