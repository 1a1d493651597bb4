"""The audience API: the send log, preview and freeze, the affected list, segments, suppressions."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from campaigns.models import Suppression
from incidents.addresses import normalise
from incidents.models import (
    AffectedPerson,
    AudienceQuery,
    AuditEntry,
    Segment,
    SendLogEntry,
    SendLogImport,
)

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
MIS_SENT = {"template": "registry-gift-purchased"}
SENDLOG = "/api/sendlog/"
SUPPRESSIONS = "/api/suppressions/"


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


def _url(incident, suffix=""):
    return f"/api/incidents/{incident.reference}/{suffix}"


def _assert_error(response, status, code):
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert (error["status"], error["code"]) == (status, code)
    return error


def _row(message_id, recipient="someone@example.com", **extra):
    return {
        "message_id": message_id,
        "recipient": recipient,
        "sent_at": "2026-11-28T09:00:00Z",
        "template": "registry-gift-purchased",
        **extra,
    }


@pytest.fixture
def frozen(api, sendlog, incident, support_sam):
    """The incident's list, frozen through the API: cust1, anna and bob."""
    response = api(support_sam).post(_url(incident, "audience/freeze/"), MIS_SENT, format="json")
    assert response.status_code == 201, response.content
    return incident


def _everything():
    """What a refused write must leave as it was."""
    return {
        "sendlog": SendLogEntry.objects.count(),
        "imports": SendLogImport.objects.count(),
        "queries": AudienceQuery.objects.count(),
        "people": list(
            AffectedPerson.objects.order_by("id").values_list("id", "segment_id", "removed_at")
        ),
        "segments": list(Segment.objects.order_by("id").values_list("id", "name", "rules")),
        "suppressions": Suppression.objects.count(),
        "audit": AuditEntry.objects.count(),
    }


# --- Send log batches -----------------------------------------------------------


def test_a_batch_is_idempotent_and_reports_bad_rows_by_index(api, support_sam):
    client = api(support_sam)
    rows = [
        _row("b1", "Ann@Example.com", tags=["Registry", "gift"]),
        _row("b2", tags="registry;gift", metadata={"has_registry": False}),
        _row("b3", sent_at="not a date"),
        {"message_id": "b4", "recipient": "x@example.com"},  # no sent_at
        _row("b5", recipient="not-an-address"),
        _row("b6", colour="blue"),  # a typo in a field name is a bad row, not a silent loss
        "not an object",
    ]

    first = client.post(f"{SENDLOG}batch/", {"rows": rows}, format="json")
    assert first.status_code == 200, first.content
    body = first.json()
    assert (body["received"], body["inserted"], body["duplicate"], body["rejected"]) == (7, 2, 0, 5)
    assert [error["index"] for error in body["errors"]] == [2, 3, 4, 5, 6]
    assert all(error["reason"] for error in body["errors"])
    assert "colour" in body["errors"][3]["reason"]

    again = client.post(f"{SENDLOG}batch/", {"rows": rows}, format="json").json()
    assert (again["inserted"], again["duplicate"], again["rejected"]) == (0, 2, 5)

    assert SendLogEntry.objects.count() == 2
    ann = SendLogEntry.objects.get(message_id="b1")
    assert (ann.address, ann.source, ann.tag_list) == (
        "ann@example.com",
        "api",
        ["registry", "gift"],
    )
    assert SendLogEntry.objects.get(message_id="b2").tag_list == ["registry", "gift"]
    entries = AuditEntry.objects.filter(action="sendlog.ingested").order_by("id")
    assert [e.after["inserted"] for e in entries] == [2, 0]
    assert entries[0].actor == support_sam


def test_a_batch_over_the_limit_is_refused_whole(api, support_sam, settings):
    settings.SENDLOG_API_MAX_ROWS = 2
    response = api(support_sam).post(
        f"{SENDLOG}batch/", {"rows": [_row("a"), _row("b"), _row("c")]}, format="json"
    )
    error = _assert_error(response, 400, "validation_failed")
    assert "at most 2 rows" in error["message"]
    assert not SendLogEntry.objects.exists()


def test_a_batch_without_rows_is_a_validation_error(api, support_sam):
    client = api(support_sam)
    for body in ({}, {"rows": []}, {"rows": {"message_id": "x"}}):
        error = _assert_error(
            client.post(f"{SENDLOG}batch/", body, format="json"), 400, "validation_failed"
        )
        assert set(error["fields"]) == {"rows"}


# --- The send log list ----------------------------------------------------------


def test_the_send_log_pages_by_cursor_without_counting(
    api, auditor_abe, sendlog, django_assert_max_num_queries
):
    client = api(auditor_abe)
    with django_assert_max_num_queries(10) as queries:
        first = client.get(SENDLOG, {"page_size": 4}).json()
    assert not any("COUNT(" in q["sql"].upper() for q in queries.captured_queries)
    assert set(first) == {"next", "previous", "results"}
    assert [e["message_id"] for e in first["results"]] == ["m1", "m2", "m3", "m4"]
    second = client.get(first["next"]).json()
    assert [e["message_id"] for e in second["results"]] == ["m5", "m6", "m7"]
    assert second["next"] is None
    entry = first["results"][0]
    assert entry["recipient"] == "Cust1@Example.com"
    assert entry["address"] == "cust1@example.com"
    assert entry["metadata"] == {"has_registry": False}


def test_the_send_log_filters_by_template_window_and_recipient(api, support_sam, sendlog):
    client = api(support_sam)

    def ids(**params):
        return [e["message_id"] for e in client.get(SENDLOG, params).json()["results"]]

    assert ids(template="weekly-newsletter") == ["m7"]
    # The recipient is matched as a person: case, spaces and IDN form do not matter.
    assert ids(recipient="CUST1@example.com") == ["m1", "m2", "m3"]
    assert ids(recipient="anna@BÜCHER.de") == ["m4", "m5"]
    assert ids(sent_from="2026-11-28T09:03:00Z", sent_until="2026-11-28T09:09:00Z") == ["m2", "m5"]
    error = _assert_error(client.get(SENDLOG, {"recipient": "nobody"}), 400, "validation_failed")
    assert set(error["fields"]) == {"recipient"}


# --- File imports ---------------------------------------------------------------


def test_an_uploaded_file_is_imported_and_can_be_followed(
    api, support_sam, auditor_abe, settings, tmp_path, run_jobs
):
    settings.MEDIA_ROOT = tmp_path
    text = (
        "Message,Email,Sent\n"
        "f1,ann@example.com,2026-11-28T09:00:00Z\n"
        "f2,bad-address,2026-11-28T09:01:00Z\n"
        "f3,bob@example.com,2026-11-28T09:02:00Z\n"
    )
    upload = SimpleUploadedFile("export.csv", text.encode(), content_type="text/csv")
    column_map = {"message_id": "Message", "recipient": "Email", "sent_at": "Sent"}

    with run_jobs():
        response = api(support_sam).post(
            f"{SENDLOG}imports/",
            {"file": upload, "column_map": json.dumps(column_map)},
            format="multipart",
        )

    assert response.status_code == 202, response.content
    assert response["Location"] == response.json()["url"]
    assert response.json()["file_format"] == "csv"
    # The job ran after the commit (in-process without Redis); follow the import.
    reader = api(auditor_abe)
    body = reader.get(response["Location"]).json()
    assert body["status"] == "done", body
    assert (body["rows_read"], body["rows_inserted"], body["rows_rejected"]) == (3, 2, 1)
    assert body["progress"] == 1.0
    assert body["created_by"] == "support_sam"
    assert set(SendLogEntry.objects.values_list("message_id", flat=True)) == {"f1", "f3"}

    # The report quotes the file's lines as they were: importers only.
    _assert_error(reader.get(body["error_report"]), 403, "permission_denied")
    report = api(support_sam).get(body["error_report"], HTTP_ACCEPT="text/csv")
    assert report.status_code == 200
    assert report["Content-Type"].startswith("text/csv")
    lines = b"".join(report.streaming_content).decode().splitlines()
    assert lines[0] == "line,reason,excerpt"
    assert lines[1].startswith("3,")

    listed = reader.get(f"{SENDLOG}imports/").json()
    assert [item["id"] for item in listed["results"]] == [body["id"]]


def test_an_import_without_rejected_rows_has_no_error_report(
    api, support_sam, settings, tmp_path, run_jobs
):
    settings.MEDIA_ROOT = tmp_path
    text = "message_id,recipient,sent_at\nf1,ann@example.com,2026-11-28T09:00:00Z\n"
    with run_jobs():
        response = api(support_sam).post(
            f"{SENDLOG}imports/",
            {"file": SimpleUploadedFile("log.csv", text.encode())},
            format="multipart",
        )
    body = api(support_sam).get(response["Location"]).json()
    assert body["error_report"] is None
    error_report = f"{SENDLOG}imports/{body['id']}/error-report/"
    _assert_error(api(support_sam).get(error_report), 404, "not_found")


def test_a_file_that_is_not_text_is_refused_and_nothing_is_queued(
    api, support_sam, settings, tmp_path
):
    settings.MEDIA_ROOT = tmp_path
    upload = SimpleUploadedFile("log.csv", b"\x1f\x8b\x08\x00binary")
    response = api(support_sam).post(f"{SENDLOG}imports/", {"file": upload}, format="multipart")
    error = _assert_error(response, 400, "validation_failed")
    assert "gzip" in error["message"]
    assert not SendLogImport.objects.exists()


def test_a_column_map_must_be_a_json_object(api, support_sam, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    upload = SimpleUploadedFile("log.csv", b"message_id,recipient,sent_at\n")
    response = api(support_sam).post(
        f"{SENDLOG}imports/", {"file": upload, "column_map": "[1, 2]"}, format="multipart"
    )
    error = _assert_error(response, 400, "validation_failed")
    assert set(error["fields"]) == {"column_map"}


# --- Preview and freeze ---------------------------------------------------------


def test_preview_counts_messages_people_and_locales_and_changes_nothing(
    api, auditor_abe, sendlog, incident
):
    before = _everything()
    response = api(auditor_abe).post(_url(incident, "audience/preview/"), MIS_SENT, format="json")

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["messages"], body["people"]) == (6, 3)
    assert {row["locale"]: row["people"] for row in body["by_locale"]} == {"en": 2, "de": 1}
    assert {row["locale"]: row["messages"] for row in body["by_locale"]} == {"en": 4, "de": 2}
    assert [row["message_id"] for row in body["sample"]][:2] == ["m1", "m4"]
    assert body["filters"] == MIS_SENT
    assert _everything() == before


def test_a_misspelt_filter_is_refused_rather_than_widening_the_audience(
    api, support_sam, sendlog, incident
):
    client = api(support_sam)
    error = _assert_error(
        client.post(
            _url(incident, "audience/preview/"),
            {"template": "registry-gift-purchased", "locales": "de"},
            format="json",
        ),
        400,
        "validation_failed",
    )
    assert "Unknown filter(s): locales." in error["message"]
    # AudienceFilter's own rules come back in the same format.
    error = _assert_error(
        client.post(_url(incident, "audience/freeze/"), {"locale": "de"}, format="json"),
        400,
        "validation_failed",
    )
    assert "at least a template, a tag or a sending window" in error["message"]
    error = _assert_error(
        client.post(_url(incident, "audience/freeze/"), {"tags": 5}, format="json"),
        400,
        "validation_failed",
    )
    assert set(error["fields"]) == {"tags"}
    assert not AudienceQuery.objects.exists()


def test_freeze_creates_the_list_and_an_audit_entry_with_the_query_and_counts(
    api, support_sam, sendlog, incident
):
    response = api(support_sam).post(
        _url(incident, "audience/freeze/"),
        {"template": "registry-gift-purchased", "sent_from": "2026-11-28T09:00:00Z"},
        format="json",
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["message_count"], body["people_count"], body["people_added"]) == (6, 3, 3)
    assert body["created_by"] == "support_sam"
    assert body["filters"] == {
        "template": "registry-gift-purchased",
        "sent_from": "2026-11-28T09:00:00+00:00",
    }
    assert len(body["list_hash"]) == 64
    assert set(
        AffectedPerson.objects.filter(incident=incident).values_list("address", flat=True)
    ) == {
        "cust1@example.com",
        "anna@xn--bcher-kva.de",
        "bob@example.org",
    }
    entry = AuditEntry.objects.get(action="audience.frozen")
    assert (entry.incident, entry.actor, entry.ip) == (incident, support_sam, "127.0.0.1")
    assert entry.after["filters"] == body["filters"]
    assert (entry.after["people_count"], entry.after["message_count"]) == (3, 6)
    assert entry.after["list_hash"] == body["list_hash"]


def test_a_second_identical_freeze_adds_nobody(api, support_sam, frozen):
    client = api(support_sam)
    first = client.get(_url(frozen, "audience/queries/")).json()["results"][0]
    second = client.post(_url(frozen, "audience/freeze/"), MIS_SENT, format="json").json()

    assert (second["people_count"], second["people_added"]) == (3, 0)
    assert second["list_hash"] == first["list_hash"]
    assert AffectedPerson.objects.filter(incident=frozen).count() == 3
    queries = client.get(_url(frozen, "audience/queries/")).json()
    assert [q["people_added"] for q in queries["results"]] == [3, 0]


def test_the_summary_counts_people_queries_and_segments_without_addresses(api, comms_cleo, frozen):
    response = api(comms_cleo).get(_url(frozen, "audience/"))

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["people"], body["removed"], body["queries"]) == (3, 0, 1)
    (default,) = body["segments"]
    assert (default["name"], default["is_default"], default["people"]) == ("Everyone else", True, 3)
    assert "@" not in response.content.decode()


# --- The affected list ----------------------------------------------------------


def test_affected_people_are_listed_with_their_messages(api, auditor_abe, frozen):
    response = api(auditor_abe).get(_url(frozen, "affected/"), {"page_size": 2})

    assert response.status_code == 200, response.content
    first = response.json()
    assert set(first) == {"next", "previous", "results"}
    people = first["results"] + api(auditor_abe).get(first["next"]).json()["results"]
    assert len(people) == 3
    cust = next(p for p in people if p["address"] == "cust1@example.com")
    assert set(cust) == {
        "id",
        "address",
        "original_address",
        "customer_id",
        "locale",
        "segment",
        "message_count",
        "message_ids",
        "first_sent_at",
        "is_suppressed",
        "removed_at",
        "removed_reason",
    }
    assert cust["original_address"] == "cust1@EXAMPLE.COM"
    assert (cust["message_count"], sorted(cust["message_ids"])) == (3, ["m1", "m2", "m3"])
    assert cust["first_sent_at"] == "2026-11-28T09:00:00Z"
    assert cust["segment"]["name"] == "Everyone else"
    assert (cust["is_suppressed"], cust["removed_at"], cust["removed_reason"]) == (False, None, "")


def test_suppressed_people_are_flagged_in_the_affected_list(api, support_sam, frozen):
    client = api(support_sam)
    assert (
        client.post(
            SUPPRESSIONS,
            {"address": "BOB@example.org", "reason": "hard_bounce"},
            format="json",
        ).status_code
        == 201
    )

    people = client.get(_url(frozen, "affected/")).json()["results"]
    assert {p["address"]: p["is_suppressed"] for p in people} == {
        "cust1@example.com": False,
        "anna@xn--bcher-kva.de": False,
        "bob@example.org": True,
    }

    def addresses(**params):
        return [
            p["address"] for p in client.get(_url(frozen, "affected/"), params).json()["results"]
        ]

    assert addresses(suppressed="true") == ["bob@example.org"]
    assert "bob@example.org" not in addresses(suppressed="false")
    assert len(addresses(suppressed="false")) == 2
    summary = client.get(_url(frozen, "audience/")).json()
    assert summary["segments"][0]["suppressed"] == 1


def test_the_affected_list_filters_by_segment_and_search(api, support_sam, frozen):
    client = api(support_sam)
    segment = client.post(
        _url(frozen, "segments/"),
        {"name": "German", "rules": [{"field": "locale", "op": "eq", "value": "de"}]},
        format="json",
    ).json()

    def addresses(**params):
        return [
            p["address"] for p in client.get(_url(frozen, "affected/"), params).json()["results"]
        ]

    assert addresses(segment=segment["id"]) == ["anna@xn--bcher-kva.de"]
    assert addresses(search="EXAMPLE.ORG") == ["bob@example.org"]
    error = _assert_error(
        client.get(_url(frozen, "affected/"), {"suppressed": "maybe"}), 400, "validation_failed"
    )
    assert set(error["fields"]) == {"suppressed"}


def test_remove_needs_a_reason(api, support_sam, frozen):
    client = api(support_sam)
    bob = AffectedPerson.objects.get(incident=frozen, address="bob@example.org")
    url = _url(frozen, f"affected/{bob.pk}/remove/")

    for body in ({}, {"reason": "   "}):
        error = _assert_error(client.post(url, body, format="json"), 400, "validation_failed")
        assert set(error["fields"]) == {"reason"}
    bob.refresh_from_db()
    assert bob.removed_at is None

    response = client.post(url, {"reason": "Internal test account"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["removed_reason"] == "Internal test account"
    assert response.json()["removed_at"]
    entry = AuditEntry.objects.get(action="audience.person_removed")
    assert entry.after["reason"] == "Internal test account"
    assert "bob@" not in str(entry.after)

    listed = [p["address"] for p in client.get(_url(frozen, "affected/")).json()["results"]]
    assert "bob@example.org" not in listed
    with_removed = client.get(_url(frozen, "affected/"), {"include_removed": "true"}).json()
    assert "bob@example.org" in [p["address"] for p in with_removed["results"]]
    _assert_error(client.post(url, {"reason": "Twice"}, format="json"), 400, "validation_failed")


def test_a_person_of_another_incident_is_not_found(api, support_sam, frozen):
    from incidents import services
    from incidents.actors import Actor

    other = services.incident_open(by=Actor.for_user(support_sam), title="Other", summary="x")
    bob = AffectedPerson.objects.get(incident=frozen, address="bob@example.org")
    response = api(support_sam).post(
        _url(other, f"affected/{bob.pk}/remove/"), {"reason": "x"}, format="json"
    )
    _assert_error(response, 404, "not_found")


def test_extra_people_are_added_from_an_upload_or_a_csv_body(api, support_sam, frozen):
    client = api(support_sam)
    text = "address,customer_id,locale\nnew@example.com,C9,fr\nnot-an-address,C10,en\nBOB@example.org,,\n"
    upload = SimpleUploadedFile("extra.csv", text.encode("utf-8-sig"))
    response = client.post(
        _url(frozen, "affected/import/"),
        {"file": upload, "note": "From the CRM export"},
        format="multipart",
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["added"], body["already_listed"]) == (1, 1)
    assert [p["line"] for p in body["problems"]] == [3]
    added = AffectedPerson.objects.get(incident=frozen, address="new@example.com")
    assert (added.source, added.locale, added.customer_id) == ("csv", "fr", "C9")
    entry = AuditEntry.objects.get(action="audience.extended_from_file")
    assert entry.after["note"] == "From the CRM export"

    again = client.post(
        _url(frozen, "affected/import/") + "?note=again",
        data="address\nlate@example.com\n",
        content_type="text/csv",
    )
    assert again.status_code == 200, again.content
    assert again.json()["added"] == 1
    assert AffectedPerson.objects.filter(incident=frozen).count() == 5


def test_a_csv_that_is_not_utf8_or_missing_is_refused(api, support_sam, frozen):
    client = api(support_sam)
    url = _url(frozen, "affected/import/")
    error = _assert_error(
        client.post(
            url, data="address\nm\xfcller@example.com\n".encode("latin-1"), content_type="text/csv"
        ),
        400,
        "validation_failed",
    )
    assert "UTF-8" in error["fields"]["file"][0]
    _assert_error(client.post(url, {}, format="multipart"), 400, "validation_failed")
    error = _assert_error(
        client.post(url, data="customer_id\nC1\n", content_type="text/csv"),
        400,
        "validation_failed",
    )
    assert "address" in error["message"]
    assert AffectedPerson.objects.filter(incident=frozen).count() == 3


# --- Segments -------------------------------------------------------------------


def test_segments_via_the_api_keep_every_person_in_exactly_one_segment(api, support_sam, frozen):
    client = api(support_sam)
    segments = _url(frozen, "segments/")

    def counts():
        listed = client.get(segments).json()["results"]
        return {s["name"]: s["people"] for s in listed}

    registry = client.post(
        segments,
        {
            "name": "Has a registry",
            "rules": [{"field": "metadata.has_registry", "op": "eq", "value": True}],
        },
        format="json",
    )
    assert registry.status_code == 201, registry.content
    assert registry.json()["people"] == 2
    assert registry["Location"].endswith(f"segments/{registry.json()['id']}/")
    clicked = client.post(
        segments,
        {"name": "Clicked", "rules": [{"field": "latest_status", "value": "clicked"}]},
        format="json",
    ).json()
    assert clicked["rules"] == [{"field": "latest_status", "op": "eq", "value": "clicked"}]
    # bob has a registry and clicked: the first matching segment wins.
    assert counts() == {"Has a registry": 2, "Clicked": 0, "Everyone else": 1}

    # Trying "Has a registry" after "Clicked" moves bob.
    moved = client.patch(
        f"{segments}{registry.json()['id']}/", {"position": clicked["position"] + 1}, format="json"
    )
    assert moved.status_code == 200, moved.content
    assert counts() == {"Clicked": 1, "Has a registry": 1, "Everyone else": 1}

    deleted = client.delete(f"{segments}{registry.json()['id']}/")
    assert deleted.status_code == 204
    assert counts() == {"Clicked": 1, "Everyone else": 2}
    assert sum(counts().values()) == AffectedPerson.objects.filter(incident=frozen).count()
    assert [e.action for e in AuditEntry.objects.filter(action__startswith="segment.")] == [
        "segment.saved",
        "segment.saved",
        "segment.saved",
        "segment.deleted",
    ]


def test_a_segment_with_a_bad_rule_is_refused_and_nothing_changes(api, support_sam, frozen):
    client = api(support_sam)
    before = _everything()
    hostile = client.post(
        _url(frozen, "segments/"),
        {"name": "Hack", "rules": [{"field": "metadata.x__contains", "op": "eq", "value": 1}]},
        format="json",
    )
    error = _assert_error(hostile, 400, "validation_failed")
    assert "Rule 1" in error["message"]
    bad_op = client.post(
        _url(frozen, "segments/"),
        {"name": "Hack", "rules": [{"field": "locale", "op": "like", "value": "d%"}]},
        format="json",
    )
    assert set(_assert_error(bad_op, 400, "validation_failed")["fields"]) == {"rules.0.op"}
    assert _everything() == before


def test_the_default_segment_cannot_be_deleted_or_given_rules(api, admin_ada, frozen):
    client = api(admin_ada)
    default = Segment.objects.get(incident=frozen, is_default=True)
    url = _url(frozen, f"segments/{default.pk}/")
    _assert_error(client.delete(url), 400, "validation_failed")
    _assert_error(
        client.patch(url, {"rules": [{"field": "locale", "value": "de"}]}, format="json"),
        400,
        "validation_failed",
    )
    renamed = client.patch(url, {"name": "Everyone"}, format="json")
    assert renamed.status_code == 200, renamed.content
    assert renamed.json()["name"] == "Everyone"
    assert client.get(url).json()["people"] == 3


# --- Roles ----------------------------------------------------------------------


def _write_calls(client, incident):
    person = AffectedPerson.objects.filter(incident=incident).first()
    segment = Segment.objects.filter(incident=incident).first()
    suppression = Suppression.objects.first()
    return {
        "incidents.import_sendlog": lambda: client.post(
            f"{SENDLOG}batch/", {"rows": [_row("new")]}, format="json"
        ),
        "incidents.add_audiencequery": lambda: client.post(
            _url(incident, "audience/freeze/"), MIS_SENT, format="json"
        ),
        "incidents.change_affectedperson": lambda: client.post(
            _url(incident, f"affected/{person.pk}/remove/"), {"reason": "x"}, format="json"
        ),
        "incidents.change_affectedperson (file)": lambda: client.post(
            _url(incident, "affected/import/"),
            data="address\nx@example.com\n",
            content_type="text/csv",
        ),
        "incidents.add_segment": lambda: client.post(
            _url(incident, "segments/"), {"name": "German", "rules": []}, format="json"
        ),
        "incidents.change_segment": lambda: client.patch(
            _url(incident, f"segments/{segment.pk}/"), {"name": "All"}, format="json"
        ),
        "incidents.delete_segment": lambda: client.delete(
            _url(incident, f"segments/{segment.pk}/")
        ),
        "campaigns.add_suppression": lambda: client.post(
            SUPPRESSIONS, {"address": "x@example.com", "reason": "other"}, format="json"
        ),
        "campaigns.add_suppression (file)": lambda: client.post(
            f"{SUPPRESSIONS}import/?default_reason=other",
            data="address\ny@example.com\n",
            content_type="text/csv",
        ),
        "campaigns.delete_suppression": lambda: client.delete(
            f"{SUPPRESSIONS}{suppression.pk}/", {"reason": "x"}, format="json"
        ),
    }


@pytest.mark.parametrize("role", ["auditor_abe", "comms_cleo"])
def test_auditor_and_comms_get_403_on_writes_and_nothing_changes(
    request, api, support_sam, frozen, role
):
    api(support_sam).post(
        SUPPRESSIONS, {"address": "z@example.com", "reason": "other"}, format="json"
    )
    client = api(request.getfixturevalue(role))
    before = _everything()

    for perm, call in _write_calls(client, frozen).items():
        error = _assert_error(call(), 403, "permission_denied")
        assert perm.split(" ")[0] in error["message"], perm

    assert _everything() == before


def test_auditor_and_comms_can_read_the_audience(api, auditor_abe, comms_cleo, frozen):
    for user in (auditor_abe, comms_cleo):
        client = api(user)
        for url in ("audience/", "audience/queries/", "affected/", "segments/"):
            assert client.get(_url(frozen, url)).status_code == 200, url
        assert client.get(SENDLOG).status_code == 200
        assert client.get(SUPPRESSIONS).status_code == 200


def test_a_user_without_a_role_sees_no_addresses(api, django_user_model, frozen):
    nobody = api(django_user_model.objects.create_user("nobody", password="x"))
    for url in (_url(frozen, "affected/"), SENDLOG, SUPPRESSIONS):
        _assert_error(nobody.get(url), 403, "permission_denied")
    response = nobody.post(_url(frozen, "audience/preview/"), MIS_SENT, format="json")
    _assert_error(response, 403, "permission_denied")


def test_preview_is_a_post_only(api, support_sam, incident):
    response = api(support_sam).get(_url(incident, "audience/preview/"))
    _assert_error(response, 405, "method_not_allowed")


# --- Suppressions ---------------------------------------------------------------


def test_suppressions_are_added_once_listed_and_searched(api, support_sam, auditor_abe):
    client = api(support_sam)
    first = client.post(
        SUPPRESSIONS,
        {"address": " Anna@Bücher.de ", "reason": "do_not_contact", "note": "Asked by phone"},
        format="json",
    )
    assert first.status_code == 201, first.content
    body = first.json()
    assert (body["address"], body["source"], body["created_by"]) == (
        "anna@xn--bcher-kva.de",
        "api",
        "support_sam",
    )
    again = client.post(
        SUPPRESSIONS, {"address": "anna@xn--bcher-kva.de", "reason": "complaint"}, format="json"
    )
    assert again.status_code == 200
    assert again.json()["reason"] == "do_not_contact"
    client.post(
        SUPPRESSIONS, {"address": "bob@example.org", "reason": "hard_bounce"}, format="json"
    )

    reader = api(auditor_abe)
    listed = reader.get(SUPPRESSIONS).json()
    assert [s["address"] for s in listed["results"]] == ["bob@example.org", "anna@xn--bcher-kva.de"]
    assert [
        s["address"] for s in reader.get(SUPPRESSIONS, {"reason": "hard_bounce"}).json()["results"]
    ] == ["bob@example.org"]
    assert [
        s["address"] for s in reader.get(SUPPRESSIONS, {"search": "BÜCHER"}).json()["results"]
    ] == []
    assert [
        s["address"] for s in reader.get(SUPPRESSIONS, {"search": "anna"}).json()["results"]
    ] == ["anna@xn--bcher-kva.de"]
    error = _assert_error(
        client.post(SUPPRESSIONS, {"address": "nobody", "reason": "other"}, format="json"),
        400,
        "validation_failed",
    )
    assert set(error["fields"]) == {"address"}


def test_suppressions_are_imported_from_a_csv(api, support_sam):
    text = "address,reason\na@example.com,complaint\nbroken,\nA@EXAMPLE.com,\nb@example.com,\n"
    response = api(support_sam).post(
        f"{SUPPRESSIONS}import/",
        {"file": SimpleUploadedFile("s.csv", text.encode()), "default_reason": "unsubscribed"},
        format="multipart",
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["added"], body["already_suppressed"]) == (2, 0)
    assert [p["line"] for p in body["problems"]] == [3]
    assert Suppression.objects.get(address="b@example.com").reason == "unsubscribed"

    wrong = api(support_sam).post(
        f"{SUPPRESSIONS}import/?default_reason=bored", data=text, content_type="text/csv"
    )
    assert set(_assert_error(wrong, 400, "validation_failed")["fields"]) == {"default_reason"}


def test_suppression_delete_is_admin_only_and_needs_a_reason(api, support_sam, admin_ada):
    suppression = (
        api(support_sam)
        .post(SUPPRESSIONS, {"address": "a@example.com", "reason": "hard_bounce"}, format="json")
        .json()
    )
    url = f"{SUPPRESSIONS}{suppression['id']}/"

    error = _assert_error(
        api(support_sam).delete(url, {"reason": "Mailbox fixed"}, format="json"),
        403,
        "permission_denied",
    )
    assert "campaigns.delete_suppression" in error["message"]
    admin = api(admin_ada)
    error = _assert_error(admin.delete(url, {}, format="json"), 400, "validation_failed")
    assert set(error["fields"]) == {"reason"}
    assert Suppression.objects.filter(pk=suppression["id"]).exists()

    assert admin.delete(url, {"reason": "Mailbox fixed"}, format="json").status_code == 204
    assert not Suppression.objects.exists()
    entry = AuditEntry.objects.get(action="suppression.removed")
    assert (entry.actor, entry.after) == (admin_ada, {"why": "Mailbox fixed"})
    _assert_error(admin.get(url), 404, "not_found")


# --- Query budgets and the schema -----------------------------------------------


def test_affected_list_queries_do_not_grow_with_the_number_of_people(
    api, support_sam, frozen, django_assert_max_num_queries
):
    client = api(support_sam)
    with django_assert_max_num_queries(20) as few:
        client.get(_url(frozen, "affected/"))
    budget = len(few.captured_queries)  # read now: every request clears Django's query log
    client.post(
        _url(frozen, "affected/import/"),
        data="address\n" + "".join(f"p{n}@example.com\n" for n in range(20)),
        content_type="text/csv",
    )
    with django_assert_max_num_queries(budget):
        client.get(_url(frozen, "affected/"))


def test_the_schema_validates_and_includes_the_audience_paths(db, tmp_path):
    # The same check as `manage.py spectacular --validate --fail-on-warn` in CI.
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "s.yml"))
    schema = (tmp_path / "s.yml").read_text()
    for path in (
        "/api/sendlog/:",
        "/api/sendlog/batch/:",
        "/api/sendlog/imports/:",
        "/api/sendlog/imports/{id}/:",
        "/api/sendlog/imports/{id}/error-report/:",
        "/api/incidents/{reference}/audience/:",
        "/api/incidents/{reference}/audience/preview/:",
        "/api/incidents/{reference}/audience/freeze/:",
        "/api/incidents/{reference}/audience/queries/:",
        "/api/incidents/{reference}/affected/:",
        "/api/incidents/{reference}/affected/{id}/remove/:",
        "/api/incidents/{reference}/affected/import/:",
        "/api/incidents/{reference}/segments/:",
        "/api/incidents/{reference}/segments/{id}/:",
        "/api/suppressions/:",
        "/api/suppressions/import/:",
        "/api/suppressions/{id}/:",
    ):
        assert f"\n  {path}\n" in schema, path
