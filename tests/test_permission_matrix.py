import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from tests.permission_matrix import MATRIX, PREFIX_DECISIONS, ROLES


def _walk(patterns, namespace=None):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            ns = pattern.namespace
            inner = f"{namespace}:{ns}" if namespace and ns else (ns or namespace)
            yield from _walk(pattern.url_patterns, inner)
        elif isinstance(pattern, URLPattern):
            name = pattern.name
            if name and namespace:
                name = f"{namespace}:{name}"
            # Unnamed routes are listed by pattern, under their namespace.
            yield name or (f"{namespace}:{pattern.pattern}" if namespace else str(pattern.pattern))


def all_url_names() -> list[str]:
    return sorted(set(_walk(get_resolver().url_patterns)))


def test_every_url_has_an_access_decision():
    undecided = [
        name
        for name in all_url_names()
        if name not in MATRIX and not any(name.startswith(p) for p in PREFIX_DECISIONS)
    ]
    assert undecided == [], f"Add these URLs to tests/permission_matrix.py: {undecided}"


def test_the_matrix_names_no_url_that_does_not_exist():
    assert sorted(set(MATRIX) - set(all_url_names())) == []


@pytest.fixture
def users(support_sam, comms_cleo, auditor_abe, admin_ada):
    return {
        "anon": None,
        "support": support_sam,
        "comms": comms_cleo,
        "auditor": auditor_abe,
        "admin": admin_ada,
    }


def _url(name: str, incident) -> str:
    kwargs = {}
    if name.startswith(
        ("incidents:detail", "incidents:edit", "incidents:transition", "incidents:add-note")
    ) or re.match(r"api-incident-(detail|transition|timeline)", name):
        kwargs["reference"] = incident.reference
    kwargs.update(_audience_ui_kwargs(name, incident))
    kwargs.update(_audience_api_kwargs(name, incident))
    kwargs.update(_messages_api_kwargs(name, incident))
    kwargs.update(_messages_ui_kwargs(name, incident))
    kwargs.update(_sending_api_kwargs(name, incident))
    kwargs.update(_sending_ui_kwargs(name, incident))
    kwargs.update(_export_kwargs(name, incident))
    kwargs.update(_contact_kwargs(name, incident))
    return reverse(name, kwargs=kwargs or None)


_CONTACT_ON_INCIDENT = (
    "incidents:dashboard",
    "incidents:unconfirmed",
    "incidents:followup",
    "incidents:contact-",
    "api-dashboard",
    "api-completion",
    "api-unconfirmed",
    "api-contact-",
)


def _contact_kwargs(name: str, incident) -> dict:
    """For the contact pages and API: one pending person, made without audit entries."""
    from incidents.models import AffectedPerson, Segment

    if not name.startswith(_CONTACT_ON_INCIDENT):
        return {}
    kwargs = {"reference": incident.reference}
    if name.startswith("incidents:contact-"):
        key = "person_id"
    elif name.startswith("api-contact-") and "bulk" not in name and name != "api-contact-people":
        key = "pk"
    else:
        return kwargs
    everyone, _ = Segment.objects.get_or_create(
        incident=incident, is_default=True, defaults={"name": "Everyone else"}
    )
    person = AffectedPerson.objects.create(
        incident=incident,
        address="p@example.com",
        original_address="p@example.com",
        segment=everyone,
    )
    return kwargs | {key: person.pk}


# Audience UI routes that take the incident's reference, and the object ids some take.
_AUDIENCE_UI_ON_INCIDENT = (
    "incidents:regulator-notification",
    "incidents:audience",
    "incidents:segment",
    "incidents:people",
    "incidents:person-remove",
)


def _audience_ui_kwargs(name: str, incident) -> dict:
    """Ids for the audience, send log and suppression pages, made without audit entries
    (so the auditor test's before-and-after counts see only the request)."""
    from campaigns.models import Suppression
    from incidents.models import AffectedPerson, Segment, SendLogImport

    kwargs = {}
    if name.startswith(_AUDIENCE_UI_ON_INCIDENT):
        kwargs["reference"] = incident.reference
    if name in ("incidents:segment-edit", "incidents:segment-delete"):
        kwargs["segment_id"] = Segment.objects.create(incident=incident, name="Germany").pk
    elif name == "incidents:person-remove":
        everyone = Segment.objects.create(incident=incident, name="Everyone else", is_default=True)
        person = AffectedPerson.objects.create(
            incident=incident,
            address="a@example.com",
            original_address="a@example.com",
            segment=everyone,
        )
        kwargs["person_id"] = person.pk
    elif name in ("incidents:sendlog-import", "incidents:sendlog-import-errors"):
        imp = SendLogImport.objects.create(file_name="log.csv", file_format="csv", status="done")
        kwargs["import_id"] = imp.pk
    elif name == "campaigns:suppression-lift":
        suppression = Suppression.objects.create(
            address="b@example.com", reason="complaint", source="manual"
        )
        kwargs["suppression_id"] = suppression.pk
    return kwargs


def _audience_api_kwargs(name: str, incident) -> dict:
    """The reference and ids for the audience API, objects made without audit entries."""
    from campaigns.models import Suppression
    from incidents.models import AffectedPerson, Segment, SendLogImport

    kwargs = {}
    if re.match(r"api-(audience|affected|segment)", name):
        kwargs["reference"] = incident.reference
    if name in ("api-segment-detail", "api-affected-remove"):
        everyone, _ = Segment.objects.get_or_create(
            incident=incident, is_default=True, defaults={"name": "Everyone else"}
        )
        kwargs["pk"] = everyone.pk
        if name == "api-affected-remove":
            kwargs["pk"] = AffectedPerson.objects.create(
                incident=incident,
                address="a@example.com",
                original_address="a@example.com",
                segment=everyone,
            ).pk
    elif name in ("api-sendlog-import-detail", "api-sendlog-import-error-report"):
        imp = SendLogImport.objects.create(file_name="log.csv", file_format="csv", status="done")
        kwargs["pk"] = imp.pk
    elif name == "api-suppression-detail":
        kwargs["pk"] = Suppression.objects.create(
            address="b@example.com", reason="complaint", source="manual"
        ).pk
    return kwargs


def _messages_api_kwargs(name: str, incident) -> dict:
    """For the messages API: version 1 of the default segment's message, without audit entries."""
    from campaigns.models import Message, MessageVersion
    from incidents.models import Segment

    if not name.startswith(("api-message-", "api-version-")):
        return {}
    everyone, _ = Segment.objects.get_or_create(
        incident=incident, is_default=True, defaults={"name": "Everyone else"}
    )
    message, _ = Message.objects.get_or_create(
        incident=incident,
        segment=everyone,
        defaults={"sender_address": "care@retailer.example", "version_count": 1},
    )
    version = message.versions.first()
    if version is None:
        version = MessageVersion(
            message=message,
            number=1,
            author=incident.owner,
            sender_address="care@retailer.example",
            fallback_locale="en",
            content={
                "en": {"subject": "We are sorry", "text": "Dear {{ first_name }}", "html": ""}
            },
        )
        version.content_hash = version.compute_hash()
        version.save()
    if name.startswith("api-message-"):
        return {"reference": incident.reference} | (
            {"pk": message.pk} if name == "api-message-versions" else {}
        )
    return {"pk": version.pk}


def _messages_ui_kwargs(name: str, incident) -> dict:
    """For the message pages: the Messages API's version 1, and one kept outbox email."""
    from campaigns.models import MessageVersion, OutboxMessage

    if name == "campaigns:outbox-message":
        kept = OutboxMessage.objects.create(
            message_id="<sandbox-1@amends.local>", from_email="care@retailer.example", subject="Hi"
        )
        return {"message_id": kept.pk}
    if not name.startswith(("campaigns:message", "campaigns:version")):
        return {}
    if name == "campaigns:messages":
        return {"reference": incident.reference}
    version = MessageVersion.objects.select_related("message").get(
        pk=_messages_api_kwargs("api-version-detail", incident)["pk"]
    )
    kwargs = {"reference": incident.reference, "segment_id": version.message.segment_id}
    return kwargs | ({"number": version.number} if name.startswith("campaigns:version") else {})


def _sending_ui_kwargs(name: str, incident) -> dict:
    """For the sending pages: a running campaign of the Messages API's version 1 (not
    approved), with one uncertain delivery, made without audit entries."""
    from django.utils import timezone

    from campaigns.models import Campaign, Delivery, MessageVersion
    from incidents.models import AffectedPerson

    if name == "campaigns:sending":
        return {"reference": incident.reference}
    if not name.startswith(("campaigns:campaign", "campaigns:delivery-")):
        return {}
    version = MessageVersion.objects.select_related("message").get(
        pk=_messages_api_kwargs("api-version-detail", incident)["pk"]
    )
    segment_id = version.message.segment_id
    if name == "campaigns:campaign-launch":
        return {"reference": incident.reference, "segment_id": segment_id, "number": 1}
    campaign = Campaign.objects.create(
        incident=incident,
        segment_id=segment_id,
        version=version,
        content_hash=version.content_hash,
        status=Campaign.Status.RUNNING,
        launched_at=timezone.now(),
    )
    person = AffectedPerson.objects.create(
        incident=incident,
        address="u@example.com",
        original_address="u@example.com",
        segment_id=segment_id,
    )
    delivery = Delivery.objects.create(
        campaign=campaign,
        incident=incident,
        person=person,
        address="u@example.com",
        status=Delivery.Status.UNCERTAIN,
        error="The answer was lost.",
    )
    kwargs = {"reference": incident.reference, "campaign_id": campaign.pk}
    return kwargs | ({"delivery_id": delivery.pk} if name == "campaigns:delivery-resolve" else {})


def _sending_api_kwargs(name: str, incident) -> dict:
    """For the sending API: a running campaign of the Messages API's version 1 (not
    approved), with one uncertain delivery, made without audit entries."""
    from campaigns.models import Campaign, Delivery, MessageVersion
    from incidents.models import AffectedPerson

    if not name.startswith(("api-campaign-", "api-delivery-")):
        return {}
    if name == "api-campaign-list":
        return {"reference": incident.reference}
    version = MessageVersion.objects.select_related("message").get(
        pk=_messages_api_kwargs("api-version-detail", incident)["pk"]
    )
    campaign = Campaign.objects.create(
        incident=incident,
        segment_id=version.message.segment_id,
        version=version,
        content_hash=version.content_hash,
        status=Campaign.Status.RUNNING,
    )
    person = AffectedPerson.objects.create(
        incident=incident,
        address="d@example.com",
        original_address="d@example.com",
        segment_id=version.message.segment_id,
    )
    delivery = Delivery.objects.create(
        campaign=campaign,
        incident=incident,
        person=person,
        address="d@example.com",
        status=Delivery.Status.UNCERTAIN,
    )
    return {"pk": delivery.pk if name.startswith("api-delivery-") else campaign.pk}


def _export_kwargs(name: str, incident) -> dict:
    """For the evidence pages: a pseudonymised pack whose build failed, made without
    audit entries."""
    from datetime import timedelta

    from django.utils import timezone

    from incidents.models import EvidenceExport

    if name in ("incidents:evidence", "api-export-list"):
        return {"reference": incident.reference}
    if not name.startswith(("incidents:evidence-", "api-export-")):
        return {}
    # Failed: its download is refused the same way whatever files a test left on disk.
    export = EvidenceExport.objects.create(
        incident=incident,
        format="csv",
        status="failed",
        expires_at=timezone.now() + timedelta(days=1),
    )
    if name.startswith("api-"):
        return {"pk": export.pk}
    return {"reference": incident.reference, "export_id": export.pk}


CASES = [(name, method) for name, methods in MATRIX.items() for method in methods]


@pytest.mark.parametrize(("name", "method"), CASES, ids=[f"{m} {n}" for n, m in CASES])
def test_each_role_gets_the_decided_status(client, users, incident, name, method):
    url = _url(name, incident)
    expected = MATRIX[name][method]
    observed = {}
    for role in ROLES:
        client.logout()
        if users[role] is not None:
            client.force_login(users[role])
        response = (
            getattr(client, method.lower())(url, content_type="application/json")
            if method == "PATCH"
            else getattr(client, method.lower())(url)
        )
        observed[role] = response.status_code
    assert observed == expected


WRITE_CASES = [(n, m) for n, m in CASES if m in ("POST", "PATCH", "PUT", "DELETE")]


@pytest.mark.parametrize(("name", "method"), WRITE_CASES, ids=[f"{m} {n}" for n, m in WRITE_CASES])
def test_an_auditor_cannot_change_anything(client, auditor_abe, incident, name, method):
    if name in ("login", "logout", "api-token"):
        pytest.skip("signing in and out is not a change to the incident data")
    if name in ("incidents:evidence", "api-export-list"):
        pytest.skip("an auditor may request an evidence pack: audited, it changes no data")
    if name == "api-audience-preview":
        pytest.skip("a POST that changes nothing; tests/test_api_audience.py checks that")
    if name == "verify":
        pytest.skip("the public verification page changes nothing; see tests/test_verify.py")
    from incidents.models import AuditEntry, TimelineEntry

    audit_count, timeline_count = AuditEntry.objects.count(), TimelineEntry.objects.count()
    client.force_login(auditor_abe)
    response = getattr(client, method.lower())(
        _url(name, incident),
        {"status": "investigating", "body": "x", "title": "x"},
        content_type="application/json",
    )
    assert response.status_code == 403
    assert (AuditEntry.objects.count(), TimelineEntry.objects.count()) == (
        audit_count,
        timeline_count,
    )
