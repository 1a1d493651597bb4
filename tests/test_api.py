"""The JSON API: tokens, the error format, roles, incidents, pagination, schema and docs."""

import base64
import hashlib
import re

import pytest
from django.core.cache import cache
from django.core.management import call_command
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient
from rest_framework.throttling import UserRateThrottle

from incidents import services
from incidents.actors import Actor
from incidents.models import AuditEntry, Incident, TimelineEntry
from tests.conftest import PASSWORD

INCIDENTS = "/api/incidents/"


@pytest.fixture(autouse=True)
def _fresh_throttles():
    # Throttle counters live in the cache, which outlives a test's database.
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def api():
    """An APIClient that sends `user`'s token, or none for api(None)."""

    def _api(user=None):
        client = APIClient()
        if user is not None:
            token, _ = Token.objects.get_or_create(user=user)
            client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        return client

    return _api


def _url(incident, suffix=""):
    return f"{INCIDENTS}{incident.reference}/{suffix}"


def _assert_error(response, status, code):
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert error["status"] == status
    assert error["code"] == code
    assert error["message"]
    return error


def _new_incident_payload(**overrides):
    return {
        "title": "Loyalty points email sent with other customers' balances",
        "summary": "The merge field pulled the wrong customer's balance.",
        "severity": "SEV1",
        **overrides,
    }


# --- Tokens ---------------------------------------------------------------------


def test_token_login_returns_a_token_that_authenticates(support_sam):
    client = APIClient()
    response = client.post(
        "/api/auth/token/", {"username": "support_sam", "password": PASSWORD}, format="json"
    )
    assert response.status_code == 200
    token = response.json()["token"]
    assert token == Token.objects.get(user=support_sam).key

    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get(INCIDENTS).status_code == 200


def test_token_login_with_a_wrong_password_gives_no_token(support_sam):
    response = APIClient().post(
        "/api/auth/token/", {"username": "support_sam", "password": "wrong"}, format="json"
    )
    error = _assert_error(response, 401, "invalid_credentials")
    assert "fields" not in error
    assert "token" not in response.json()
    assert not Token.objects.filter(user=support_sam).exists()


def test_token_login_without_a_password_lists_the_missing_field(db):
    response = APIClient().post("/api/auth/token/", {"username": "someone"}, format="json")
    error = _assert_error(response, 400, "validation_failed")
    assert error["fields"] == {"password": ["This field is required."]}


def test_five_wrong_passwords_lock_token_login_even_for_the_right_password(support_sam):
    client = APIClient()
    wrong = {"username": "support_sam", "password": "wrong"}
    statuses = [client.post("/api/auth/token/", wrong, format="json").status_code for _ in range(5)]
    assert statuses == [401, 401, 401, 401, 429]

    right = {"username": "support_sam", "password": PASSWORD}
    response = client.post("/api/auth/token/", right, format="json")
    _assert_error(response, 429, "locked_out")
    assert "token" not in response.json()
    assert int(response["Retry-After"]) > 0
    assert not Token.objects.filter(user=support_sam).exists()


def test_a_successful_token_login_resets_the_failure_count(support_sam):
    client = APIClient()
    for _ in range(4):
        client.post("/api/auth/token/", {"username": "support_sam", "password": "x"})
    client.post("/api/auth/token/", {"username": "support_sam", "password": PASSWORD})
    for _ in range(4):
        client.post("/api/auth/token/", {"username": "support_sam", "password": "x"})

    response = client.post("/api/auth/token/", {"username": "support_sam", "password": PASSWORD})
    assert response.status_code == 200


def test_unauthenticated_request_gets_401_in_the_error_format(db):
    response = APIClient().get(INCIDENTS)
    _assert_error(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"] == "Token"


def test_unknown_token_gets_401_in_the_error_format(db):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    _assert_error(client.get(INCIDENTS), 401, "authentication_failed")


def test_session_login_also_works_for_the_api(client, support_sam):
    client.force_login(support_sam)
    assert client.get(INCIDENTS).status_code == 200


# --- Roles ----------------------------------------------------------------------


def test_auditor_can_list_and_read_incidents(api, auditor_abe, incident):
    client = api(auditor_abe)
    listed = client.get(INCIDENTS).json()
    assert [item["reference"] for item in listed["results"]] == [incident.reference]
    assert client.get(_url(incident)).json()["title"] == incident.title
    assert client.get(_url(incident, "timeline/")).status_code == 200


def test_auditor_cannot_open_change_transition_or_note_and_nothing_changes(
    api, auditor_abe, incident
):
    client = api(auditor_abe)
    audit_entries = AuditEntry.objects.count()
    timeline = TimelineEntry.objects.count()

    attempts = [
        ("incidents.add_incident", client.post(INCIDENTS, _new_incident_payload(), format="json")),
        ("incidents.change_incident", client.patch(_url(incident), {"title": "x"}, format="json")),
        (
            "incidents.transition_incident",
            client.post(_url(incident, "transition/"), {"status": "investigating"}, format="json"),
        ),
        (
            "incidents.add_note",
            client.post(_url(incident, "timeline/"), {"body": "hi"}, format="json"),
        ),
    ]
    for perm, response in attempts:
        error = _assert_error(response, 403, "permission_denied")
        assert perm in error["message"]

    incident.refresh_from_db()
    assert incident.title == "Baby registry gift notice sent to the wrong customers"
    assert incident.status == Incident.Status.OPEN
    assert Incident.objects.count() == 1
    assert AuditEntry.objects.count() == audit_entries
    assert TimelineEntry.objects.count() == timeline


@pytest.mark.parametrize(
    ("role", "allowed"),
    [
        ("support_sam", {"list", "read", "open", "change", "transition", "note"}),
        ("comms_cleo", {"list", "read", "transition", "note"}),
        ("auditor_abe", {"list", "read"}),
        ("admin_ada", {"list", "read", "open", "change", "transition", "note"}),
    ],
)
def test_each_role_can_do_exactly_what_docs_api_md_says(request, api, incident, role, allowed):
    client = api(request.getfixturevalue(role))
    calls = {
        "list": lambda: client.get(INCIDENTS),
        "read": lambda: client.get(_url(incident)),
        "open": lambda: client.post(INCIDENTS, _new_incident_payload(), format="json"),
        "change": lambda: client.patch(_url(incident), {"esp": "Postmark"}, format="json"),
        "transition": lambda: client.post(
            _url(incident, "transition/"), {"status": "investigating"}, format="json"
        ),
        "note": lambda: client.post(_url(incident, "timeline/"), {"body": "Noted."}, format="json"),
    }
    outcome = {name: call().status_code for name, call in calls.items()}
    assert {name for name, code in outcome.items() if code < 300} == allowed, outcome
    assert {code for name, code in outcome.items() if name not in allowed} <= {403}


def test_user_without_a_role_is_refused_everything(api, django_user_model, incident):
    nobody = django_user_model.objects.create_user("nobody", password=PASSWORD)
    client = api(nobody)
    _assert_error(client.get(INCIDENTS), 403, "permission_denied")
    _assert_error(client.get(_url(incident)), 403, "permission_denied")
    _assert_error(client.get("/api/schema/"), 403, "permission_denied")


def test_docs_page_refuses_a_signed_in_user_without_a_role(client, django_user_model):
    client.force_login(django_user_model.objects.create_user("nobody", password=PASSWORD))
    _assert_error(client.get("/api/docs/"), 403, "permission_denied")


# --- Incidents ------------------------------------------------------------------


def test_support_opens_an_incident_and_an_audit_entry_is_written(api, support_sam):
    response = api(support_sam).post(
        INCIDENTS,
        _new_incident_payload(
            personal_data_exposed=True, became_aware_at="2026-03-02T09:30:00Z", esp="Postmark"
        ),
        format="json",
    )

    assert response.status_code == 201, response.content
    body = response.json()
    incident = Incident.objects.get(reference=body["reference"])
    assert incident.title == "Loyalty points email sent with other customers' balances"
    assert incident.owner == support_sam
    assert body["owner"] == "support_sam"
    assert body["status"] == "open"
    assert body["allowed_transitions"] == ["investigating"]
    assert body["regulator_deadline"] == "2026-03-05T09:30:00Z"
    assert body["url"] == f"http://testserver/api/incidents/{incident.reference}/"
    assert response["Location"] == body["url"]

    entry = AuditEntry.objects.get(action="incident.opened", incident=incident)
    assert entry.actor == support_sam
    assert entry.ip == "127.0.0.1"
    assert entry.after["severity"] == "SEV1"


def test_incident_output_has_the_documented_fields(api, support_sam, incident):
    body = api(support_sam).get(_url(incident)).json()
    assert set(body) == {
        "reference",
        "title",
        "summary",
        "original_template",
        "original_subject",
        "sent_from",
        "sent_until",
        "esp",
        "severity",
        "status",
        "owner",
        "personal_data_exposed",
        "became_aware_at",
        "regulator_deadline",
        "allowed_transitions",
        "created_at",
        "updated_at",
        "resolved_at",
        "url",
    }


def test_incident_can_be_opened_for_another_owner(api, support_sam, comms_cleo):
    response = api(support_sam).post(
        INCIDENTS, _new_incident_payload(owner="comms_cleo"), format="json"
    )
    assert response.status_code == 201
    assert Incident.objects.get(reference=response.json()["reference"]).owner == comms_cleo


def test_validation_errors_list_every_bad_field(api, support_sam):
    response = api(support_sam).post(
        INCIDENTS, {"severity": "SEV9", "owner": "nobody-by-that-name"}, format="json"
    )
    error = _assert_error(response, 400, "validation_failed")
    assert set(error["fields"]) == {"title", "summary", "severity", "owner"}
    assert error["fields"]["title"] == ["This field is required."]
    assert "title" in error["message"]
    assert not Incident.objects.exists()


def test_rules_checked_by_the_service_come_back_as_validation_errors(api, support_sam):
    # The model's constraint (exposure needs an awareness time) is enforced by the
    # service's full_clean, not the serializer; the client sees the same format.
    response = api(support_sam).post(
        INCIDENTS, _new_incident_payload(personal_data_exposed=True), format="json"
    )
    error = _assert_error(response, 400, "validation_failed")
    assert "became aware" in error["fields"]["non_field_errors"][0]
    assert error["message"] == error["fields"]["non_field_errors"][0]
    assert not Incident.objects.exists()


def test_malformed_json_is_a_400_in_the_error_format(api, support_sam):
    response = api(support_sam).post(INCIDENTS, "{not json", content_type="application/json")
    _assert_error(response, 400, "parse_error")


def test_patch_changes_only_the_named_fields_and_is_audited(api, support_sam, incident):
    response = api(support_sam).patch(
        _url(incident), {"severity": "SEV1", "esp": "Mailgun"}, format="json"
    )

    assert response.status_code == 200, response.content
    assert response.json()["severity"] == "SEV1"
    incident.refresh_from_db()
    assert (incident.severity, incident.esp) == ("SEV1", "Mailgun")
    assert incident.original_template == "registry-gift-purchased"
    entry = AuditEntry.objects.get(action="incident.updated", incident=incident)
    assert entry.before == {"esp": "", "severity": "SEV2"}
    assert entry.after == {"esp": "Mailgun", "severity": "SEV1"}


def test_transition_moves_the_status_and_notes_it_on_the_timeline(api, comms_cleo, incident):
    response = api(comms_cleo).post(
        _url(incident, "transition/"),
        {"status": "investigating", "note": "Pulling the send log."},
        format="json",
    )

    assert response.status_code == 200, response.content
    assert response.json()["status"] == "investigating"
    assert response.json()["allowed_transitions"] == ["contacting", "open"]
    incident.refresh_from_db()
    assert incident.status == Incident.Status.INVESTIGATING
    assert incident.timeline.filter(kind="status", body__contains="Pulling the send log.").exists()
    assert AuditEntry.objects.filter(action="incident.transitioned", actor=comms_cleo).exists()


def test_illegal_transition_is_refused_with_409_and_the_status_is_unchanged(
    api, support_sam, incident
):
    audit_entries = AuditEntry.objects.count()
    response = api(support_sam).post(
        _url(incident, "transition/"), {"status": "resolved"}, format="json"
    )

    error = _assert_error(response, 409, "illegal_transition")
    assert "cannot go from Open to Resolved" in error["message"]
    assert "fields" not in error
    incident.refresh_from_db()
    assert incident.status == Incident.Status.OPEN
    assert AuditEntry.objects.count() == audit_entries


def test_transition_to_an_unknown_status_is_a_validation_error(api, support_sam, incident):
    response = api(support_sam).post(
        _url(incident, "transition/"), {"status": "closed"}, format="json"
    )
    error = _assert_error(response, 400, "validation_failed")
    assert set(error["fields"]) == {"status"}


def test_unknown_incident_is_404_in_the_error_format(api, support_sam):
    _assert_error(api(support_sam).get(f"{INCIDENTS}INC-1999-0001/"), 404, "not_found")


def test_unsupported_method_is_405_in_the_error_format(api, support_sam, incident):
    _assert_error(api(support_sam).delete(_url(incident)), 405, "method_not_allowed")
    _assert_error(api(support_sam).get(_url(incident, "transition/")), 405, "method_not_allowed")


def test_unknown_api_path_is_404_in_the_error_format(api, support_sam):
    error = _assert_error(api(support_sam).get("/api/incidents"), 404, "not_found")
    assert "Did you mean /api/incidents/?" in error["message"]
    _assert_error(APIClient().post("/api/nothing-here/"), 404, "not_found")


def test_throttled_requests_get_429_in_the_error_format(api, support_sam, monkeypatch):
    monkeypatch.setattr(UserRateThrottle, "rate", "2/min", raising=False)
    client = api(support_sam)
    assert [client.get(INCIDENTS).status_code for _ in range(2)] == [200, 200]

    response = client.get(INCIDENTS)
    _assert_error(response, 429, "throttled")
    assert int(response["Retry-After"]) > 0


# --- Lists ----------------------------------------------------------------------


def _open(user, **fields):
    return services.incident_open(
        by=Actor.for_user(user),
        **{"title": "An incident", "summary": "Something was mis-sent.", **fields},
    )


def test_incident_list_is_paginated_with_count_next_previous_results(api, support_sam):
    for number in range(3):
        _open(support_sam, title=f"Incident {number}")
    client = api(support_sam)

    first = client.get(INCIDENTS, {"page_size": 2}).json()
    assert set(first) == {"count", "next", "previous", "results"}
    assert first["count"] == 3
    assert [item["title"] for item in first["results"]] == ["Incident 2", "Incident 1"]
    assert first["previous"] is None
    assert first["next"] == "http://testserver/api/incidents/?page=2&page_size=2"

    second = client.get(first["next"]).json()
    assert [item["title"] for item in second["results"]] == ["Incident 0"]
    assert second["next"] is None

    _assert_error(client.get(INCIDENTS, {"page": 9}), 404, "not_found")


def test_incident_list_filters_by_status_severity_owner_and_search(api, support_sam, comms_cleo):
    broken_link = _open(support_sam, title="Broken unsubscribe link", severity="SEV4")
    wrong_name = _open(support_sam, title="Wrong first name", owner=comms_cleo, severity="SEV1")
    services.incident_transition(
        incident=wrong_name, to_status="investigating", by=Actor.for_user(support_sam)
    )
    client = api(support_sam)

    def refs(**params):
        return {item["reference"] for item in client.get(INCIDENTS, params).json()["results"]}

    assert refs(status="investigating") == {wrong_name.reference}
    assert refs(severity="SEV4") == {broken_link.reference}
    assert refs(owner="comms_cleo") == {wrong_name.reference}
    assert refs(search="unsubscribe") == {broken_link.reference}
    assert refs(search=broken_link.reference) == {broken_link.reference}
    error = _assert_error(client.get(INCIDENTS, {"status": "lost"}), 400, "validation_failed")
    assert set(error["fields"]) == {"status"}


def test_incident_list_queries_do_not_grow_with_the_number_of_incidents(
    api, support_sam, django_assert_max_num_queries
):
    client = api(support_sam)
    _open(support_sam)
    with django_assert_max_num_queries(20) as one:
        client.get(INCIDENTS)
    for _ in range(5):
        _open(support_sam)
    with django_assert_max_num_queries(len(one.captured_queries)):
        client.get(INCIDENTS)


def test_timeline_note_is_added_and_listed_oldest_first(api, comms_cleo, incident):
    client = api(comms_cleo)
    response = client.post(
        _url(incident, "timeline/"), {"body": "  Called the ESP.  "}, format="json"
    )

    assert response.status_code == 201, response.content
    note = response.json()
    assert (note["kind"], note["body"], note["author"]) == ("note", "Called the ESP.", "comms_cleo")
    assert AuditEntry.objects.filter(action="incident.note_added", incident=incident).exists()

    timeline = client.get(_url(incident, "timeline/")).json()
    assert timeline["count"] == 2
    opened, added = timeline["results"]
    assert opened["kind"] == "system"
    assert opened["author"] == "support_sam"
    assert added == note


def test_empty_note_is_a_validation_error(api, comms_cleo, incident):
    response = api(comms_cleo).post(_url(incident, "timeline/"), {"body": "   "}, format="json")
    error = _assert_error(response, 400, "validation_failed")
    assert set(error["fields"]) == {"body"}


# --- Schema and docs ------------------------------------------------------------


def test_schema_describes_the_incident_endpoints(api, auditor_abe):
    response = api(auditor_abe).get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")

    assert response.status_code == 200
    schema = response.json()
    assert {
        "/api/auth/token/",
        "/api/incidents/",
        "/api/incidents/{reference}/",
        "/api/incidents/{reference}/transition/",
        "/api/incidents/{reference}/timeline/",
    } <= set(schema["paths"])
    assert set(schema["paths"]["/api/incidents/"]) == {"get", "post"}
    assert "409" in schema["paths"]["/api/incidents/{reference}/transition/"]["post"]["responses"]
    assert "Error" in schema["components"]["schemas"]


def test_schema_generates_and_validates_without_warnings(db, tmp_path):
    # The same check as `manage.py spectacular --validate --fail-on-warn` in CI.
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "s.yml"))
    assert "/api/incidents/{reference}/transition/:" in (tmp_path / "s.yml").read_text()


def test_schema_needs_a_signed_in_user(db):
    _assert_error(APIClient().get("/api/schema/"), 401, "not_authenticated")


def test_docs_page_sends_anonymous_visitors_to_the_login_page(client, db):
    response = client.get("/api/docs/")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=/api/docs/")


def test_docs_page_loads_swagger_ui_under_a_strict_csp(client, auditor_abe):
    client.force_login(auditor_abe)
    response = client.get("/api/docs/")

    assert response.status_code == 200
    html = response.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html
    # Every script is a file: the init script comes from the same view, not inline.
    assert re.findall(r"<script(?![^>]*\bsrc=)", html) == []
    assert '<script src="/api/docs/?script="></script>' in html
    csp = response["Content-Security-Policy"]
    assert "unsafe-inline" not in csp
    assert "unsafe-eval" not in csp
    # The one inline style block is allowed by its hash; recompute it from the page.
    (style,) = re.findall(r"<style>(.*?)</style>", html, re.S)
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    assert f"'sha256-{digest}'" in csp

    script = client.get("/api/docs/", {"script": ""})
    assert script.status_code == 200
    assert script["Content-Type"].startswith("application/javascript")
    assert "/api/schema/" in script.content.decode()


def test_other_pages_keep_the_strict_style_policy(client, auditor_abe):
    client.force_login(auditor_abe)
    assert "sha256-" not in client.get("/").get("Content-Security-Policy", "")


def test_issuing_an_api_token_is_audited_once(client, support_sam):
    from incidents.models import AuditEntry
    from tests.conftest import PASSWORD

    for _ in range(2):
        response = client.post(
            "/api/auth/token/", {"username": "support_sam", "password": PASSWORD}
        )
        assert response.status_code == 200
    entries = AuditEntry.objects.filter(action="user.token_issued")
    assert entries.count() == 1
    assert entries.get().actor == support_sam
