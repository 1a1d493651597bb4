"""The messages API: drafting, preview, test sends and four-eyes approval of the apology."""

from datetime import UTC, datetime

import pytest
from django.core.cache import cache
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from campaigns.models import Approval, Message, MessageVersion, TestSend
from incidents import services as incident_services
from incidents.actors import Actor
from incidents.filters import AudienceFilter
from incidents.models import AffectedPerson, AuditEntry
from incidents.roles import COMMS
from tests.conftest import _make

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
SEED = "seed@amends.example"

EN = {
    "subject": "We sent you an email by mistake",
    "text": (
        "Dear {{ first_name|default('customer') }},\n\n"
        "on {{ original_send_date }} we sent you an email about a baby registry. "
        "It was not meant for you, and we are sorry."
    ),
    "html": "<p>Dear {{ first_name|default('customer') }},</p><p>We are sorry.</p>",
}
DE = {
    "subject": "Wir haben Ihnen versehentlich eine E-Mail geschickt",
    "text": (
        "Guten Tag {{ first_name }},\n\n"
        "am {{ original_send_date }} haben wir Ihnen eine E-Mail zu einer Babyliste geschickt. "
        "Sie war nicht für Sie bestimmt. Das tut uns leid."
    ),
    "html": "",
}


@pytest.fixture(autouse=True)
def _fresh_throttles_and_in_process_jobs(settings):
    settings.REDIS_URL = ""  # approval emails run after the commit, in this process
    cache.clear()  # throttle counters outlive a test's database
    yield
    cache.clear()


@pytest.fixture
def api():
    """An APIClient that sends `user`'s token."""

    def _api(user):
        client = APIClient()
        token, _ = Token.objects.get_or_create(user=user)
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        return client

    return _api


@pytest.fixture
def comms_cole(db):
    return _make("comms_cole", COMMS)


@pytest.fixture
def people(incident, support_sam):
    """Three people found the real way: send log rows through the ingest service, then a freeze."""
    rows = [
        ("m1", "Ann@Example.com", "en", {"first_name": "Ann"}),
        ("m2", "bernd@example.de", "de", {"first_name": "Bernd"}),
        ("m3", "eve@example.com", "en", {"first_name": "<b>Eve</b><script>alert(1)</script>"}),
    ]
    sam = Actor.for_user(support_sam)
    incident_services.sendlog_ingest_rows(
        rows=[
            {
                "message_id": message_id,
                "recipient": address,
                "sent_at": T0.isoformat(),
                "template": "registry-gift-purchased",
                "locale": locale,
                "metadata": metadata,
            }
            for message_id, address, locale, metadata in rows
        ],
        by=sam,
    )
    incident_services.audience_freeze(
        incident=incident,
        filters=AudienceFilter.from_dict({"template": "registry-gift-purchased"}),
        by=sam,
    )
    return {p.address: p for p in AffectedPerson.objects.filter(incident=incident)}


def _messages_url(incident):
    return f"/api/incidents/{incident.reference}/messages/"


def _body(**changes):
    return {
        "sender_name": "Amends Care",
        "sender_address": "care@retailer.example",
        "reply_to": "help@retailer.example",
        "fallback_locale": "en",
        "content": {"en": dict(EN), "de": dict(DE)},
    } | changes


def _assert_error(response, status, code):
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert (error["status"], error["code"]) == (status, code)
    return error


def _state():
    """What a refused write must leave as it was."""
    return {
        "messages": Message.objects.count(),
        "versions": list(MessageVersion.objects.values_list("id", "content_hash")),
        "approvals": Approval.objects.count(),
        "test_sends": TestSend.objects.count(),
        "audit": AuditEntry.objects.count(),
    }


@pytest.fixture
def draft(api, incident, people, support_sam):
    """Version 1 of the default segment's apology, saved by support_sam through the API."""
    segment = incident.segments.get(is_default=True)
    response = api(support_sam).post(
        _messages_url(incident), _body(segment=segment.pk), format="json"
    )
    assert response.status_code == 201, response.content
    return response.json()


def _version_url(version, suffix=""):
    return f"/api/versions/{version['id']}/{suffix}"


# --- Drafting ------------------------------------------------------------------------


def test_support_saves_a_version_in_english_and_german(api, incident, people, support_sam):
    segment = incident.segments.get(is_default=True)
    client = api(support_sam)

    response = client.post(_messages_url(incident), _body(segment=segment.pk), format="json")

    assert response.status_code == 201, response.content
    version = response.json()
    assert response["Location"] == version["url"]
    assert (version["number"], version["author"], version["locales"]) == (
        1,
        "support_sam",
        ["de", "en"],
    )
    assert version["content"]["de"]["subject"] == DE["subject"]
    assert len(version["content_hash"]) == 64 and version["parent_hash"] == ""
    assert version["segment"] == {"id": segment.pk, "name": "Everyone else"}
    assert version["approval_state"] | {"number": None} == {
        "number": None,
        "needed": 1,
        "have": 0,
        "missing": 1,
        "approved": False,
        "rejected": False,
        "content_intact": True,
        "is_latest": True,
    }
    assert {"message.created", "message.version_created"} <= set(
        AuditEntry.objects.values_list("action", flat=True)
    )

    listed = client.get(_messages_url(incident)).json()["results"]
    assert [row["segment"]["name"] for row in listed] == ["Everyone else"]
    assert listed[0]["people"] == 3
    assert listed[0]["latest_version"]["id"] == version["id"]
    assert listed[0]["approval_state"]["approved"] is False

    versions = client.get(f"{_messages_url(incident)}{version['message']}/versions/").json()
    assert [(v["number"], v["decision_count"]) for v in versions["results"]] == [(1, 0)]


def test_a_hostile_template_is_refused_with_its_line_and_nothing_is_saved(
    api, incident, people, support_sam
):
    segment = incident.segments.get(is_default=True)
    before = _state()
    hostile = EN | {"text": "Dear customer,\n\n{{ settings.SECRET_KEY }}"}

    response = api(support_sam).post(
        _messages_url(incident),
        _body(segment=segment.pk, content={"en": hostile, "de": dict(DE)}),
        format="json",
    )

    error = _assert_error(response, 400, "validation_failed")
    assert list(error["fields"]) == ["content.en.text"]
    assert error["fields"]["content.en.text"][0].startswith("Line 3: ")
    assert "content.en.text" in error["message"]
    assert _state() == before


def test_a_save_based_on_an_outdated_version_is_refused(api, draft, support_sam):
    client = api(support_sam)
    versions_url = f"/api/incidents/{draft['incident']}/messages/{draft['message']}/versions/"
    edited = _body(content={"en": EN | {"subject": "We are sorry"}, "de": dict(DE)})
    assert (
        client.post(versions_url, edited | {"based_on": draft["id"]}, format="json").status_code
        == 201
    )
    before = _state()

    again = edited | {"content": {"en": EN | {"subject": "Sorry"}, "de": dict(DE)}}
    error = _assert_error(
        client.post(versions_url, again | {"based_on": draft["id"]}, format="json"),
        409,
        "stale_version",
    )
    assert "Someone saved version 2 while you were editing version 1" in error["message"]
    assert _state() == before


# --- Approval ------------------------------------------------------------------------


def test_the_author_cannot_approve_their_own_version(
    api, incident, people, draft, support_sam, admin_ada, comms_cleo
):
    before = _state()
    error = _assert_error(
        api(support_sam).post(_version_url(draft, "approve/"), {}, format="json"),
        403,
        "permission_denied",
    )
    assert "campaigns.approve_messageversion" in error["message"]

    # An Admin may both write and approve, but never their own words.
    admin = api(admin_ada)
    versions_url = f"/api/incidents/{incident.reference}/messages/{draft['message']}/versions/"
    mine = admin.post(
        versions_url,
        _body(content={"en": EN | {"subject": "We are so sorry"}}, based_on=draft["id"]),
        format="json",
    ).json()
    before = _state()
    error = _assert_error(
        admin.post(_version_url(mine, "approve/"), {}, format="json"), 403, "self_approval"
    )
    assert error["message"].startswith("You wrote version 2")
    assert _state() == before
    assert admin.get(_version_url(mine)).json()["approval_state"]["have"] == 0


def test_comms_approves_and_the_state_shows_approved_with_the_bound_hash(
    api, incident, draft, support_sam, comms_cleo, mailoutbox, run_jobs
):
    with run_jobs():
        asked = api(support_sam).post(_version_url(draft, "request-approval/"))
    assert asked.status_code == 200, asked.content
    assert asked.json()["notified"] == ["comms_cleo"]
    assert [m.to for m in mailoutbox] == [["comms_cleo@amends.example"]]

    response = api(comms_cleo).post(
        _version_url(draft, "approve/"), {"comment": "Kind and clear."}, format="json"
    )

    assert response.status_code == 200, response.content
    version = response.json()
    assert version["approval_state"]["approved"] is True
    assert version["approval_state"]["have"] == 1
    [approval] = version["approvals"]
    assert approval["approver"] == "comms_cleo" and approval["decision"] == "approved"
    assert approval["content_hash"] == version["content_hash"] == draft["content_hash"]
    assert approval["counts"] is True and approval["comment"] == "Kind and clear."
    entry = AuditEntry.objects.get(action="message.version_approved")
    assert (entry.actor, entry.after["content_hash"]) == (comms_cleo, draft["content_hash"])
    listed = api(comms_cleo).get(_messages_url(incident)).json()["results"]
    assert listed[0]["approval_state"]["approved"] is True


def test_an_edit_makes_a_new_version_that_awaits_its_own_approval(
    api, incident, draft, support_sam, comms_cleo
):
    api(comms_cleo).post(_version_url(draft, "approve/"), {}, format="json")
    versions_url = f"/api/incidents/{incident.reference}/messages/{draft['message']}/versions/"

    response = api(support_sam).post(
        versions_url,
        _body(
            content={"en": EN | {"subject": "We are sorry"}, "de": dict(DE)},
            based_on=draft["id"],
        ),
        format="json",
    )

    assert response.status_code == 201, response.content
    edited = response.json()
    assert (edited["number"], edited["parent_hash"]) == (2, draft["content_hash"])
    assert edited["approval_state"] | {"number": 2} == {
        "number": 2,
        "needed": 1,
        "have": 0,
        "missing": 1,
        "approved": False,
        "rejected": False,
        "content_intact": True,
        "is_latest": True,
    }
    assert edited["approvals"] == []
    old = api(comms_cleo).get(_version_url(draft)).json()["approval_state"]
    assert (old["approved"], old["is_latest"]) == (True, False)

    diff = api(comms_cleo).get(_version_url(edited, "diff/"), {"against": draft["id"]}).json()
    assert diff["against"] == {"id": draft["id"], "number": 1}
    assert [(c["locale"], c["field"]) for c in diff["changes"]] == [("en", "subject")]
    assert "+We are sorry" in diff["changes"][0]["lines"]
    # Without `against`: the previous version.
    assert api(comms_cleo).get(_version_url(edited, "diff/")).json() == diff


def test_version_one_diffs_against_nothing_and_other_messages_cannot_be_compared(
    api, draft, comms_cleo, incident, support_sam
):
    diff = api(comms_cleo).get(_version_url(draft, "diff/")).json()
    assert diff["against"] is None
    assert ("en", "subject") in [(c["locale"], c["field"]) for c in diff["changes"]]

    other_segment = incident_services.segment_save(
        incident=incident, name="Has a registry", rules=[], by=Actor.for_user(support_sam)
    )
    other = api(support_sam).post(
        _messages_url(incident), _body(segment=other_segment.pk), format="json"
    )
    assert other.status_code == 201, other.content
    error = _assert_error(
        api(comms_cleo).get(_version_url(draft, "diff/"), {"against": other.json()["id"]}),
        400,
        "validation_failed",
    )
    assert list(error["fields"]) == ["against"]


def test_a_rejection_needs_a_comment_and_goes_back_to_the_author(
    api, draft, comms_cleo, mailoutbox, run_jobs
):
    client = api(comms_cleo)
    before = _state()
    for body in ({}, {"comment": "   "}):
        error = _assert_error(
            client.post(_version_url(draft, "reject/"), body, format="json"),
            400,
            "validation_failed",
        )
        assert list(error["fields"]) == ["comment"]
    assert _state() == before

    with run_jobs():
        response = client.post(
            _version_url(draft, "reject/"),
            {"comment": "Please drop the discount: this is not a sales email."},
            format="json",
        )

    assert response.status_code == 200, response.content
    state = response.json()["approval_state"]
    assert (state["rejected"], state["approved"]) == (True, False)
    assert [m.to for m in mailoutbox] == [["support_sam@amends.example"]]
    assert "drop the discount" in mailoutbox[0].body
    # A rejected version is stopped for good.
    assert client.post(_version_url(draft, "approve/"), {}, format="json").status_code == 409


def test_a_sev1_version_needs_two_approvals(
    api, incident, draft, support_sam, comms_cleo, comms_cole
):
    incident_services.incident_update(
        incident=incident, by=Actor.for_user(support_sam), severity="SEV1"
    )

    first = api(comms_cleo).post(_version_url(draft, "approve/"), {}, format="json").json()
    assert first["approval_state"] | {"number": 1} == {
        "number": 1,
        "needed": 2,
        "have": 1,
        "missing": 1,
        "approved": False,
        "rejected": False,
        "content_intact": True,
        "is_latest": True,
    }
    second = api(comms_cole).post(_version_url(draft, "approve/"), {}, format="json").json()
    assert (second["approval_state"]["have"], second["approval_state"]["approved"]) == (2, True)
    assert [a["approver"] for a in second["approvals"]] == ["comms_cleo", "comms_cole"]


# --- Test sends ------------------------------------------------------------------------


def test_a_test_send_off_the_seed_list_is_refused_and_sends_nothing(
    api, draft, support_sam, mailoutbox
):
    client = api(support_sam)
    before = _state()

    response = client.post(
        _version_url(draft, "test-send/"),
        {"addresses": [SEED, "ceo@retailer.example"]},
        format="json",
    )

    error = _assert_error(response, 400, "validation_failed")
    assert "ceo@retailer.example" in error["fields"]["addresses"][0]
    assert mailoutbox == [] and _state() == before

    sent = client.post(
        _version_url(draft, "test-send/"), {"addresses": [SEED], "locales": ["de"]}, format="json"
    )
    assert sent.status_code == 201, sent.content
    assert (sent.json()["message_count"], sent.json()["locales"]) == (1, ["de"])
    [email] = mailoutbox
    assert email.to == [SEED] and email.subject.startswith("[TEST] Wir haben")
    assert email.extra_headers["X-Amends-Test"] == "1"


# --- Roles -----------------------------------------------------------------------------


def test_an_auditor_can_read_everything_but_every_write_is_403(
    api, incident, people, draft, auditor_abe, mailoutbox
):
    client = api(auditor_abe)
    messages = _messages_url(incident)
    versions = f"{messages}{draft['message']}/versions/"
    for url in (
        messages,
        versions,
        _version_url(draft),
        _version_url(draft, "diff/"),
        _version_url(draft, "preview/"),
        f"{_version_url(draft, 'preview/')}?sample=true",
    ):
        assert client.get(url).status_code == 200, url

    before = _state()
    segment = incident.segments.get(is_default=True)
    writes = [
        (messages, _body(segment=segment.pk)),
        (versions, _body(based_on=draft["id"], content={"en": dict(EN)})),
        (_version_url(draft, "test-send/"), {"addresses": [SEED]}),
        (_version_url(draft, "request-approval/"), {}),
        (_version_url(draft, "approve/"), {}),
        (_version_url(draft, "reject/"), {"comment": "No."}),
    ]
    for url, body in writes:
        error = _assert_error(client.post(url, body, format="json"), 403, "permission_denied")
        assert "Your role does not allow this" in error["message"], url
    assert _state() == before and mailoutbox == []


# --- Preview ---------------------------------------------------------------------------


def test_the_preview_escapes_a_customers_html_name(api, draft, people, comms_cleo):
    eve = people["eve@example.com"]

    response = api(comms_cleo).get(_version_url(draft, "preview/"), {"person_id": eve.pk})

    assert response.status_code == 200, response.content
    preview = response.json()
    assert preview["person"]["id"] == eve.pk and preview["locale"] == "en"
    assert "&lt;b&gt;Eve&lt;/b&gt;&lt;script&gt;" in preview["html"]
    assert "<script" not in preview["html"] and "<b>" not in preview["html"]
    assert "Dear <b>Eve</b><script>alert(1)</script>," in preview["text"]
    assert preview["from_email"] == "Amends Care <care@retailer.example>"


def test_the_preview_renders_each_locale_for_a_person_or_a_sample(api, draft, people, comms_cleo):
    client = api(comms_cleo)
    bernd = people["bernd@example.de"]

    german = client.get(_version_url(draft, "preview/"), {"person_id": bernd.pk}).json()
    assert german["locale"] == "de" and german["subject"] == DE["subject"]
    assert german["text"].startswith("Guten Tag Bernd,") and "28. November 2026" in german["text"]
    assert german["text_derived"] is False and german["html"] == ""

    english = client.get(
        _version_url(draft, "preview/"), {"person_id": bernd.pk, "locale": "en"}
    ).json()
    assert english["text"].startswith("Dear Bernd,") and "Nov. 28, 2026" in english["text"]

    sample = client.get(_version_url(draft, "preview/"), {"sample": "true"}).json()
    assert sample["person"]["id"] in {p.pk for p in people.values()}
    made_up = client.get(_version_url(draft, "preview/")).json()
    assert made_up["person"] is None and made_up["text"].startswith("Dear Alex,")

    for params, field in (
        ({"locale": "fr"}, "locale"),
        ({"person_id": 999_999}, "person_id"),
        ({"person_id": bernd.pk, "sample": "true"}, "non_field_errors"),
    ):
        error = _assert_error(
            client.get(_version_url(draft, "preview/"), params), 400, "validation_failed"
        )
        assert list(error["fields"]) == [field]


def test_an_unknown_version_or_message_is_a_404(api, incident, support_sam):
    client = api(support_sam)
    _assert_error(client.get("/api/versions/999999/"), 404, "not_found")
    _assert_error(
        client.get(f"/api/incidents/{incident.reference}/messages/999999/versions/"),
        404,
        "not_found",
    )


READS = {"list", "versions", "read", "diff", "preview", "preview_person"}


@pytest.mark.parametrize(
    ("role", "allowed"),
    [
        ("support_sam", READS | {"start", "save", "test_send", "request"}),
        ("comms_cleo", READS | {"approve", "reject"}),
        ("auditor_abe", READS),
        ("admin_ada", READS | {"start", "save", "test_send", "request", "approve", "reject"}),
    ],
)
def test_each_role_can_do_exactly_what_docs_api_md_says(
    request, api, incident, people, draft, role, allowed
):
    client = api(request.getfixturevalue(role))
    messages = _messages_url(incident)
    registry = incident_services.segment_save(
        incident=incident, name="Has a registry", rules=[], by=Actor.system("tests")
    )
    calls = {
        "list": lambda: client.get(messages),
        "versions": lambda: client.get(f"{messages}{draft['message']}/versions/"),
        "read": lambda: client.get(_version_url(draft)),
        "diff": lambda: client.get(_version_url(draft, "diff/")),
        "preview": lambda: client.get(_version_url(draft, "preview/")),
        "preview_person": lambda: client.get(_version_url(draft, "preview/"), {"sample": "true"}),
        "start": lambda: client.post(messages, _body(segment=registry.pk), format="json"),
        "save": lambda: client.post(
            f"{messages}{draft['message']}/versions/",
            _body(based_on=draft["id"], content={"en": dict(EN)}),
            format="json",
        ),
        "test_send": lambda: client.post(
            _version_url(draft, "test-send/"), {"addresses": [SEED]}, format="json"
        ),
        "request": lambda: client.post(_version_url(draft, "request-approval/")),
        "approve": lambda: client.post(_version_url(draft, "approve/"), {}, format="json"),
        "reject": lambda: client.post(_version_url(draft, "reject/"), {}, format="json"),
    }
    # Calls change what later ones see (a new version, a decision), so an allowed call may
    # be refused by the rules (400); what the role decides is whether it is a 403.
    outcome = {name: call().status_code for name, call in calls.items()}
    assert {name for name, code in outcome.items() if code != 403} == allowed, outcome
